package reporter

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gpumeter/gpumeter/protocol"
)

// maxAnswerBytes bounds what is read of an answer: answers are small, and
// a misbehaving peer must not make the agent buffer without limit.
const maxAnswerBytes = 1 << 20

// answer is one request's outcome: a transport error, or a status with the
// decoded body.
type answer struct {
	err error
	// permanent: err is one that sending again soon cannot fix (the
	// authority's certificate does not verify, an unsupported scheme, a
	// redirect loop): the loop waits about RetryWaitMax, not the short
	// backoff, and logs at error level.
	permanent bool
	status    int
	head      uint64 // 200
	headHash  string // 200 of GET head
	// lastWindowEnd is the head answer's last_window_end (nil if none).
	lastWindowEnd *time.Time
	// log is the answer's place in the authority's verifiable log (nil
	// when it runs without one).
	log        *protocol.LogReceipt
	duplicate  bool // 200 of POST
	problem    protocol.Problem
	retryAfter time.Duration // from a 425/429/503 Retry-After; 0 if none
	// sent and received are the local clock around the exchange; date is
	// the answer's Date header (zero if none): with problem.AuthorityTime
	// they give the authority's clock offset.
	sent, received time.Time
	date           time.Time
}

// transient reports whether the answer is retried rather than judged:
// network errors, 408, 429, 5xx, and a 425 without a held problem (an
// authority older than the held/final distinction). A 425 window-not-ended
// with a problem body is a held refusal (Options and the package doc).
func (a answer) transient() bool {
	return a.err != nil || transientStatus(a.status)
}

func transientStatus(s int) bool {
	return s == http.StatusRequestTimeout || s == http.StatusTooEarly || s == http.StatusTooManyRequests || s >= 500
}

// held reports whether the answer is a held refusal: the authority says so
// (Problem.Hold), or the cause is one this version knows to be held, so
// that an authority older or newer than this agent is judged right.
func (a answer) held() bool {
	return a.err == nil && a.status >= 400 && a.status < 500 && (a.problem.Hold || protocol.Held(a.problem.Cause()))
}

// String is "<status> <cause>: <detail>" for logs, Stats and dead letters.
func (a answer) String() string {
	if a.err != nil {
		return "network: " + a.err.Error()
	}
	s := strconv.Itoa(a.status)
	if c := a.problem.Cause(); c != "" {
		s += " " + c
	}
	if a.problem.Detail != "" {
		s += ": " + a.problem.Detail
	}
	if a.problem.ExpectedSeq != nil {
		s += " (expected_seq " + strconv.FormatUint(*a.problem.ExpectedSeq, 10) + ")"
	}
	return s
}

// do makes exactly one request and decodes the answer. It never retries:
// every retry is the loop's (package doc, "One retry layer"). body is nil
// for GET.
func (r *Reporter) do(ctx context.Context, method, url string, body []byte) answer {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return answer{err: fmt.Errorf("build %s %s: %w", method, url, err), permanent: true}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json, application/problem+json")
	if n := r.opts.Spool.LogSize(); n > 0 {
		req.Header.Set(protocol.LogSizeHeader, strconv.FormatUint(n, 10))
	}
	r.signRead(req)
	sent := r.clock.Now()
	resp, err := r.client.Do(req)
	received := r.clock.Now()
	if err != nil {
		r.countAttempt()
		return answer{err: err, permanent: permanentError(err), sent: sent, received: received}
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, retryAfter: retryAfter(resp, received), sent: sent, received: received}
	if d, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
		a.date = d
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		r.countAttempt()
		return answer{err: fmt.Errorf("read answer of %s %s (status %d): %w", method, url, resp.StatusCode, err), sent: sent, received: received, date: a.date}
	}
	if a.status == http.StatusOK {
		// The members of protocol.BatchAnswer and protocol.HeadAnswer;
		// Head is a pointer so that a 200 without one is told from head 0.
		var ok struct {
			Head          *uint64              `json:"head"`
			HeadHash      string               `json:"head_hash"`
			LastWindowEnd *time.Time           `json:"last_window_end"`
			Duplicate     bool                 `json:"duplicate"`
			Log           *protocol.LogReceipt `json:"log"`
		}
		if err := json.Unmarshal(data, &ok); err != nil || ok.Head == nil {
			// A 200 we cannot read says nothing about what was stored:
			// a failure, after which the head is asked for.
			r.countAttempt()
			return answer{err: fmt.Errorf("%s %s: 200 answer without a head: %q", method, url, truncate(data, 200)), sent: sent, received: received, date: a.date}
		}
		a.head, a.headHash, a.lastWindowEnd, a.duplicate, a.log = *ok.Head, ok.HeadHash, ok.LastWindowEnd, ok.Duplicate, ok.Log
		return a
	}
	if transientStatus(a.status) {
		r.countAttempt()
	}
	// Best effort: a body that is not a problem leaves the problem empty
	// and the status still decides.
	_ = json.Unmarshal(data, &a.problem)
	return a
}

