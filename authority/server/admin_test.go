package server_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/authoritytest"
	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/authority/server"
)

const adminToken = "0123456789abcdef0123456789abcdef-operator"

// adminEnv is the operator API on the store of an env (node-01 at t0).
type adminEnv struct {
	*env
	admin *httptest.Server
}

func newAdminEnv(t *testing.T, driver string) *adminEnv {
	t.Helper()
	e := newEnvOn(t, driver, 0)
	adm, err := server.NewAdmin(server.AdminOptions{Store: e.Store, Token: []byte(adminToken)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(adm.Handler())
	t.Cleanup(srv.Close)
	return &adminEnv{env: e, admin: srv}
}

// adminAnswer is a response of the operator API.
type adminAnswer struct {
	status int
	header http.Header
	body   []byte
	// The problem fields, when it is one.
	Type   string `json:"type"`
	Detail string `json:"detail"`
}

func (a *adminEnv) call(method, path, token string, body any) adminAnswer {
	a.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			a.t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, a.admin.URL+path, r)
	if err != nil {
		a.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := a.admin.Client().Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	ans := adminAnswer{status: resp.StatusCode, header: resp.Header}
	if ans.body, err = io.ReadAll(resp.Body); err != nil {
		a.t.Fatal(err)
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		if err := json.Unmarshal(ans.body, &ans); err != nil {
			a.t.Fatalf("problem is not JSON: %q", ans.body)
		}
	}
	return ans
}

// must calls with the right token and fails unless the status is want.
func (a *adminEnv) must(want int, method, path string, body any) adminAnswer {
	a.t.Helper()
	ans := a.call(method, path, adminToken, body)
	if ans.status != want {
		a.t.Fatalf("%s %s: %d %s, want %d", method, path, ans.status, ans.body, want)
	}
	return ans
}

// refused calls with the right token and fails unless the answer is the
// problem of cause with status, its detail holding each of details.
func (a *adminEnv) refused(status int, cause, method, path string, body any, details ...string) {
	a.t.Helper()
	ans := a.call(method, path, adminToken, body)
	if ans.status != status || ans.Type != problemType(cause) {
		a.t.Fatalf("%s %s: %d %s, want %d %s", method, path, ans.status, ans.body, status, cause)
	}
	for _, d := range details {
		if !strings.Contains(ans.Detail, d) {
			a.t.Errorf("%s %s: detail %q does not name %q", method, path, ans.Detail, d)
		}
	}
}

func TestAdminRefusesWithoutTheToken(t *testing.T) {
	a := newAdminEnv(t, "")
	for _, tc := range []struct{ name, header string }{
		{"no header", ""},
		{"wrong token", "Bearer " + strings.Repeat("x", len(adminToken))},
		{"token prefix", "Bearer " + adminToken[:len(adminToken)-1]},
		{"basic scheme", "Basic " + adminToken},
		{"bare token", adminToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// An unknown path too: nothing is told before the token is checked.
			for _, path := range []string{"/v1/admin/programs", "/v1/admin/nothing"} {
				req, _ := http.NewRequest(http.MethodGet, a.admin.URL+path, nil)
				if tc.header != "" {
					req.Header.Set("Authorization", tc.header)
				}
				resp, err := a.admin.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				var p struct{ Type string }
				_ = json.NewDecoder(resp.Body).Decode(&p)
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized || p.Type != problemType(server.CauseUnauthorized) ||
					!strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%s: %d %q %q", path, resp.StatusCode, p.Type, resp.Header.Get("WWW-Authenticate"))
				}
			}
		})
	}
	// The scheme is case-insensitive (RFC 9110).
	req, _ := http.NewRequest(http.MethodGet, a.admin.URL+"/v1/admin/nothing", nil)
	req.Header.Set("Authorization", "bearer "+adminToken)
	resp, err := a.admin.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("lower-case scheme: %d, want 404 past the token check", resp.StatusCode)
	}
}

func TestNewAdminRefusesAShortToken(t *testing.T) {
	e := newEnvOn(t, "", 0)
	if _, err := server.NewAdmin(server.AdminOptions{Store: e.Store, Token: []byte("short")}); err == nil {
		t.Fatal("a 5-character token was accepted")
	}
}

// Times of the billing objects: the usage is at t0 (helpers_test.go); the
// store checks expiry against the real clock, so the ends are years ahead.
var (
	validFrom = t0.Add(-30 * 24 * time.Hour)
	validTo   = time.Now().AddDate(3, 0, 0).UTC().Truncate(time.Hour)
)

func demoProgram(id string) billing.Program {
	return billing.Program{ID: id, Issuer: "Example Bureau", Name: "Example voucher", Ratio: 5000,
		CapPerYear: 1_000_000_00, Providers: []string{provider}, ValidFrom: validFrom, ValidTo: validTo,
		Rounding: billing.RoundHalfUp, Settlement: billing.SettleAfter}
}

