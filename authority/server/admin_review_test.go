package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/authoritytest"
	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/authority/server"
	"github.com/gpumeter/gpumeter/authority/store"
)

func TestAdminReviewsAndRefusals(t *testing.T) {
	authoritytest.EachDriver(t, func(t *testing.T, driver string) {
		a := newAdminEnv(t, driver)
		const entity = "E1"
		a.tenantOf(entity)
		a.must(201, "POST", "/v1/admin/programs", demoProgram("p1"))
		a.must(201, "POST", "/v1/admin/ratecards", billing.RateCard{ID: "h100", Provider: provider,
			Model: "NVIDIA H100 80GB HBM3", PricePerHour: 6000, ValidFrom: validFrom})
		a.must(201, "POST", "/v1/admin/vouchers", server.VoucherIssue{ID: "v1", Program: "p1", Holder: entity, Face: 1000,
			Issued: validFrom, Expires: validTo})
		// Three minutes of t1 at 100 fen, 50 fen subsidized each.
		a.mustAccept(a.seal(a.sealer, 1, "", rec(gpuA, 3, "t1", 60000), rec(gpuA, 2, "t1", 60000), rec(gpuA, 1, "t1", 60000)))
		period := "?from=" + t0.Add(-time.Hour).Format(time.RFC3339) + "&to=" + t0.Format(time.RFC3339)
		var st billing.Statement
		mustJSON(t, a.must(200, "GET", "/v1/admin/statements/"+entity+period, nil), &st)
		a.HoldReview(t, st.Lines[0].RecordID, "energy 0 mJ", t0)
		a.HoldReview(t, st.Lines[1].RecordID, "utilization 0%", t0)
		garbage := []byte(`{"payload": "garbage"`)
		if ans := a.post(garbage); ans.status != http.StatusBadRequest {
			t.Fatalf("garbage: %d", ans.status)
		}

		// The token is required on every new route.
		for _, r := range []struct{ method, path string }{
			{"GET", "/v1/admin/refusals"}, {"GET", "/v1/admin/refusals/1"}, {"GET", "/v1/admin/reviews"},
			{"POST", "/v1/admin/reviews/" + st.Lines[0].RecordID + "/approve"},
			{"POST", "/v1/admin/reviews/" + st.Lines[0].RecordID + "/reject"},
		} {
			if ans := a.call(r.method, r.path, "", server.ReviewDecision{By: "x", Note: "y"}); ans.status != http.StatusUnauthorized {
				t.Errorf("%s %s without the token: %d", r.method, r.path, ans.status)
			}
		}

		// Refusals.
		var refs struct{ Refusals []store.Refusal }
		mustJSON(t, a.must(200, "GET", "/v1/admin/refusals", nil), &refs)
		if len(refs.Refusals) != 1 || refs.Refusals[0].Cause != "malformed" || refs.Refusals[0].Envelope != nil {
			t.Fatalf("refusals: %+v", refs)
		}
		for query, n := range map[string]int{"?cause=malformed": 1, "?cause=fork": 0, "?unauthenticated=true": 1,
			"?node=" + node1: 0, "?limit=1&since=2000-01-01": 1, "?until=2000-01-01": 0} {
			mustJSON(t, a.must(200, "GET", "/v1/admin/refusals"+query, nil), &refs)
			if len(refs.Refusals) != n {
				t.Errorf("refusals%s: %d, want %d", query, len(refs.Refusals), n)
			}
		}
		mustJSON(t, a.must(200, "GET", "/v1/admin/refusals", nil), &refs)
		id := refs.Refusals[0].ID
		var one store.Refusal
		mustJSON(t, a.must(200, "GET", "/v1/admin/refusals/"+strconv.FormatInt(id, 10), nil), &one)
		if !bytes.Equal(one.Envelope, garbage) || one.Size != int64(len(garbage)) {
			t.Errorf("refusal %d: envelope %q", id, one.Envelope)
		}
		a.refused(404, "not-found", "GET", "/v1/admin/refusals/999", nil, "999")
		a.refused(400, "bad-request", "GET", "/v1/admin/refusals/x", nil, "x")
		a.refused(400, "bad-request", "GET", "/v1/admin/refusals?limit=0", nil, "limit")
		a.refused(400, "bad-request", "GET", "/v1/admin/refusals?since=yesterday", nil, "since")
		a.refused(400, "bad-request", "GET", "/v1/admin/refusals?unauthenticated=yes", nil, "unauthenticated")
		a.refused(400, "bad-request", "GET", "/v1/admin/refusals?node=n&unauthenticated=true", nil, "exclude")

		// Held subsidies: apart on the statement, out of the claim.
		var revs struct{ Reviews []store.Review }
		mustJSON(t, a.must(200, "GET", "/v1/admin/reviews?status=held&provider="+provider+"&entity="+entity, nil), &revs)
		if len(revs.Reviews) != 2 || revs.Reviews[0].Held != 50 || revs.Reviews[0].Reason != "energy 0 mJ" {
			t.Fatalf("held reviews: %+v", revs)
		}
		a.refused(400, server.CauseBillingInvalid, "GET", "/v1/admin/reviews?status=pending", nil, "status")
		mustJSON(t, a.must(200, "GET", "/v1/admin/statements/"+entity+period, nil), &st)
		if want := (billing.Totals{Records: 3, GPUMillis: 180000, Cost: 300, Subsidy: 50, Held: 100, Payable: 150, HeldRecords: 2,
			TenantPaysProvider: 300, Reimbursed: 50}); st.Totals != want {
			t.Errorf("statement totals %+v, want %+v", st.Totals, want)
		}
		var c billing.Claim
		mustJSON(t, a.must(200, "GET", "/v1/admin/claims/"+provider+period, nil), &c)
		if len(c.ByVoucher) != 1 || c.ByVoucher[0].Amount != 50 {
			t.Errorf("claim by voucher: %+v, want v1 50 (the held 100 is not claimable)", c.ByVoucher)
		}

		// Decisions.
		held0, held1 := st.Lines[0].RecordID, st.Lines[1].RecordID
		a.refused(400, server.CauseBillingInvalid, "POST", "/v1/admin/reviews/"+held0+"/reject", server.ReviewDecision{By: "alice"}, "note")
		a.refused(400, server.CauseBillingInvalid, "POST", "/v1/admin/reviews/"+held0+"/approve", server.ReviewDecision{}, "by")
		a.refused(400, "bad-request", "POST", "/v1/admin/reviews/"+held0+"/approve", `{"by":"alice","amount":1}`, "amount")
		var rev store.Review
		mustJSON(t, a.must(200, "POST", "/v1/admin/reviews/"+held0+"/reject", server.ReviewDecision{By: "alice", Note: "no work"}), &rev)
		if rev.Status != billing.ReviewRejected || rev.DecidedBy != "alice" || rev.Note != "no work" || rev.Decided.IsZero() {
			t.Errorf("rejected review: %+v", rev)
		}
		a.refused(409, server.CauseBillingConflict, "POST", "/v1/admin/reviews/"+held0+"/reject", server.ReviewDecision{By: "bob", Note: "again"}, "already")
		a.refused(409, server.CauseBillingConflict, "POST", "/v1/admin/reviews/"+held0+"/approve", server.ReviewDecision{By: "bob"}, "rejected")
		a.must(200, "POST", "/v1/admin/reviews/"+held1+"/approve", server.ReviewDecision{By: "bob"})
		a.refused(404, "not-found", "POST", "/v1/admin/reviews/"+st.Lines[2].RecordID+"/approve", server.ReviewDecision{By: "bob"}, st.Lines[2].RecordID)
		var vs struct{ Vouchers []billing.Voucher }
		mustJSON(t, a.must(200, "GET", "/v1/admin/vouchers", nil), &vs)
		if len(vs.Vouchers) != 1 || vs.Vouchers[0].Balance != 900 {
			t.Errorf("vouchers after the rejection: %+v, want v1 at 900 (850 + 50 returned)", vs.Vouchers)
		}
		mustJSON(t, a.must(200, "GET", "/v1/admin/reviews", nil), &revs)
		if len(revs.Reviews) != 2 || revs.Reviews[0].Status != billing.ReviewRejected || revs.Reviews[1].Status != billing.ReviewApproved {
			t.Errorf("reviews after the decisions: %+v", revs.Reviews)
		}
		mustJSON(t, a.must(200, "GET", "/v1/admin/statements/"+entity+period, nil), &st)
		if want := (billing.Totals{Records: 3, GPUMillis: 180000, Cost: 300, Subsidy: 100, Payable: 200, RejectedRecords: 1,
			TenantPaysProvider: 300, Reimbursed: 100}); st.Totals != want {
			t.Errorf("statement totals after the decisions %+v, want %+v", st.Totals, want)
		}
	})
}

func mustJSON(t *testing.T, ans adminAnswer, v any) {
	t.Helper()
	if err := json.Unmarshal(ans.body, v); err != nil {
		t.Fatalf("answer is not JSON: %v: %s", err, ans.body)
	}
}
