package server_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/authoritytest"
	"github.com/gpumeter/gpumeter/authority/server"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/metering/ledger"
	"github.com/gpumeter/gpumeter/protocol"
)

// fleetEnv is an authority on SQLite with n nodes, each with one GPU and
// its own key, and the admission adm; batches[i] is node i's first batch.
func fleetEnv(t *testing.T, n int, adm server.Admission) (*env, []ledger.Sealed) {
	t.Helper()
	keys := make([]ed25519.PrivateKey, n)
	e := newEnvWith(t, store.DriverSQLite, "", 0, func(o *authoritytest.Options) {
		o.Admission = adm
		for i := range keys {
			keys[i] = newKey(t)
			o.Nodes = append(o.Nodes, authoritytest.Node{ID: fleetNode(i), Provider: provider,
				PublicKey: pub(keys[i]), GPUs: []string{fleetGPU(i)}})
		}
	})
	batches := make([]ledger.Sealed, n)
	for i, k := range keys {
		r := rec(fleetGPU(i), 2, "t1", 30000)
		r.Node = fleetNode(i)
		batches[i] = e.seal(e.newSealer(fleetNode(i), k), 1, "", reID(r))
	}
	return e, batches
}

func fleetNode(i int) string { return fmt.Sprintf("fleet-%03d", i) }
func fleetGPU(i int) string  { return fmt.Sprintf("GPU-bbbbbbbb-0000-4000-8000-%012d", i) }

// postRaw posts body and returns the status, the Retry-After header and
// the decoded answer, without failing on a non-JSON body (called from
// many goroutines: errors come back, not t.Fatal).
func postRaw(c *http.Client, url string, body []byte) (int, string, answer, error) {
	resp, err := c.Post(url+"/v1/batches", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, "", answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", answer{}, err
	}
	var a answer
	if err := json.Unmarshal(b, &a); err != nil {
		return resp.StatusCode, "", a, fmt.Errorf("answer %d is not JSON: %q", resp.StatusCode, b)
	}
	a.status = resp.StatusCode
	return resp.StatusCode, resp.Header.Get("Retry-After"), a, nil
}

// checkShed fails unless a is the overload answer: 503 overloaded, not
// held, with the authority's time and Retry-After in whole seconds.
func checkShed(t *testing.T, a answer, retryAfter, want string) {
	t.Helper()
	if a.status != http.StatusServiceUnavailable || a.Type != problemType(protocol.Overloaded) || a.Hold ||
		a.AuthorityTime == nil || retryAfter != want {
		t.Errorf("shed answer %d %s hold=%v time=%v Retry-After %q, want 503 %s, not held, with the authority's time and Retry-After %q",
			a.status, a.Type, a.Hold, a.AuthorityTime, retryAfter, protocol.Overloaded, want)
	}
}

// TestAdmissionShedsWhenFull: with every ingest slot taken, a batch is
// answered 503 overloaded with Retry-After once it has waited MaxWait,
// nothing of it stored nor kept in the audit trail; once a slot is free
// the same bytes are stored.
func TestAdmissionShedsWhenFull(t *testing.T) {
	e, batches := fleetEnv(t, 3, server.Admission{MaxConcurrent: 1, MaxWait: 20 * time.Millisecond, RetryAfter: 3 * time.Second})
	release := server.HoldIngestSlot(e.Server)
	var wg sync.WaitGroup
	answers := make([]answer, len(batches))
	retry := make([]string, len(batches))
	errs := make([]error, len(batches))
	for i, b := range batches {
		wg.Go(func() { _, retry[i], answers[i], errs[i] = postRaw(e.HTTP.Client(), e.HTTP.URL, b.Envelope) })
	}
	wg.Wait()
	for i := range batches {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		checkShed(t, answers[i], retry[i], "3")
	}
	if m := e.metrics(); !strings.Contains(m, "gpumeter_authority_batches_shed_total 3\n") {
		t.Errorf("metrics lack gpumeter_authority_batches_shed_total 3:\n%s", grepLines(m, "shed"))
	}
	ctx := context.Background()
	if n, err := e.Store.Node(ctx, fleetNode(0)); err != nil || n.HeadSeq != 0 {
		t.Fatalf("head after a shed batch: %+v, %v; want 0", n, err)
	}
	if refusals, err := e.Store.ListRefusals(ctx, store.RefusalFilter{}); err != nil || len(refusals) != 0 {
		t.Errorf("audit trail after shedding: %d refusals (%v), want none: shedding writes nothing", len(refusals), err)
	}
	release()
	for i, b := range batches {
		if _, _, a, err := postRaw(e.HTTP.Client(), e.HTTP.URL, b.Envelope); err != nil || a.status != http.StatusOK || a.Duplicate || a.Head != 1 {
			t.Errorf("node %d resent after the slot was freed: %+v, %v; want 200 head 1, not a duplicate", i, a, err)
		}
	}
}