// countAttempt counts one failed request for Stats.FailedAttempts.
func (r *Reporter) countAttempt() {
	r.mu.Lock()
	r.stats.FailedAttempts++
	r.mu.Unlock()
}

// permanentError tells the transport errors that a quick retry cannot fix
// (what go-retryablehttp's default policy knew, when the reporter used it):
// the authority's certificate does not verify, the URL's scheme is not
// supported, a redirect loop, an invalid header. Timeouts, refused and
// reset connections are transient.
func permanentError(err error) bool {
	var unknownCA x509.UnknownAuthorityError
	var verify *tls.CertificateVerificationError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &verify), errors.As(err, &hostname), errors.As(err, &invalid):
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "unsupported protocol scheme") || strings.Contains(msg, "stopped after") && strings.Contains(msg, "redirects") ||
		strings.Contains(msg, "invalid header")
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// jittered is min·2^attempt capped at max, with "equal jitter" (a uniform
// draw from the upper half), never below min. Jitter spreads a fleet's
// retries after an authority outage.
func jittered(min, max time.Duration, attempt int) time.Duration {
	d := min
	for i := 0; i < attempt && d < max; i++ {
		d *= 2
	}
	if d > max || d <= 0 {
		d = max
	}
	if half := d / 2; half > 0 {
		d = half + rand.N(half+1)
	}
	if d < min {
		d = min
	}
	return d
}

// spreadRetryAfter is the wait after a transient answer's Retry-After d:
// a uniform draw from [d, 1.5·d], never earlier than the authority asked.
// An overloaded authority tells every node it sheds the same Retry-After;
// without the spread they would all come back in the same instant and be
// shed again together.
func spreadRetryAfter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d + rand.N(d/2+1)
}

// retryAfter reads Retry-After (seconds or an HTTP date) of a 425, 429 or
// 503, bounded by MaxRetryAfter; 0 when absent or not in the future.
func retryAfter(resp *http.Response, now time.Time) time.Duration {
	if resp == nil {
		return 0
	}
	switch resp.StatusCode {
	case http.StatusTooEarly, http.StatusTooManyRequests, http.StatusServiceUnavailable:
	default:
		return 0
	}
	v := strings.TrimSpace(resp.Header.Get("Retry-After"))
	if v == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		if s > int64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	if d <= 0 {
		return 0
	}
	return min(d, MaxRetryAfter)
}

// signRead signs a GET (the head) with the node's key at the reporter's
// clock, as protocol.SignRead: the authority answers a node's data only to
// its key. Batches carry their own signature and are not signed again.
// Each attempt is a new request, signed at its own time, so waits never
// carry a read's timestamp out of the authority's protocol.ReadSkew.
func (r *Reporter) signRead(req *http.Request) {
	if req.Method != http.MethodGet {
		return
	}
	req.Header.Set("Authorization", protocol.SignRead(r.opts.Key, r.opts.Sealer.KeyID(), req.Method, req.URL.RequestURI(), r.clock.Now()))
}
