package console

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/gpumeter/gpumeter/authority/authoritytest"
	"github.com/gpumeter/gpumeter/authority/store"
)

// The browser tests drive Debian's headless chromium against a real
// `voucher-authority serve` process, built once in TestMain. Without
// chromium in PATH they skip, saying so. GPUMETER_CONSOLE_SCREENSHOTS=DIR
// keeps the screenshots there (docs/console/ holds the key ones).

var authorityBin string

func TestMain(m *testing.M) { os.Exit(buildAndRun(m)) }

func buildAndRun(m *testing.M) int {
	if _, err := exec.LookPath("chromium"); err != nil {
		return m.Run() // the browser tests skip
	}
	dir, err := os.MkdirTemp("", "gpumeter-console-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// go test puts its own go first in PATH.
	if out, err := exec.Command("go", "build", "-o", dir+string(os.PathSeparator), "github.com/gpumeter/gpumeter/cmd/voucher-authority").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "console: build voucher-authority: %v\n%s", err, out)
		return 1
	}
	authorityBin = filepath.Join(dir, "voucher-authority")
	return m.Run()
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// serveAuthority starts `voucher-authority serve` on d's store with the
// console on its operator listener, and returns the console's base URL
// (http://localhost:PORT) and the --db argument for the CLI.
func serveAuthority(t *testing.T, d *demo) (base, db string) {
	t.Helper()
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(tokFile, []byte(operatorToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	storeYAML := fmt.Sprintf("{driver: sqlite, path: %q}", d.source)
	db = d.source
	if d.driver == store.DriverPostgres {
		u, err := url.Parse(d.source)
		if err != nil {
			t.Fatal(err)
		}
		pw, _ := u.User.Password()
		pwFile := filepath.Join(dir, "pg.password")
		if err := os.WriteFile(pwFile, []byte(pw), 0o600); err != nil {
			t.Fatal(err)
		}
		u.User = url.User(u.User.Username())
		storeYAML = fmt.Sprintf("{driver: postgres, dsn: %q, password_file: %q}", u.String(), pwFile)
	}
	admin := freePort(t)
	cfg := fmt.Sprintf("listen: %s\nstore: %s\nadmin: {listen: %q, token_file: %q}\nlog: {level: warn}\n", freePort(t), storeYAML, admin, tokFile)
	cfgFile := filepath.Join(dir, "authority.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(authorityBin, "serve", "--config", cfgFile)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		<-exited
	})
	_, port, _ := net.SplitHostPort(admin)
	base = "http://localhost:" + port
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/console/signin")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base, db
			}
		}
		select {
		case <-exited:
			t.Fatalf("voucher-authority serve exited: %v\n%s", waitErr, stderr.String())
		case <-time.After(50 * time.Millisecond): // poll until it listens
		}
		if time.Now().After(deadline) {
			t.Fatalf("the console did not answer within 30s:\n%s", stderr.String())
		}
	}
}