// tenantOf puts the entity (Example Robotics Ltd.) and maps the
// provider's tenant t1 to it.
func (a *adminEnv) tenantOf(entity string) {
	a.t.Helper()
	a.must(200, "PUT", "/v1/admin/entities/"+entity, map[string]any{"name": "Example Robotics Ltd."})
	a.must(200, "PUT", "/v1/admin/tenants/"+provider+"/t1", server.TenantBody{Entity: entity})
}

func TestAdminBilling(t *testing.T) {
	authoritytest.EachDriver(t, func(t *testing.T, driver string) {
		a := newAdminEnv(t, driver)
		const entity = "91440300EXAMPLE001"
		a.tenantOf(entity)
		a.refused(409, server.CauseBillingConflict, "PUT", "/v1/admin/tenants/"+provider+"/t2", server.TenantBody{Entity: "nobody"}, "nobody")
		a.refused(404, "not-found", "GET", "/v1/admin/statements/nobody?from=2026-01-01&to=2026-02-01", nil, "nobody")

		a.must(201, "POST", "/v1/admin/programs", demoProgram("p1"))
		a.refused(409, server.CauseBillingConflict, "POST", "/v1/admin/programs", demoProgram("p1"), "p1")
		over := demoProgram("p2")
		over.Ratio = 12000
		a.refused(400, server.CauseBillingInvalid, "POST", "/v1/admin/programs", over, "ratio_bp")
		var progs struct{ Programs []billing.Program }
		if err := json.Unmarshal(a.must(200, "GET", "/v1/admin/programs", nil).body, &progs); err != nil ||
			len(progs.Programs) != 1 || progs.Programs[0].ID != "p1" || progs.Programs[0].Ratio != 5000 {
			t.Fatalf("programs = %+v, %v", progs, err)
		}

		// 60 CNY per GPU-hour: a full minute costs exactly 100 fen.
		card := billing.RateCard{ID: "h100-2026", Provider: provider, Model: "NVIDIA H100 80GB HBM3",
			PricePerHour: 6000, ValidFrom: validFrom}
		a.must(201, "POST", "/v1/admin/ratecards", card)
		card.ID, card.ValidFrom = "h100-overlap", t0
		a.refused(409, server.CauseBillingConflict, "POST", "/v1/admin/ratecards", card, "h100-2026")
		card.ID, card.PricePerHour = "h100-negative", -1
		a.refused(400, server.CauseBillingInvalid, "POST", "/v1/admin/ratecards", card, "price_fen_per_hour")
		a.refused(404, "not-found", "POST", "/v1/admin/ratecards/none/end", server.RateCardEnd{At: t0}, "none")

		// 1.20 CNY: runs out on the third minute (50% of 100 fen a minute).
		issue := server.VoucherIssue{ID: "v1", Program: "p1", Holder: entity, Face: 120, Issued: validFrom, Expires: validTo}
		var v billing.Voucher
		if err := json.Unmarshal(a.must(201, "POST", "/v1/admin/vouchers", issue).body, &v); err != nil ||
			v.Balance != 120 || v.Status != billing.VoucherActive {
			t.Fatalf("issued voucher = %+v, %v", v, err)
		}
		expired := issue
		expired.ID, expired.Expires = "v-old", time.Now().Add(-time.Hour).UTC()
		a.refused(400, server.CauseBillingInvalid, "POST", "/v1/admin/vouchers", expired, "expires")
		a.refused(400, "bad-request", "POST", "/v1/admin/vouchers", `{"id":"v2","balance_fen":5}`, "balance_fen")
		a.refused(400, "bad-request", "POST", "/v1/admin/vouchers", `{"id":`)
		a.refused(404, "not-found", "POST", "/v1/admin/vouchers/none/status", server.VoucherStatus{Status: "suspended"}, "none")
		a.refused(400, server.CauseBillingInvalid, "POST", "/v1/admin/vouchers/v1/status", server.VoucherStatus{Status: "lost"}, "lost")
		a.must(200, "POST", "/v1/admin/vouchers/v1/status", server.VoucherStatus{Status: "suspended"})
		a.must(200, "POST", "/v1/admin/vouchers/v1/status", server.VoucherStatus{Status: "active"})

		// Three minutes of t1's usage and one idle minute: billed at ingest.
		a.mustAccept(a.seal(a.sealer, 1, "", rec(gpuA, 3, "t1", 60000), rec(gpuA, 2, "t1", 60000),
			rec(gpuA, 1, "t1", 60000), rec(gpuB, 1, "", 60000)))

		from, to := t0.Add(-time.Hour).Format(time.RFC3339), t0.Format(time.RFC3339)
		var st billing.Statement
		if err := json.Unmarshal(a.must(200, "GET", "/v1/admin/statements/"+entity+"?from="+from+"&to="+to, nil).body, &st); err != nil {
			t.Fatal(err)
		}
		want := billing.Totals{Records: 3, GPUMillis: 180000, Cost: 300, Subsidy: 120, Payable: 180,
			TenantPaysProvider: 300, Reimbursed: 120} // after_settlement: paid in full, reimbursed
		if st.Entity != entity || st.Totals != want || len(st.Lines) != 3 {
			t.Fatalf("statement totals %+v with %d lines, want %+v", st.Totals, len(st.Lines), want)
		}

		ans := a.must(200, "GET", "/v1/admin/statements/"+entity+"?from="+from+"&to="+to+"&format=csv", nil)
		if ct := ans.header.Get("Content-Type"); ct != server.CSVContentType {
			t.Errorf("CSV content type %q", ct)
		}
		rows, err := csv.NewReader(bytes.NewReader(ans.body)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 4 || strings.Join(rows[0], ",") != strings.Join(billing.LinesCSVHeader, ",") {
			t.Fatalf("CSV rows %q", rows)
		}
		col := map[string]int{}
		for i, h := range rows[0] {
			col[h] = i
		}
		var cost, subsidy int
		for _, r := range rows[1:] {
			if r[col["tenant"]] != "t1" || r[col["rate_card"]] != "h100-2026" || r[col["cost_fen"]] != "100" {
				t.Errorf("CSV row %q", r)
			}
			cost += atoi(t, r[col["cost_fen"]])
			subsidy += atoi(t, r[col["subsidy_fen"]])
		}
		if cost != 300 || subsidy != 120 {
			t.Errorf("CSV rows sum to cost %d subsidy %d, want 300 120", cost, subsidy)
		}

		var c billing.Claim
		if err := json.Unmarshal(a.must(200, "GET", "/v1/admin/claims/"+provider+"?from="+from+"&to="+to, nil).body, &c); err != nil {
			t.Fatal(err)
		}
		if c.Totals != want || len(c.ByVoucher) != 1 || c.ByVoucher[0].Voucher != "v1" || c.ByVoucher[0].Amount != 120 {
			t.Fatalf("claim totals %+v by voucher %+v", c.Totals, c.ByVoucher)
		}
		var vs struct{ Vouchers []billing.Voucher }
		if err := json.Unmarshal(a.must(200, "GET", "/v1/admin/vouchers?holder="+entity, nil).body, &vs); err != nil ||
			len(vs.Vouchers) != 1 || vs.Vouchers[0].Balance != 0 {
			t.Fatalf("vouchers after the usage = %+v, %v", vs, err)
		}

		a.refused(400, "bad-request", "GET", "/v1/admin/statements/"+entity+"?from="+to+"&to="+from, nil, "not after")
		a.refused(400, "bad-request", "GET", "/v1/admin/claims/"+provider+"?from="+from+"&to="+to+"&format=xml", nil, "xml")
		a.must(200, "POST", "/v1/admin/ratecards/h100-2026/end", server.RateCardEnd{At: t0.Add(time.Hour)})
	})
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatalf("%q is not a number", s)
	}
	return n
}

func TestLoadAdminToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, content string
		mode          os.FileMode
		wantErr       string
	}{
		{"0600 with a newline", adminToken + "\n", 0o600, ""},
		{"0400", adminToken, 0o400, ""},
		{"group readable", adminToken, 0o640, "mode 0640"},
		{"world readable", adminToken, 0o644, "mode 0644"},
		{"too short", "abc\n", 0o600, "at least 32"},
		{"two words", adminToken + " " + adminToken, 0o600, "one word"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := server.LoadAdminToken(write(strings.ReplaceAll(tc.name, " ", "-"), tc.content, tc.mode))
			if tc.wantErr == "" {
				if err != nil || string(tok) != adminToken {
					t.Fatalf("token %q, %v", tok, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), adminToken[:16]) {
				t.Errorf("the error quotes the token: %v", err)
			}
		})
	}
	if _, err := server.LoadAdminToken(filepath.Join(dir, "none")); err == nil {
		t.Error("a missing file was accepted")
	}
}

func TestParseBillingTime(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Time
		bad  bool
	}{
		{in: "2026-11-23", want: time.Date(2026, 11, 22, 16, 0, 0, 0, time.UTC)}, // midnight UTC+8
		{in: "2026-11-23T08:00:00Z", want: time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)},
		{in: "2026-11-23T08:00:00+08:00", want: time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)},
		{in: "23/11/2026", bad: true},
		{in: "2026-11-23 08:00", bad: true},
		{in: "", bad: true},
	} {
		got, err := server.ParseBillingTime(tc.in)
		if tc.bad != (err != nil) || !got.Equal(tc.want) {
			t.Errorf("ParseBillingTime(%q) = %v, %v", tc.in, got, err)
		}
	}
}
