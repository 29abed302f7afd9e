package portal

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestSafeNext(t *testing.T) {
	w := newWorld(t, "http://portal.test")
	for _, tc := range []struct{ in, want string }{
		{"/history", "/history"},
		{"/history?from=2026-01-01", "/history?from=2026-01-01"},
		{"/oauth/authorize?client_id=bank.loan&scope=a+b", "/oauth/authorize?client_id=bank.loan&scope=a+b"},
		{"/catalogue#top", "/catalogue"},
		{"/", "/"},
		// The review's finding: Chromium reads "/\evil.example/x" as "//evil.example/x".
		{"/\\evil.example/x", "/history"},
		{"//evil.example/x", "/history"},
		{"/%5Cevil.example/x", "/history"},
		{"/%2F%2Fevil.example/x", "/history"},
		{"/%2f%2fevil.example", "/history"},
		{"https://evil.example/x", "/history"},
		{"http:/evil.example", "/history"},
		{"javascript:alert(1)", "/history"},
		{"/\t/evil.example", "/history"},
		{"/history\r\nSet-Cookie: x=1", "/history"},
		{"/x\x00", "/history"},
		{"", "/history"},
		{"history", "/history"},
		{"/static/portal.css", "/history"},
		{"/logout", "/history"},
		{"/login?next=/catalogue", "/login?next=/catalogue"},
		{"/nowhere", "/history"},
		{"/oauth/consent", "/history"},
		{"/" + strings.Repeat("a", 5000), "/history"},
	} {
		if got := w.portal.safeNext(tc.in); got != tc.want {
			t.Errorf("safeNext(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// The open redirect the review found: a login with next=/\evil.example/x must land on the portal.
func TestLoginDoesNotRedirectAway(t *testing.T) {
	w := newWorld(t, "http://portal.test")
	for _, next := range []string{"/\\evil.example/x", "//evil.example/x", "/%5Cevil.example/x", "https://evil.example/"} {
		b := w.browser()
		r := b.login(alice, "nhi-card", next)
		if r.status != http.StatusSeeOther || r.location != "/history" {
			t.Errorf("next=%q: %d to %q, want 303 to /history", next, r.status, r.location)
		}
	}
}

func TestLoginNeedsItsCSRFToken(t *testing.T) {
	w := newWorld(t, "http://portal.test")
	b := w.browser()
	page := b.get("/login")
	f := form(page.body, "/login")
	f.Set("subject", alice)
	f.Set("method", "nhi-card")
	for name, mutate := range map[string]func(url.Values) url.Values{
		"no token":     func(v url.Values) url.Values { v = cloneValues(v); v.Del("csrf"); return v },
		"forged token": func(v url.Values) url.Values { v = cloneValues(v); v.Set("csrf", "k1.AAAA"); return v },
	} {
		r := b.post("/login", mutate(f))
		if r.status != http.StatusForbidden || !strings.Contains(r.body, `id="error"`) {
			t.Errorf("%s: %d, want 403 with an error", name, r.status)
		}
	}
	// Another browser's token: a login CSRF where the attacker posts their own form from their page.
	other := w.browser()
	r := other.post("/login", f)
	if r.status != http.StatusForbidden {
		t.Errorf("another browser's token: %d, want 403", r.status)
	}
	if r := b.post("/login", f); r.status != http.StatusSeeOther {
		t.Fatalf("the right token: %d %s", r.status, r.body)
	}
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

func TestSessionTimeouts(t *testing.T) {
	w := newWorld(t, "http://portal.test")
	b := w.browser()
	b.login(alice, "nhi-card", "/history")
	if r := b.get("/history"); r.status != http.StatusOK {
		t.Fatalf("history after login: %d", r.status)
	}
	// Busy for the whole hour, never idle for 15 minutes: the absolute timeout still ends it.
	for i := 0; i < 4; i++ {
		w.now = w.now.Add(14 * time.Minute)
		if r := b.get("/history"); r.status != http.StatusOK {
			t.Fatalf("after %d busy periods: %d", i+1, r.status)
		}
	}
	w.now = w.now.Add(5 * time.Minute)
	if r := b.get("/history"); r.status != http.StatusSeeOther {
		t.Errorf("past the absolute timeout: %d, want a redirect to login", r.status)
	}
	// Idle for 15 minutes ends a fresh one.
	b.login(alice, "nhi-card", "/history")
	w.now = w.now.Add(15 * time.Minute)
	if r := b.get("/history"); r.status != http.StatusSeeOther {
		t.Errorf("idle past the timeout: %d, want a redirect to login", r.status)
	}
}

func TestCookiesUnderHTTPS(t *testing.T) {
	w := newWorld(t, "https://portal.test")
	b := w.browser()
	r := b.get("/login")
	if got := r.header.Get("Strict-Transport-Security"); !strings.Contains(got, "max-age=") {
		t.Errorf("HSTS: %q", got)
	}
	for _, c := range r.header.Values("Set-Cookie") {
		if !strings.HasPrefix(c, "__Host-") || !strings.Contains(c, "Secure") || !strings.Contains(c, "HttpOnly") || !strings.Contains(c, "SameSite=Lax") || !strings.Contains(c, "Path=/") {
			t.Errorf("cookie under HTTPS: %s", c)
		}
	}
	plain := newWorld(t, "http://portal.test").browser().get("/login")
	if plain.header.Get("Strict-Transport-Security") != "" {
		t.Error("HSTS over plain HTTP")
	}
}

func TestForgedSessionCookieIgnored(t *testing.T) {
	w := newWorld(t, "http://portal.test")
	b := w.browser()
	u, _ := url.Parse(w.srv.URL)
	b.c.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: "eyJzaWQiOiJ4Iiwic3ViIjoiQTEyMzQ1Njc4OSIsImFhbCI6M30.k1.AAAA"}})
	if r := b.get("/history"); r.status != http.StatusSeeOther {
		t.Errorf("forged cookie: %d, want a redirect to login", r.status)
	}
}

// consentPage logs b in with method and opens the consent page for scope.
func consentPage(t *testing.T, b *browser, method, scope string) response {
	t.Helper()
	b.login(alice, method, "/history")
	r := b.get(authorizeURL(scope, nil))
	if r.status != http.StatusOK || !strings.Contains(r.body, `id="approve"`) {
		t.Fatalf("consent page with %s: %d %s %s", method, r.status, r.location, r.body)
	}
	return r
}

// The review's other finding: a consent page decided from another, weaker session of the same citizen.
func TestConsentBoundToItsSession(t *testing.T) {
	w := newWorld(t, "http://portal.test")
	strong := w.browser()
	page := consentPage(t, strong, "nhi-card", "moi.household moi.records")
	f := form(page.body, "/oauth/consent")
	f.Set("decision", "approve")

	// The same citizen in another browser, logged in with a one-time code (level 1).
	weak := w.browser()
	weak.login(alice, "otp", "/history")
	if r := weak.post("/oauth/consent", f); r.status != http.StatusForbidden {
		t.Errorf("decided from a weaker session: %d %s", r.status, r.location)
	}
	// Even at the same level, another session cannot.
	same := w.browser()
	same.login(alice, "nhi-card", "/history")
	if r := same.post("/oauth/consent", f); r.status != http.StatusForbidden {
		t.Errorf("decided from another session: %d %s", r.status, r.location)
	}
	// A new login in the same browser is a new session too.
	strong.login(alice, "nhi-card", "/history")
	if r := strong.post("/oauth/consent", f); r.status != http.StatusForbidden {
		t.Errorf("decided after logging in again: %d", r.status)
	}
	page = strong.get(authorizeURL("moi.household moi.records", nil))
	f = form(page.body, "/oauth/consent")
	f.Set("decision", "approve")
	r := strong.post("/oauth/consent", f)
	if loc, _ := url.Parse(r.location); r.status != http.StatusFound || loc.Query().Get("code") == "" {
		t.Fatalf("the session's own decision: %d %s", r.status, r.location)
	}
	// Form-action names the service's origin on the consent page only.
	if got := page.header.Get("Content-Security-Policy"); !strings.Contains(got, "form-action 'self' https://bank.example;") {
		t.Errorf("consent CSP: %s", got)
	}
	if got := strong.get("/history").header.Get("Content-Security-Policy"); !strings.Contains(got, "form-action 'self';") {
		t.Errorf("history CSP: %s", got)
	}
}

func TestStepUp(t *testing.T) {
	w := newWorld(t, "http://portal.test")
	b := w.browser()
	b.login(alice, "otp", "/history")
	// Level 1 is not enough for moi.records (level 2): the step-up page, listing what suffices.
	r := b.get(authorizeURL("moi.household moi.records", nil))
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location, "/login?next=") {
		t.Fatalf("weaker session at authorize: %d %s", r.status, r.location)
	}
	b.lang = "en"
	page := b.get(r.location)
	if !strings.Contains(page.body, `id="stepup"`) || strings.Contains(page.body, `value="otp"`) || !strings.Contains(page.body, `value="nhi-card"`) {
		t.Fatalf("step-up page: %s", page.body)
	}
	// A dataset whose holder accepts only the certificate: only that method is offered.
	r = b.get(authorizeURL("moi.certified", nil))
	page = b.get(r.location)
	if !strings.Contains(page.body, `id="only-methods"`) || !strings.Contains(page.body, `value="moica"`) || strings.Contains(page.body, `value="fin-card"`) {
		t.Fatalf("methods-only page: %s", page.body)
	}
	// Stepping up leads back to the consent page.
	f := form(page.body, "/login")
	f.Set("method", "moica")
	f.Set("subject", alice)
	r = b.post("/login", f)
	if r = b.get(r.location); r.status != http.StatusOK || !strings.Contains(r.body, `id="approve"`) {
		t.Fatalf("after stepping up: %d %s", r.status, r.location)
	}
}

func TestLoginHintPrefillsMaskedID(t *testing.T) {
	w := newWorld(t, "http://portal.test")
	hint := w.sealHint(t, alice)
	b := w.browser()
	r := b.get(authorizeURL("moi.household", url.Values{"login_hint": {hint}}))
	page := b.get(r.location)
	if !strings.Contains(page.body, `value="A12*****89"`) || strings.Contains(page.body, alice) {
		t.Fatalf("login page with a hint: %s", page.body)
	}
	f := form(page.body, "/login")
	f.Set("subject_masked", "A12*****89")
	f.Set("method", "nhi-card")
	r = b.post("/login", f)
	if r = b.get(r.location); !strings.Contains(r.body, `id="approve"`) {
		t.Fatalf("after a hinted login: %d %s", r.status, r.body)
	}
	// Bob, logged in, meets the mismatch page with a way to switch.
	bobB := w.browser()
	bobB.login(bob, "nhi-card", "/history")
	m := bobB.get(authorizeURL("moi.household", url.Values{"login_hint": {hint}}))
	if m.status != http.StatusForbidden || !strings.Contains(m.body, `id="switch"`) {
		t.Fatalf("mismatch page: %d %s", m.status, m.body)
	}
	f = formAt(m.body, `id="switch-form"`)
	out := bobB.post("/logout", f)
	if !strings.HasPrefix(out.location, "/oauth/authorize?") {
		t.Errorf("log in as someone else leads to %q", out.location)
	}
	if r := bobB.get("/history"); r.status != http.StatusSeeOther {
		t.Error("still logged in after switching")
	}
}

// Under HTTPS the language cookie carries the __Host- prefix; the choice must still be remembered.
func TestLanguageRememberedUnderHTTPS(t *testing.T) {
	w := newWorld(t, "https://portal.test")
	b := w.browser()
	b.lang = "zh-TW"
	page := b.get("/catalogue")
	f := form(page.body, "/lang")
	f.Set("lang", "en")
	r := b.post("/lang", f)
	if r.status != http.StatusSeeOther || !strings.Contains(strings.Join(r.header.Values("Set-Cookie"), " "), "__Host-mydata_lang=en") {
		t.Fatalf("switch language: %d %v", r.status, r.header.Values("Set-Cookie"))
	}
	// The test server speaks plain HTTP, so the jar will not send a Secure cookie back: send it as a browser
	// on the HTTPS portal would.
	req, _ := http.NewRequest(http.MethodGet, w.srv.URL+"/catalogue", nil)
	req.Header.Set("Accept-Language", "zh-TW")
	req.AddCookie(&http.Cookie{Name: "__Host-mydata_lang", Value: "en"})
	if got := b.do(req); !strings.Contains(got.body, `<html lang="en">`) {
		t.Error("the __Host- language cookie is not read")
	}
}