func cli(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(authorityBin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("voucher-authority %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

// chrome is one headless chromium tab; its methods fail the test on an
// error.
type chrome struct {
	t   *testing.T
	ctx context.Context
}

// newChrome starts a headless chromium for one test, asking for lang.
func newChrome(t *testing.T, lang string) *chrome {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium not found in PATH: the browser tests need it (apt-get install chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.WindowSize(1280, 900))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	c := &chrome{t: t, ctx: ctx}
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
		Headers: network.Headers{"Accept-Language": lang}}); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *chrome) do(steps ...chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	if err := chromedp.Do(c.ctx, steps...); err != nil {
		c.t.Fatal(err)
	}
}

func (c *chrome) text(sel string) string {
	c.t.Helper()
	s, err := chromedp.Run(c.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		c.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

func (c *chrome) signIn(base, token string) {
	c.t.Helper()
	c.do(chromedp.Navigate(base+"/console/signin"),
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS("#go")),
		chromedp.WaitVisible(chromedp.CSS("#role")))
}

// shoot takes a screenshot, kept when GPUMETER_CONSOLE_SCREENSHOTS names
// a directory.
func (c *chrome) shoot(name string) {
	c.t.Helper()
	png, err := chromedp.Run(c.ctx, chromedp.Screenshot(chromedp.CSS("body")))
	if err != nil || len(png) < 1000 {
		c.t.Fatalf("screenshot %s: %d bytes, %v", name, len(png), err)
	}
	if dir := os.Getenv("GPUMETER_CONSOLE_SCREENSHOTS"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
			c.t.Fatal(err)
		}
	}
}

func TestConsoleInBrowser(t *testing.T) {
	authoritytest.EachDriver(t, func(t *testing.T, driver string) {
		if authorityBin == "" {
			t.Skip("chromium not found in PATH: the browser tests need it (apt-get install chromium)")
		}
		now := time.Now().UTC()
		d := openDemo(t, driver, 72, 72*time.Hour, now, true)
		base, db := serveAuthority(t, d)
		provA := strings.TrimSpace(cli(t, "token", "create", "--db", db, "--role", "provider", "--scope", "cloud-a", "--label", "staff"))
		acme := strings.TrimSpace(cli(t, "token", "create", "--db", db, "--role", "entity", "--scope", "acme"))
		if !strings.Contains(cli(t, "token", "list", "--db", db), "cloud-a") {
			t.Fatal("token list does not show the provider's token")
		}

		t.Run("operator", func(t *testing.T) {
			c := newChrome(t, "en")
			c.signIn(base, operatorToken)
			if role := c.text("#role"); role != "program officer" {
				t.Errorf("signed in as %q", role)
			}
			if budgets := c.text("#t-budgets"); !strings.Contains(budgets, "p1") {
				t.Errorf("overview budgets: %q", budgets)
			}
			c.shoot("overview")
			c.do(chromedp.Navigate(base+"/console/reviews?status=held"), chromedp.WaitVisible(chromedp.CSS("#t-reviews")))
			c.shoot("reviews")
			// Approve the first held item, then reject the other with a reason.
			c.do(chromedp.Click(chromedp.CSS("#t-reviews form.approve button")), chromedp.WaitVisible(chromedp.CSS("#notice")))
			if n := c.text("#notice"); n != "Decision saved." {
				t.Errorf("after approving: %q", n)
			}
			c.do(chromedp.Navigate(base+"/console/reviews?status=held"),
				chromedp.SendKeys(chromedp.CSS("#t-reviews form.reject input[name=note]"), "GPU idle all hour"),
				chromedp.Click(chromedp.CSS("#t-reviews form.reject button")),
				chromedp.WaitVisible(chromedp.CSS("#notice")),
				chromedp.Navigate(base+"/console/reviews?status=held"))
			if held := c.text("#t-reviews h2"); !strings.Contains(held, "(0 ") {
				t.Errorf("reviews still held after approving and rejecting: %q", held)
			}
			rejected := cli(t, "review", "list", "--db", db, "--status", "rejected")
			if !strings.Contains(rejected, "GPU idle all hour") {
				t.Errorf("the CLI does not list the console's rejection with its reason:\n%s", rejected)
			}
			c.do(chromedp.Navigate(base+"/console/providers/cloud-a"), chromedp.WaitVisible(chromedp.CSS("#t-nodes")))
			c.shoot("provider")
		})

		t.Run("provider and CSV", func(t *testing.T) {
			c := newChrome(t, "en")
			from, to := d.start.Format(time.RFC3339), d.end.Format(time.RFC3339)
			c.signIn(base, provA)
			c.do(chromedp.Navigate(base+"/console/claims?provider=cloud-a&from="+url.QueryEscape(from)+"&to="+url.QueryEscape(to)),
				chromedp.WaitVisible(chromedp.CSS("#t-lines")))
			c.shoot("claims")
			href, err := chromedp.Run(c.ctx, chromedp.AttributeValue(chromedp.CSS("#t-lines a.csv"), "href"))
			if err != nil {
				t.Fatal(err)
			}
			cookies, err := chromedp.Call(c.ctx, network.GetCookies, network.GetCookiesParams{})
			if err != nil {
				t.Fatal(err)
			}
			c.do(chromedp.Navigate(base + "/console/reviews"))
			if body := c.text("body"); !strings.Contains(body, "not visible") {
				t.Errorf("a provider opened the review queue: %q", body)
			}
			// Download the CSV with the browser's session and compare it
			// with the CLI's claim.
			req, _ := http.NewRequest("GET", base+href.Value, nil)
			for _, ck := range cookies.Cookies {
				req.Header.Add("Cookie", ck.Name+"="+ck.Value)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			_, _ = got.ReadFrom(resp.Body)
			resp.Body.Close()
			want := cli(t, "claim", "--db", db, "--provider", "cloud-a", "--from", from, "--to", to, "--format", "csv")
			if got.String() != want || !strings.Contains(want, "node-a1-1,") {
				t.Errorf("the console's CSV (%s) differs from the CLI's:\n%.500s\nCLI:\n%.500s", resp.Status, got.String(), want)
			}
		})

		t.Run("entity and language", func(t *testing.T) {
			c := newChrome(t, "en-US")
			c.signIn(base, acme)
			if title := c.text("h1"); title != "Overview" {
				t.Errorf("in English: title %q", title)
			}
			c.do(chromedp.Click(chromedp.CSS("#lang")), chromedp.WaitVisible(chromedp.CSS("#role")))
			if title, role := c.text("h1"), c.text("#role"); title != "概览" || role != "用券主体" {
				t.Errorf("after switching to Chinese: title %q, role %q", title, role)
			}
			c.shoot("overview-zh")
			c.do(chromedp.Navigate(base+"/console/statement"), chromedp.WaitVisible(chromedp.CSS("#t-lines")))
			c.shoot("statement-zh")
		})
	})
}
