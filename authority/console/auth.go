package console

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/gpumeter/gpumeter/authority/store"
)

// Cookies. The session cookie holds a random id whose hash keys the
// session row; it is Secure, HttpOnly and SameSite=Strict. The sign-in
// cookie is a double-submit token for the sign-in form, the one form
// posted before there is a session.
const (
	sessionCookie = "gm_session"
	signinCookie  = "gm_signin"
	langCookie    = "gm_lang"
	csrfField     = "csrf"
)

func (c *Console) setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: Prefix, MaxAge: maxAge,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

// handler is a page's handler, given the signed-in viewer.
type handler func(w http.ResponseWriter, r *http.Request, v viewer)

// authed runs h for a live session; without one, a GET goes to the
// sign-in page and anything else is 401. A POST must carry the session's
// CSRF token.
func (c *Console) authed(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, ok := c.session(r)
		if !ok {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, Prefix+"signin", http.StatusSeeOther)
				return
			}
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
			if subtle.ConstantTimeCompare([]byte(r.PostFormValue(csrfField)), []byte(v.CSRF)) != 1 {
				c.log.Warn("console: form refused: CSRF token missing or wrong", slog.String("path", r.URL.Path), slog.String("remote", r.RemoteAddr))
				http.Error(w, "the form's CSRF token is missing or wrong: reload the page", http.StatusForbidden)
				return
			}
		}
		h(w, r, v)
	}
}

// session reads the request's live session.
func (c *Console) session(r *http.Request) (viewer, bool) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return viewer{}, false
	}
	s, err := c.st.ConsoleSessionByID(r.Context(), ck.Value, c.now())
	if err != nil {
		if !errors.Is(err, store.ErrConsoleToken) {
			c.log.Error("console: read session", slog.Any("err", err))
		}
		return viewer{}, false
	}
	return viewer{Role: s.Role, Scope: s.Scope, CSRF: s.CSRF, Lang: c.lang(r)}, true
}

func (c *Console) signinForm(w http.ResponseWriter, r *http.Request) {
	c.signinPage(w, r, http.StatusOK, "")
}

func (c *Console) signinPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	pre := store.RandomSecret(16)
	c.setCookie(w, signinCookie, pre, 600)
	c.render(w, r, status, "signin", &page{Title: "sign in", V: viewer{Lang: c.lang(r), CSRF: pre}, Error: msg})
}

// signin checks the token typed: the operators' token, or a live console
// token. The token is never logged.
func (c *Console) signin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	pre, err := r.Cookie(signinCookie)
	if err != nil || pre.Value == "" || subtle.ConstantTimeCompare([]byte(pre.Value), []byte(r.PostFormValue(csrfField))) != 1 {
		http.Error(w, "the sign-in form's CSRF token is missing or wrong: reload the page", http.StatusForbidden)
		return
	}
	tok := strings.TrimSpace(r.PostFormValue("token"))
	sess := store.ConsoleSession{Role: store.RoleOperator, CSRF: store.RandomSecret(32), Expires: c.now().Add(SessionTTL)}
	sum := sha256.Sum256([]byte(tok))
	switch {
	case tok != "" && subtle.ConstantTimeCompare(sum[:], c.tokenSum[:]) == 1:
	case strings.HasPrefix(tok, store.ConsoleTokenPrefix):
		t, err := c.st.ConsoleTokenBySecret(r.Context(), tok)
		if err != nil {
			c.refuseSignin(w, r, err)
			return
		}
		sess.TokenID, sess.Role, sess.Scope = t.ID, t.Role, t.Scope
	default:
		c.refuseSignin(w, r, store.ErrConsoleToken)
		return
	}
	id := store.RandomSecret(32)
	if err := c.st.CreateConsoleSession(r.Context(), id, sess, c.now()); err != nil {
		c.fail(w, r, err)
		return
	}
	c.log.Info("console: signed in", slog.String("role", sess.Role), slog.String("scope", sess.Scope),
		slog.String("token_id", sess.TokenID), slog.String("remote", r.RemoteAddr))
	c.setCookie(w, signinCookie, "", -1)
	c.setCookie(w, sessionCookie, id, int(SessionTTL.Seconds()))
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

func (c *Console) refuseSignin(w http.ResponseWriter, r *http.Request, err error) {
	if !errors.Is(err, store.ErrConsoleToken) {
		c.fail(w, r, err)
		return
	}
	c.log.Warn("console: sign-in refused: unknown or revoked token", slog.String("remote", r.RemoteAddr))
	c.signinPage(w, r, http.StatusUnauthorized, "signin.refused")
}

func (c *Console) signout(w http.ResponseWriter, r *http.Request, _ viewer) {
	if ck, err := r.Cookie(sessionCookie); err == nil {
		if err := c.st.DeleteConsoleSession(r.Context(), ck.Value); err != nil {
			c.fail(w, r, err)
			return
		}
	}
	c.setCookie(w, sessionCookie, "", -1)
	http.Redirect(w, r, Prefix+"signin", http.StatusSeeOther)
}

// setLang keeps the language chosen (a display preference, so a plain
// link) and goes back to the page it was chosen on.
func (c *Console) setLang(w http.ResponseWriter, r *http.Request) {
	lang := r.URL.Query().Get("to")
	if !knownLang(lang) {
		http.Error(w, "unknown language", http.StatusBadRequest)
		return
	}
	c.setCookie(w, langCookie, lang, 365*24*3600)
	http.Redirect(w, r, backTo(r.URL.Query().Get("back")), http.StatusSeeOther) //nolint:gosec // backTo keeps only a path under /console/ of this host
}

// backTo is where a language switch returns: back when it is a console
// page of this host, rebuilt from its path and query (never another host).
func backTo(back string) string {
	u, err := url.Parse(back)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || !strings.HasPrefix(u.Path, Prefix) || strings.Contains(u.Path, "//") {
		return Prefix
	}
	return (&url.URL{Path: u.Path, RawQuery: u.RawQuery}).RequestURI()
}

// fail answers an unexpected error: logged, never shown.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error) {
	c.log.Error("console request failed", slog.String("path", r.URL.Path), slog.Any("err", err))
	http.Error(w, "the console failed to answer; retry later", http.StatusInternalServerError)
}
