package console

import (
	"context"
	"html"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gpumeter/gpumeter/authority/authoritytest"
	"github.com/gpumeter/gpumeter/authority/billing"
	"github.com/gpumeter/gpumeter/authority/store"
	"github.com/gpumeter/gpumeter/internal/tlog"
)

var (
	tagRe      = regexp.MustCompile(`(?s)<[^>]*>`)
	statusRe   = regexp.MustCompile(`\b(active|held|suspended|revoked|expired|approved|rejected|paid)\b`)
	figureRe   = regexp.MustCompile(`(?s)<dt>([^<]*)</dt><dd>(.*?)</dd>`)
	hrefRe     = regexp.MustCompile(`href="([^"]+)"`)
	dottedKeys = func() []string {
		var ks []string
		for k := range messages {
			if strings.Contains(k, ".") {
				ks = append(ks, k)
			}
		}
		return ks
	}()
)

// visibleText is a page's text nodes, unescaped and trimmed.
func visibleText(page string) []string {
	var out []string
	for _, s := range tagRe.Split(page, -1) {
		if s = strings.TrimSpace(html.UnescapeString(s)); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Every page, rendered in Chinese for each role, shows no message key, no
// English message and no English status word.
func TestPagesInChinese(t *testing.T) {
	authoritytest.EachDriver(t, func(t *testing.T, driver string) {
		now := time.Now().UTC()
		d := openDemo(t, driver, 72, 72*time.Hour, now, true)
		ctx := context.Background()
		// Every status the pages show: a rejected review, a revoked, a
		// suspended and an expired voucher.
		if _, err := d.st.RejectReview(ctx, d.held[1], "officer", "idle GPU", now); err != nil {
			t.Fatal(err)
		}
		year := time.Date(now.Year()-1, 1, 1, 0, 0, 0, 0, time.UTC)
		for i, st := range []string{billing.VoucherRevoked, billing.VoucherSuspended, billing.VoucherActive} {
			id := "v-acme-" + st[:3]
			exp := now.AddDate(0, 0, 10)
			if i == 2 {
				id, exp = "v-acme-old", now.AddDate(0, 0, -1)
			}
			if err := d.st.IssueVoucherAt(ctx, billing.Voucher{ID: id, Program: "p1", Holder: "acme", Face: 100,
				Issued: year, Expires: exp, Status: billing.VoucherActive}, year); err != nil {
				t.Fatal(err)
			}
			if st != billing.VoucherActive {
				if err := d.st.SetVoucherStatus(ctx, id, st); err != nil {
					t.Fatal(err)
				}
			}
		}
		base := startConsole(t, d, now)
		provA, acme := consoleToken(t, d, store.RoleProvider, "cloud-a", now), consoleToken(t, d, store.RoleEntity, "acme", now)
		english := map[string]bool{}
		for k, m := range messages {
			if k != "gpus" && k != "language" {
				english[strings.TrimSuffix(m[0], ".")] = true
				english[k] = true
			}
		}
		rec := "/console/records/" + d.held[0]
		for _, sc := range []struct {
			token string
			pages []string
		}{
			{operatorToken, []string{"/console/", "/console/programs", "/console/entities", "/console/entities/acme",
				"/console/vouchers/v-acme", "/console/providers", "/console/providers/cloud-a", "/console/nodes/node-a1",
				"/console/claims", "/console/claims?provider=cloud-a", "/console/statement?entity=acme", "/console/reviews",
				"/console/audit", rec}},
			{provA, []string{"/console/", "/console/providers/cloud-a", "/console/claims", rec}},
			{acme, []string{"/console/", "/console/entities/acme", "/console/statement", "/console/vouchers/v-acme", rec}},
		} {
			b := newBrowser(t, base)
			b.signIn(sc.token)
			b.cookies[langCookie] = "zh-CN"
			for _, path := range sc.pages {
				page := b.get(path, 200)
				if !strings.Contains(page, `lang="zh-CN"`) {
					t.Fatalf("%s is not in Chinese", path)
				}
				for _, k := range dottedKeys {
					if strings.Contains(page, k) {
						t.Errorf("%s shows the message key %q", path, k)
					}
				}
				for _, s := range visibleText(page) {
					s = strings.TrimRight(s, ": ")
					if english[s] {
						t.Errorf("%s shows %q in English", path, s)
					}
					if w := statusRe.FindString(s); w != "" {
						t.Errorf("%s shows the status %q in English (in %q)", path, w, s)
					}
				}
			}
		}
		// The statuses are there, in Chinese.
		b := newBrowser(t, base)
		b.signIn(operatorToken)
		b.cookies[langCookie] = "zh-CN"
		page := b.get("/console/entities/acme", 200) + b.get("/console/reviews", 200)
		for _, want := range []string{"已吊销", "已暂停", "已过期", "有效", "暂扣待审", "已驳回"} {
			if !strings.Contains(page, ">"+want+"<") {
				t.Errorf("the pages lack the status %q", want)
			}
		}
	})
}

// consoleToken is a new console token of role and scope.
func consoleToken(t *testing.T, d *demo, role, scope string, now time.Time) string {
	t.Helper()
	_, tok, err := d.st.CreateConsoleToken(context.Background(), role, scope, "", now)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// figureLinks checks that every figure with a number on page links
// somewhere, and returns the links by label.
func figureLinks(t *testing.T, path, page string) map[string]string {
	t.Helper()
	out := map[string]string{}
	ms := figureRe.FindAllStringSubmatch(page, -1)
	for _, m := range ms {
		h := hrefRe.FindStringSubmatch(m[2])
		if h == nil {
			if strings.ContainsAny(m[2], "0123456789") {
				t.Errorf("%s: the figure %q (%s) links nowhere", path, m[1], m[2])
			}
			continue
		}
		out[m[1]] = html.UnescapeString(h[1])
	}
	return out
}

// linkTo finds the first link on page whose text is text.
func linkTo(t *testing.T, page, text string) string {
	t.Helper()
	m := regexp.MustCompile(`href="([^"]+)">` + regexp.QuoteMeta(text) + `<`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no link to %q on the page", text)
	}
	return html.UnescapeString(m[1])
}

// From the overview down to a record and its signed batch, for each role;
// every figure on the way links to the records behind it.
func TestFiguresLinkDown(t *testing.T) {
	authoritytest.EachDriver(t, func(t *testing.T, driver string) {
		now := time.Now().UTC()
		d := openDemo(t, driver, 72, 72*time.Hour, now, true)
		// node-a1's batch is in the verifiable log, as leaf 0; node-b1's
		// came before the log started.
		d.exec(t, `INSERT INTO log_leaves (idx, kind, data, hash, created) VALUES (0, ?, ?, ?, ?)`,
			tlog.KindBatch, []byte("leaf"), make([]byte, 32), now.UnixMilli())
		d.exec(t, `INSERT INTO log_batches (node_id, first_seq, leaf_idx) VALUES ('node-a1', 1, 0)`)
		base := startConsole(t, d, now)
		provA, globex := consoleToken(t, d, store.RoleProvider, "cloud-a", now), consoleToken(t, d, store.RoleEntity, "globex", now)

		// recordPage checks a record page: its batch, and its leaf or none.
		recordPage := func(b *browser, path, node, leaf string) {
			t.Helper()
			page := b.get(path, 200)
			f := map[string]string{}
			for _, m := range figureRe.FindAllStringSubmatch(page, -1) {
				f[m[1]] = strings.TrimSpace(tagRe.ReplaceAllString(m[2], ""))
			}
			if f["Node"] != node || f["Batch hash"] != "h" || f["Signed batch (sequence numbers)"] != "1–72" || f["Log leaf index"] != leaf || f["Sequence number"] == "" {
				t.Errorf("%s: figures %v, want node %s, batch 1–72 hash h, leaf %q", path, f, node, leaf)
			}
			// Its node's page, where the viewer may open it; every link on
			// the page opens.
			if strings.Contains(page, `href="/console/nodes/`+node+`"`) {
				b.get("/console/nodes/"+node, 200)
			}
			for _, m := range hrefRe.FindAllStringSubmatch(page, -1) {
				if u := html.UnescapeString(m[1]); strings.HasPrefix(u, "/console/") && !strings.Contains(u, "lang?") && !strings.Contains(u, "assets/") {
					b.get(u, 200)
				}
			}
		}

		// A program officer: overview → GPU-hours → the period's providers
		// → cloud-a's claim → a line's record → its batch in the log.
		op := newBrowser(t, base)
		op.signIn(operatorToken)
		page := op.get("/console/", 200)
		claims := figureLinks(t, "overview", page)["GPU-hours"]
		if claims == "" {
			t.Fatal("the overview's GPU-hours figure links nowhere")
		}
		page = op.get(claims, 200)
		claim := linkTo(t, page, "cloud-a")
		page = op.get(claim, 200)
		figs := figureLinks(t, claim, page)
		if figs["Records"] != "#t-lines" {
			t.Errorf("the claim's records figure links to %q, want its lines", figs["Records"])
		}
		rec := linkTo(t, page, "node-a1-5")
		recordPage(op, rec, "node-a1", "0")
		recordPage(op, "/console/records/node-b1-5", "node-b1", "not in the verifiable log")
		if page := op.get("/console/records/node-a1-3", 200); strings.Contains(page, evilTenant) || !strings.Contains(page, "&lt;img") {
			t.Errorf("the record page does not escape the tenant %q", evilTenant)
		}
		for _, p := range []string{"/console/entities/acme", "/console/vouchers/v-acme", "/console/providers/cloud-a",
			"/console/nodes/node-a1", "/console/statement?entity=acme", "/console/programs"} {
			page := op.get(p, 200)
			figureLinks(t, p, page)
		}
		// A voucher's history leads to the records it paid for.
		recordPage(op, linkTo(t, op.get("/console/vouchers/v-acme", 200), "node-a1-72"), "node-a1", "0")
		// A node's last report leads to its records.
		nodeRecs := figureLinks(t, "node", op.get("/console/nodes/node-a1", 200))["Last report"]
		if page := op.get(nodeRecs, 200); !strings.Contains(page, "node-a1-1<") || strings.Contains(page, "node-b1-1<") {
			t.Errorf("the node's records link %s does not list node-a1's records alone", nodeRecs)
		}

		// A provider's staff and an entity, each to its own records, and
		// no further.
		pv := newBrowser(t, base)
		pv.signIn(provA)
		page = pv.get(figureLinks(t, "provider overview", pv.get("/console/", 200))["GPU-hours"], 200)
		recordPage(pv, linkTo(t, page, "node-a1-9"), "node-a1", "0")
		pv.get("/console/records/node-b1-9", 403)
		en := newBrowser(t, base)
		en.signIn(globex)
		page = en.get(figureLinks(t, "entity overview", en.get("/console/", 200))["GPU-hours"], 200)
		recordPage(en, linkTo(t, page, "node-b1-9"), "node-b1", "not in the verifiable log")
		en.get("/console/records/node-a1-9", 403)
		en.get("/console/records/no-such-record", 403)
		op.get("/console/records/no-such-record", 404)
	})
}
