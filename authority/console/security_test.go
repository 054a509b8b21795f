package console

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/authoritytest"
	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/authority/store"
)

const operatorToken = "operator-token-0123456789abcdef0123456789abcdef"

// browser is a plain HTTP client that keeps the console's cookies itself
// (the cookies are Secure and the test server is plain HTTP on loopback)
// and does not follow redirects, so tests see them.
type browser struct {
	t       *testing.T
	base    string
	cookies map[string]string
}

func newBrowser(t *testing.T, base string) *browser {
	return &browser{t: t, base: base, cookies: map[string]string{}}
}

func (b *browser) do(method, path string, form url.Values) (int, http.Header, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range b.cookies {
		req.Header.Add("Cookie", k+"="+v)
	}
	cl := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := cl.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	for _, c := range resp.Cookies() {
		if c.MaxAge < 0 {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c.Value
		}
	}
	return resp.StatusCode, resp.Header, string(data)
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// signIn signs in with token and returns the session's CSRF token.
func (b *browser) signIn(token string) string {
	b.t.Helper()
	_, _, page := b.do("GET", "/console/signin", nil)
	m := csrfRe.FindStringSubmatch(page)
	if m == nil {
		b.t.Fatalf("sign-in page without a CSRF field:\n%s", page)
	}
	code, h, _ := b.do("POST", "/console/signin", url.Values{"csrf": {m[1]}, "token": {token}})
	if code != http.StatusSeeOther || h.Get("Location") != Prefix {
		b.t.Fatalf("sign in: %d to %q, want 303 to %s", code, h.Get("Location"), Prefix)
	}
	_, _, page = b.do("GET", "/console/", nil)
	if m = csrfRe.FindStringSubmatch(page); m == nil {
		b.t.Fatalf("overview without a CSRF field:\n%s", page)
	}
	return m[1]
}

func (b *browser) get(path string, want int) string {
	b.t.Helper()
	code, _, body := b.do("GET", path, nil)
	if code != want {
		b.t.Fatalf("GET %s: %d, want %d\n%.600s", path, code, want, body)
	}
	return body
}

// startConsole serves a console over d's store on a loopback listener.
func startConsole(t *testing.T, d *demo, now time.Time) string {
	t.Helper()
	c, err := New(Options{Store: d.st, OperatorToken: []byte(operatorToken), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestConsoleSecurity(t *testing.T) {
	authoritytest.EachDriver(t, func(t *testing.T, driver string) {
		now := time.Now().UTC()
		d := openDemo(t, driver, 72, 72*time.Hour, now, true)
		base := startConsole(t, d, now)
		ctx := context.Background()
		_, provA, err := d.st.CreateConsoleToken(ctx, store.RoleProvider, "cloud-a", "staff of A", now)
		if err != nil {
			t.Fatal(err)
		}
		tokAcme, acme, err := d.st.CreateConsoleToken(ctx, store.RoleEntity, "acme", "", now)
		if err != nil {
			t.Fatal(err)
		}

		t.Run("overview figures", func(t *testing.T) {
			b := newBrowser(t, base)
			b.signIn(operatorToken)
			for i := range 2 { // the first read folds node-a1's batch; the second reads the rollup
				page := b.get("/console/", 200)
				// 144 hourly records, 2 held subsidies of 12.50 each; paid: 142 × 12.50.
				for _, want := range []string{">144.00<", "¥25.00", "¥1775.00", ">72.00<"} {
					if !strings.Contains(page, want) {
						t.Errorf("read %d: the operator's overview lacks %q", i, want)
					}
				}
			}
			p := newBrowser(t, base)
			p.signIn(provA)
			if page := p.get("/console/", 200); !strings.Contains(page, ">72.00<") || strings.Contains(page, ">144.00<") {
				t.Errorf("cloud-a's overview does not show its 72 GPU-hours alone")
			}
		})

		t.Run("no session", func(t *testing.T) {
			b := newBrowser(t, base)
			for _, p := range []string{"/console/", "/console/reviews", "/console/claims?provider=cloud-a&export=lines&format=csv", "/console/audit"} {
				code, h, _ := b.do("GET", p, nil)
				if code != http.StatusSeeOther || h.Get("Location") != "/console/signin" {
					t.Errorf("GET %s without a session: %d to %q, want 303 to the sign-in page", p, code, h.Get("Location"))
				}
			}
			if code, _, _ := b.do("POST", "/console/reviews/"+d.held[0]+"/approve", url.Values{"csrf": {"x"}}); code != http.StatusUnauthorized {
				t.Errorf("POST without a session: %d, want 401", code)
			}
			code, _, page := b.do("POST", "/console/signin", url.Values{"token": {operatorToken}})
			if code != http.StatusForbidden || strings.Contains(page, operatorToken) {
				t.Errorf("sign-in without its CSRF token: %d, want 403", code)
			}
			b.do("GET", "/console/signin", nil)
			m := csrfRe.FindStringSubmatch(b.get("/console/signin", 200))
			code, _, page = b.do("POST", "/console/signin", url.Values{"csrf": {m[1]}, "token": {"gmc_0000"}})
			if code != http.StatusUnauthorized || !strings.Contains(page, "not valid") {
				t.Errorf("a wrong token: %d, want 401 with the reason\n%.400s", code, page)
			}
		})

		for _, sc := range []struct {
			name, token, own string
			others           []string // pages of other parties: 403
		}{
			{"provider sees its own only", provA, "/console/claims?provider=cloud-a", []string{"/console/claims?provider=cloud-b",
				"/console/nodes/node-b1", "/console/providers/cloud-b", "/console/reviews", "/console/programs", "/console/audit",
				"/console/entities/acme", "/console/statement?entity=globex", "/console/vouchers/v-acme",
				"/console/claims?provider=cloud-b&export=lines&format=csv"}},
			{"entity sees its own only", acme, "/console/statement", []string{"/console/vouchers/v-globex", "/console/entities/globex",
				"/console/claims?provider=cloud-a", "/console/nodes/node-a1", "/console/statement?entity=globex", "/console/reviews"}},
		} {
			t.Run(sc.name, func(t *testing.T) {
				b := newBrowser(t, base)
				b.signIn(sc.token)
				own := b.get(sc.own, 200)
				if !strings.Contains(own, "node-a1-10") || strings.Contains(own, "node-b1") {
					t.Errorf("%s does not show exactly cloud-a's and acme's lines", sc.own)
				}
				for _, p := range sc.others {
					b.get(p, http.StatusForbidden)
				}
				if over := b.get("/console/", 200); strings.Contains(over, "cloud-b") || strings.Contains(over, "v-globex") {
					t.Errorf("the overview shows another party's data")
				}
			})
		}

		t.Run("forged CSRF token", func(t *testing.T) {
			b := newBrowser(t, base)
			csrf := b.signIn(operatorToken)
			for _, forged := range []string{"", "00" + csrf[2:], strings.Repeat("a", len(csrf))} {
				code, _, _ := b.do("POST", "/console/reviews/"+d.held[0]+"/approve", url.Values{"csrf": {forged}})
				if code != http.StatusForbidden {
					t.Errorf("approve with CSRF %q: %d, want 403", forged, code)
				}
			}
			rs, err := d.st.ListReviews(ctx, store.ReviewFilter{Status: billing.ReviewHeld})
			if err != nil || len(rs) != 2 {
				t.Fatalf("after forged posts: %d held reviews (%v), want 2", len(rs), err)
			}
			// The real token works, and the decision is the operator's.
			code, h, _ := b.do("POST", "/console/reviews/"+d.held[1]+"/reject", url.Values{"csrf": {csrf}, "note": {"no work done"}})
			if code != http.StatusSeeOther || !strings.Contains(h.Get("Location"), "done=1") {
				t.Fatalf("reject with the session's CSRF token: %d to %q", code, h.Get("Location"))
			}
			rs, _ = d.st.ListReviews(ctx, store.ReviewFilter{Status: billing.ReviewRejected})
			if len(rs) != 1 || rs[0].Note != "no work done" || rs[0].DecidedBy != ConsoleOperator {
				t.Errorf("rejected reviews: %+v", rs)
			}
		})

		t.Run("HTML is escaped", func(t *testing.T) {
			b := newBrowser(t, base)
			b.signIn(operatorToken)
			for _, p := range []string{"/console/entities", "/console/programs", "/console/reviews",
				"/console/claims?provider=cloud-a&" + periodQuery(d.start, d.end.Add(time.Hour), time.UTC), "/console/audit", "/console/"} {
				page := b.get(p, 200)
				for _, raw := range []string{"<script>alert", "<img src=x", "<b onmouseover", "<b>one</b>", "<i>of</i>"} {
					if strings.Contains(page, raw) {
						t.Errorf("%s holds %q unescaped", p, raw)
					}
				}
			}
			if page := b.get("/console/entities", 200); !strings.Contains(page, "&lt;script&gt;") {
				t.Errorf("the entities page does not show the escaped name")
			}
			if page := b.get("/console/reviews", 200); !strings.Contains(page, "&lt;b onmouseover=alert(2)&gt;") {
				t.Errorf("the review queue does not show the escaped reason")
			}
		})

		t.Run("revoked token ends its sessions", func(t *testing.T) {
			b := newBrowser(t, base)
			b.signIn(acme)
			b.get("/console/statement", 200)
			if err := d.st.RevokeConsoleToken(ctx, tokAcme.ID, now); err != nil {
				t.Fatal(err)
			}
			code, h, _ := b.do("GET", "/console/statement", nil)
			if code != http.StatusSeeOther || h.Get("Location") != "/console/signin" {
				t.Errorf("after revocation: %d to %q, want 303 to the sign-in page", code, h.Get("Location"))
			}
			b2 := newBrowser(t, base)
			m := csrfRe.FindStringSubmatch(b2.get("/console/signin", 200))
			if code, _, _ := b2.do("POST", "/console/signin", url.Values{"csrf": {m[1]}, "token": {acme}}); code != http.StatusUnauthorized {
				t.Errorf("sign-in with a revoked token: %d, want 401", code)
			}
		})

		t.Run("language switch stays on this host", func(t *testing.T) {
			b := newBrowser(t, base)
			for back, want := range map[string]string{
				"/console/claims?provider=cloud-a": "/console/claims?provider=cloud-a",
				"https://evil.example/console/":    "/console/",
				"//evil.example/console/":          "/console/",
				"/console//evil.example":           "/console/",
				"/elsewhere":                       "/console/",
			} {
				code, h, _ := b.do("GET", "/console/lang?to=zh-CN&back="+url.QueryEscape(back), nil)
				if code != http.StatusSeeOther || h.Get("Location") != want {
					t.Errorf("back %q: %d to %q, want %q", back, code, h.Get("Location"), want)
				}
			}
			if b.cookies[langCookie] != "zh-CN" {
				t.Errorf("language cookie %q", b.cookies[langCookie])
			}
		})

		t.Run("cookies and headers", func(t *testing.T) {
			b := newBrowser(t, base)
			b.do("GET", "/console/signin", nil)
			req, _ := http.NewRequest("GET", base+"/console/signin", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			for _, c := range resp.Cookies() {
				if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
					t.Errorf("cookie %s: Secure %v HttpOnly %v SameSite %v", c.Name, c.Secure, c.HttpOnly, c.SameSite)
				}
			}
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
				t.Errorf("Content-Security-Policy %q", csp)
			}
		})
	})
}
