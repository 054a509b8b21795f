package reporter

import (
	"cmp"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gpumeter/gpumeter/internal/clock"
	"github.com/gpumeter/gpumeter/internal/tlsfile"
	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/metering/signing"
	"github.com/gpumeter/gpumeter/metering/spool"
	"github.com/gpumeter/gpumeter/protocol"
)

// Defaults of Options.
const (
	DefaultTimeout         = 10 * time.Second
	DefaultRetryWaitMin    = 500 * time.Millisecond
	DefaultRetryWaitMax    = 30 * time.Second
	DefaultMaxBatchRecords = 1000
	DefaultMaxInFlight     = 4
	// DefaultLogHistory is how many of the log's checkpoints the spool
	// keeps: the newest and older ones, for checking a restored
	// authority's smaller tree against.
	DefaultLogHistory = 64
)

// MaxRetryAfter bounds a Retry-After the reporter honours: a bad header
// must not stall delivery for hours; a probe every 5 minutes costs nothing.
const MaxRetryAfter = 5 * time.Minute

// Options configure a Reporter.
type Options struct {
	// URL is the authority's base URL, e.g. https://authority.example:8443.
	URL string
	// Node is the node id; "" means the Sealer's. It must be the Sealer's.
	Node string
	// CAFile is a PEM bundle: when given, only these CAs are trusted to
	// verify the authority; otherwise the system roots.
	CAFile string
	// CertFile and KeyFile are an optional client certificate (mTLS),
	// given together.
	CertFile, KeyFile string
	// Timeout bounds each HTTP attempt (default DefaultTimeout).
	Timeout time.Duration
	// RetryWaitMin and RetryWaitMax bound the jittered exponential backoff
	// between attempts (defaults DefaultRetryWaitMin, DefaultRetryWaitMax).
	// While blocked or held, and after a permanent transport error, the
	// reporter tries about every RetryWaitMax. Each request is one attempt:
	// the loop is the only place that retries (package doc).
	RetryWaitMin, RetryWaitMax time.Duration
	// MaxClockOffset: when the authority's clock and Clock differ by more,
	// a warning is logged (default DefaultMaxClockOffset).
	MaxClockOffset time.Duration
	// MaxBatchRecords is passed to spool.SealNext (default DefaultMaxBatchRecords).
	MaxBatchRecords int
	// MaxInFlight: a new batch is sealed only while fewer than this many
	// are unacknowledged (default DefaultMaxInFlight).
	MaxInFlight int
	// Log receives state changes and refusals; nil: discarded.
	Log *slog.Logger
	// Sealer signs batches; Spool holds them. Both required; the caller
	// owns (and closes) the spool.
	Sealer *ledger.Sealer
	Spool  *spool.Spool
	// Key is the node's private key, the Sealer's: it signs the reads the
	// reporter makes (GET head, protocol.SignRead), which the authority
	// answers for the key's node only. Required.
	Key ed25519.PrivateKey
	// LogKey is the authority log's note verifier key
	// (<name>+<hash>+<base64>). Empty: the key the authority serves at
	// protocol.PathLogKey is trusted on first use and pinned in the spool.
	LogKey string
	// LogHistory is how many verified checkpoints the spool keeps
	// (default DefaultLogHistory).
	LogHistory int
	// Clock times every wait (there is no other) and stamps Stats and the
	// reads it signs (nil: real).
	Clock clock.Clock
}

func (o *Options) setDefaults() {
	// cmp.Or keeps a set value and takes the default for a zero one.
	o.Timeout = cmp.Or(o.Timeout, DefaultTimeout)
	o.RetryWaitMin = cmp.Or(o.RetryWaitMin, DefaultRetryWaitMin)
	o.RetryWaitMax = cmp.Or(o.RetryWaitMax, DefaultRetryWaitMax)
	o.MaxClockOffset = cmp.Or(o.MaxClockOffset, DefaultMaxClockOffset)
	o.MaxBatchRecords = cmp.Or(o.MaxBatchRecords, DefaultMaxBatchRecords)
	o.MaxInFlight = cmp.Or(o.MaxInFlight, DefaultMaxInFlight)
	if o.LogHistory <= 0 {
		o.LogHistory = DefaultLogHistory
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
}

func (o *Options) validate() (*url.URL, error) {
	if o.Sealer == nil || o.Spool == nil {
		return nil, errors.New("sealer and spool are required")
	}
	if len(o.Key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("key has %d bytes, want an Ed25519 private key (%d): it signs the reporter's reads", len(o.Key), ed25519.PrivateKeySize)
	}
	if id := signing.KeyID(o.Key.Public().(ed25519.PublicKey)); id != o.Sealer.KeyID() {
		return nil, fmt.Errorf("key %s is not the sealer's key %s", id, o.Sealer.KeyID())
	}
	if o.Node == "" {
		o.Node = o.Sealer.Node()
	}
	if o.Node != o.Sealer.Node() {
		return nil, fmt.Errorf("node %q is not the sealer's node %q", o.Node, o.Sealer.Node())
	}
	u, err := url.Parse(o.URL)
	if err != nil {
		return nil, fmt.Errorf("authority URL %q: %w", o.URL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("authority URL %q: want http(s)://host[:port]", o.URL)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("authority URL %q: no user info, query or fragment allowed", o.URL)
	}
	if u.Scheme == "http" && (o.CAFile != "" || o.CertFile != "" || o.KeyFile != "") {
		// TLS files with a plain-HTTP URL are a mistake that would send
		// usage in clear text while the operator believes otherwise.
		return nil, fmt.Errorf("authority URL %q is plain http but TLS files are configured", o.URL)
	}
	switch {
	case o.Timeout < 0, o.RetryWaitMin < 0, o.RetryWaitMax < 0, o.MaxClockOffset < 0:
		return nil, errors.New("negative timeout, retry wait or max clock offset")
	case o.RetryWaitMax < o.RetryWaitMin:
		return nil, fmt.Errorf("retry wait max %s below min %s", o.RetryWaitMax, o.RetryWaitMin)
	case o.MaxBatchRecords < 0 || o.MaxBatchRecords > protocol.MaxRecordsPerBatch:
		return nil, fmt.Errorf("max batch records %d outside 1..%d", o.MaxBatchRecords, protocol.MaxRecordsPerBatch)
	case o.MaxInFlight < 0:
		return nil, fmt.Errorf("negative max in flight %d", o.MaxInFlight)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	return u, nil
}

// tlsConfig builds the client TLS config; every file error names the file.
func tlsConfig(o Options) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pool, err := tlsfile.CertPool(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		cfg.RootCAs = pool
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, errors.New("client certificate: cert file and key file must be given together")
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate %s with key %s: %w", o.CertFile, o.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// newClient builds the HTTP client: one attempt per request, bounded by
// Options.Timeout; retries are the loop's.
func (r *Reporter) newClient(cfg *tls.Config) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	return &http.Client{Transport: tr, Timeout: r.opts.Timeout}
}
