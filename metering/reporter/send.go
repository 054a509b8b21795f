package reporter

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gpumeter/gpumeter/protocol"
	"github.com/hashicorp/go-retryablehttp"
)

// maxAnswerBytes bounds what is read of an answer: answers are small, and
// a misbehaving peer must not make the agent buffer without limit.
const maxAnswerBytes = 1 << 20

// answer is one request's outcome: a transport error, or a status with the
// decoded body.
type answer struct {
	err        error
	status     int
	head       uint64 // 200
	headHash   string // 200 of GET head
	duplicate  bool   // 200 of POST
	problem    protocol.Problem
	retryAfter time.Duration // from a 425/429/503 Retry-After; 0 if none
}

// transient reports whether the answer is retried rather than judged:
// network errors, 408, 425, 429 and 5xx. 425 is the authority's
// window-not-ended: a record's window ends after its clock, so the batch
// is sent again once it has (Retry-After), never dead-lettered.
func (a answer) transient() bool {
	return a.err != nil || transientStatus(a.status)
}

func transientStatus(s int) bool {
	return s == http.StatusRequestTimeout || s == http.StatusTooEarly || s == http.StatusTooManyRequests || s >= 500
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

// do sends one request through the retrying client and decodes the answer.
// body is nil for GET; a []byte body is replayed on every retry.
func (r *Reporter) do(ctx context.Context, method, url string, body []byte) answer {
	var raw any
	if body != nil {
		raw = body
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, method, url, raw)
	if err != nil {
		return answer{err: fmt.Errorf("build %s %s: %w", method, url, err)}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json, application/problem+json")
	r.signRead(req.Request)
	resp, err := r.client.Do(req)
	if err != nil {
		// The pass-through error handler may return the last response
		// with the error (a context ended after an answer): close it.
		if resp != nil {
			_ = resp.Body.Close()
		}
		return answer{err: err}
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, retryAfter: retryAfter(resp, r.clock.Now())}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return answer{err: fmt.Errorf("read answer of %s %s (status %d): %w", method, url, resp.StatusCode, err)}
	}
	if a.status == http.StatusOK {
		// The members of protocol.BatchAnswer and protocol.HeadAnswer;
		// Head is a pointer so that a 200 without one is told from head 0.
		var ok struct {
			Head      *uint64 `json:"head"`
			HeadHash  string  `json:"head_hash"`
			Duplicate bool    `json:"duplicate"`
		}
		if err := json.Unmarshal(data, &ok); err != nil || ok.Head == nil {
			// A 200 we cannot read says nothing about what was stored:
			// a failure, after which the head is asked for.
			return answer{err: fmt.Errorf("%s %s: 200 answer without a head: %q", method, url, truncate(data, 200))}
		}
		a.head, a.headHash, a.duplicate = *ok.Head, ok.HeadHash, ok.Duplicate
		return a
	}
	// Best effort: a body that is not a problem leaves the problem empty
	// and the status still decides.
	_ = json.Unmarshal(data, &a.problem)
	return a
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// retryPolicy is go-retryablehttp's CheckRetry: stop when the context is
// done, retry transport errors (except those the library knows are
// permanent: TLS verification, bad scheme, redirects) and 408, 425, 429,
// 5xx.
// It never returns an error for a retryable answer, so that the last
// answer reaches the caller through the pass-through error handler.
func retryPolicy(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		retry, perr := retryablehttp.DefaultRetryPolicy(ctx, resp, err)
		if perr != nil {
			return false, nil // permanent: the caller sees err
		}
		return retry, nil
	}
	return transientStatus(resp.StatusCode), nil
}

// checkRetry counts each transient attempt for Stats.
func (r *Reporter) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	retry, perr := retryPolicy(ctx, resp, err)
	if retry {
		r.mu.Lock()
		r.stats.FailedAttempts++
		r.mu.Unlock()
	}
	return retry, perr
}

// backoff is go-retryablehttp's Backoff: Retry-After when a 425, 429 or
// 503 carries one (up to MaxRetryAfter), else min·2^attempt capped at max,
// with "equal jitter" (a uniform draw from the upper half), never below
// min. Jitter spreads a fleet's retries after an authority outage.
func (r *Reporter) backoff(min, max time.Duration, attempt int, resp *http.Response) time.Duration {
	if d := retryAfter(resp, r.clock.Now()); d > 0 {
		return d
	}
	return jittered(min, max, attempt)
}

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
func (r *Reporter) signRead(req *http.Request) {
	if req.Method != http.MethodGet {
		return
	}
	req.Header.Set("Authorization", protocol.SignRead(r.opts.Key, r.opts.Sealer.KeyID(), req.Method, req.URL.RequestURI(), r.clock.Now()))
}

// prepareRetry is go-retryablehttp's PrepareRetry: a retried read is
// signed again, so that waits (up to MaxRetryAfter each) never carry its
// timestamp out of the authority's protocol.ReadSkew.
func (r *Reporter) prepareRetry(req *http.Request) error {
	r.signRead(req)
	return nil
}
