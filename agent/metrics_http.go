package agent

import (
	"compress/gzip"
	"net/http"
	"strconv"
	"strings"
)

// gzipFast compresses next's responses with gzip at BestSpeed for clients
// that accept gzip (Prometheus and Go's HTTP client always do), and serves
// the rest as they are. promhttp compresses at gzip's default level, which
// made deflate's match search the largest single cost of a scrape of the
// agent (a fifth of its CPU): level 1 produces the same metrics in a few
// per cent more bytes on the wire, at a fraction of the CPU. next must
// not compress itself (promhttp.HandlerOpts.DisableCompression).
func gzipFast(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Accept-Encoding")
		if !acceptsGzip(r.Header.Values("Accept-Encoding")) {
			next.ServeHTTP(w, r)
			return
		}
		gz := takeGzip()
		gz.Reset(w)
		gw := &gzipResponse{ResponseWriter: w, gz: gz}
		next.ServeHTTP(gw, r)
		if gw.compressing {
			_ = gz.Close()
		}
		gz.Reset(nil) // drop the reference to w before keeping it
		select {
		case spareGzip <- gz:
		default: // a concurrent scrape's writer: left to the GC
		}
	})
}

// spareGzip keeps one writer between scrapes. Not a sync.Pool: a
// writer's tables are about 450 KB, the GC empties a pool every other
// cycle, and at the agent's small heap nearly every scrape would allocate
// a fresh one (and so bring the next GC nearer).
var spareGzip = make(chan *gzip.Writer, 1)

func takeGzip() *gzip.Writer {
	select {
	case gz := <-spareGzip:
		return gz
	default:
		gz, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed) // a valid level never fails
		return gz
	}
}

// gzipResponse compresses the body unless the handler's headers say
// otherwise when it writes them: an error page from http.Error, say, which
// may drop Content-Encoding, goes out as written.
type gzipResponse struct {
	http.ResponseWriter
	gz          *gzip.Writer
	wrote       bool
	compressing bool
}

func (g *gzipResponse) WriteHeader(code int) {
	if !g.wrote {
		g.wrote = true
		h := g.Header()
		if h.Get("Content-Encoding") == "" && code != http.StatusNoContent && code != http.StatusNotModified {
			h.Set("Content-Encoding", "gzip")
			h.Del("Content-Length")
			g.compressing = true
		}
	}
	g.ResponseWriter.WriteHeader(code)
}

func (g *gzipResponse) Write(p []byte) (int, error) {
	if !g.wrote {
		g.WriteHeader(http.StatusOK)
	}
	if g.compressing {
		return g.gz.Write(p)
	}
	return g.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (g *gzipResponse) Unwrap() http.ResponseWriter { return g.ResponseWriter }

// acceptsGzip reports whether Accept-Encoding values name gzip (or *) with
// a quality above zero.
func acceptsGzip(values []string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			name = strings.TrimSpace(name)
			if !strings.EqualFold(name, "gzip") && name != "*" {
				continue
			}
			q := 1.0
			for p := range strings.SplitSeq(params, ";") {
				k, val, ok := strings.Cut(strings.TrimSpace(p), "=")
				if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
					if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
						q = f
					}
				}
			}
			if q > 0 {
				return true
			}
		}
	}
	return false
}