// TestAdmissionUnderLoad: many nodes post at once to an authority that
// ingests one batch at a time: every request is answered, 200 or 503 with
// Retry-After; each shed batch sent again (at once: the test does not wait
// out Retry-After) is stored in the end, none twice and none lost, and
// every answered 200 is the batch's first store (a shed request stored
// nothing, so its resend is never a duplicate).
func TestAdmissionUnderLoad(t *testing.T) {
	const nodes = 40
	e, batches := fleetEnv(t, nodes, server.Admission{MaxConcurrent: 1, MaxWait: time.Millisecond})
	var mu sync.Mutex
	shed := 0
	var wg sync.WaitGroup
	deadline := time.Now().Add(time.Minute)
	for i, b := range batches {
		wg.Go(func() {
			for {
				status, retry, a, err := postRaw(e.HTTP.Client(), e.HTTP.URL, b.Envelope)
				switch {
				case err != nil:
					t.Errorf("node %d: %v", i, err)
					return
				case status == http.StatusOK:
					if a.Duplicate || a.Head != 1 {
						t.Errorf("node %d: 200 %+v, want head 1, not a duplicate", i, a)
					}
					return
				case status == http.StatusServiceUnavailable:
					// The test comes back at once, so the line of
					// returns grows: any whole second up to the bound.
					if s, err := strconv.Atoi(retry); err != nil || s < 1 || s > int(server.MaxRetryAfter/time.Second) {
						t.Errorf("node %d: Retry-After %q, want whole seconds in [1, %s]", i, retry, server.MaxRetryAfter)
					}
					checkShed(t, a, retry, retry)
					mu.Lock()
					shed++
					mu.Unlock()
				default:
					t.Errorf("node %d: %d %s %s, want 200 or 503", i, status, a.Type, a.Detail)
					return
				}
				if time.Now().After(deadline) {
					t.Errorf("node %d: still shed after a minute", i)
					return
				}
			}
		})
	}
	wg.Wait()
	ctx := context.Background()
	for i := range nodes {
		if n, err := e.Store.Node(ctx, fleetNode(i)); err != nil || n.HeadSeq != 1 {
			t.Errorf("node %d head %+v, %v; want 1", i, n, err)
		}
	}
	m := e.metrics()
	for _, want := range []string{
		fmt.Sprintf("gpumeter_authority_batches_shed_total %d\n", shed),
		fmt.Sprintf("gpumeter_authority_batches_accepted_total{result=\"stored\"} %d\n", nodes),
		"gpumeter_authority_batches_accepted_total{result=\"duplicate\"} 0\n",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q:\n%s", want, grepLines(m, "batches_"))
		}
	}
	t.Logf("%d nodes, %d requests shed", nodes, shed)
}

// TestAdmissionLineOfReturns: once the authority has measured its pace
// (the time between finished ingests), a request that would not get a
// slot within MaxWait by that pace is shed at once rather than after
// MaxWait, and each shed request is told a later Retry-After than the one
// before, one pace apart, so they do not come back together; the bound
// holds however long the line.
func TestAdmissionLineOfReturns(t *testing.T) {
	e, batches := fleetEnv(t, 3, server.Admission{MaxConcurrent: 1, MaxWait: server.MaxAdmissionWait})
	release := server.HoldIngestSlot(e.Server)
	defer release()
	// A 6 s pace: even the first in line would wait longer than MaxWait.
	server.SetIngestPace(e.Server, 6*time.Second)
	for i, want := range []string{"6", "12", "18"} {
		began := time.Now()
		_, retry, a, err := postRaw(e.HTTP.Client(), e.HTTP.URL, batches[i].Envelope)
		if err != nil {
			t.Fatal(err)
		}
		checkShed(t, a, retry, want)
		// Waiting out MaxWait would take 5 s; the pace says no slot
		// comes in time, so the answer comes at once.
		if took := time.Since(began); took >= server.MaxAdmissionWait {
			t.Errorf("shed %d answered after %s: it waited out MaxWait", i, took)
		}
	}
	server.SetIngestPace(e.Server, time.Hour)
	_, retry, a, err := postRaw(e.HTTP.Client(), e.HTTP.URL, batches[0].Envelope)
	if err != nil {
		t.Fatal(err)
	}
	checkShed(t, a, retry, strconv.Itoa(int(server.MaxRetryAfter/time.Second)))
}

// TestAdmissionOptions: zero fields take the driver's defaults, and out of
// range values are refused with the field named.
func TestAdmissionOptions(t *testing.T) {
	if d := server.DefaultAdmission(store.DriverSQLite); d.MaxConcurrent != server.DefaultMaxConcurrentSQLite || d.MaxWait != server.DefaultMaxWait || d.RetryAfter != time.Second {
		t.Errorf("SQLite default %+v", d)
	}
	if d := server.DefaultAdmission(store.DriverPostgres); d.MaxConcurrent != server.DefaultMaxConcurrentPostgres {
		t.Errorf("PostgreSQL default %+v", d)
	}
	e := newEnv(t, 0)
	for _, tc := range []struct {
		adm  server.Admission
		want string
	}{
		{server.Admission{MaxConcurrent: -1}, "negative max concurrent ingests -1"},
		{server.Admission{MaxWait: time.Minute}, "max wait 1m0s is out of range"},
		{server.Admission{RetryAfter: -time.Second}, "negative retry-after"},
	} {
		_, err := server.New(server.Options{Ingester: e.Ingester, Store: e.Store, Admission: tc.adm})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error with %q", tc.adm, err, tc.want)
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
