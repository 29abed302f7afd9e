package federationtest

import (
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/cardsigner"
	"github.com/mydatafed/mydata/pkg/federationtest/oidctest"
)

// The portal's login methods through the real hub binary and a real Chromium: each test function shares
// one hub and one browser among subtests that run in order, each building on what the one before left.

func skipWithoutChromium(t *testing.T) {
	if _, err := os.Stat(ChromiumPath); err != nil {
		t.Skip("chromium not installed: apt-get install chromium")
	}
}

// englishTab opens a tab whose browser asks for English.
func englishTab(t *testing.T, b *Browser) *Tab {
	tab := b.NewTab().For(t)
	tab.setLang("en")
	return tab
}

// logout logs the tab out if it is logged in.
func (e *identityEnv) logout(tab *Tab) {
	tab.tb().Helper()
	tab.Navigate(e.base + "/")
	var in bool
	tab.Eval(`document.getElementById("logout") !== null`, &in)
	if in {
		tab.clickNav("logout")
	}
}

// loginCard logs in with the certificate method as subject, with whatever card is in the reader; the
// page it ends on is the caller's to check.
func (e *identityEnv) loginCard(tab *Tab, subject, next string) {
	tab.tb().Helper()
	tab.Navigate(e.base + "/login/m/" + certMethod + "?next=" + url.QueryEscape(next))
	tab.Type("subject", subject)
	e.submitCard(tab)
}

// submitCard clicks the certificate form's button, as a citizen would, and waits for the next page: the
// page's script has the signing component sign the challenge and posts the signature.
func (e *identityEnv) submitCard(tab *Tab) {
	tab.tb().Helper()
	tab.Eval(`window.__before = 1`, nil)
	tab.Click("submit")
	stuck := `(document.getElementById("signed_data") || {}).value && (document.getElementById("cert-status") || {}).textContent === document.getElementById("method-form").getAttribute("data-msg-nosigner")`
	tab.WaitFor("the page after signing", `!window.__before && document.readyState === "complete" || `+stuck, 20*time.Second)
	var isStuck bool
	tab.Eval(`!!window.__before`, &isStuck)
	if isStuck {
		tab.tb().Fatalf("certificate login: the signer answered, but the page did not post the signed form; it says %q", tab.Text("#cert-status"))
	}
}

// loginPasskey logs in with the tab's passkey from the login page.
func (e *identityEnv) loginPasskey(tab *Tab) {
	tab.tb().Helper()
	tab.Navigate(e.base + "/login")
	tab.clickNav("method-passkey")
}

// devLogin logs in with the development login's simulated method.
func (e *identityEnv) devLogin(tab *Tab, subject, method, next string) {
	tab.tb().Helper()
	tab.Navigate(e.base + "/login?next=" + url.QueryEscape(next))
	tab.Type("subject", subject)
	tab.Select("method", method)
	tab.clickNav("login")
}

// session is what the account page says of the session: method and level, e.g. "Passkey (FIDO) (level: medium)".
func (e *identityEnv) session(tab *Tab) string {
	tab.tb().Helper()
	tab.Navigate(e.base + "/account")
	if tab.path() != "/account" {
		tab.tb().Fatalf("not logged in: the account page sent the browser to %s:\n%s", tab.URL(), tab.Text("main"))
	}
	var s string
	tab.Eval(`[...document.querySelectorAll("main > dl dd")].map(d => d.innerText).join(" / ")`, &s)
	return s
}

// wantSession fails unless the account page shows the masked ID, the method's name and the level.
func (e *identityEnv) wantSession(tab *Tab, subject, method, level string) {
	tab.tb().Helper()
	s := e.session(tab)
	for _, want := range []string{maskedID(subject), method, "level: " + level} {
		if !strings.Contains(s, want) {
			tab.tb().Errorf("session %q: want %q", s, want)
		}
	}
}

func maskedID(id string) string { return id[:3] + "*****" + id[8:] }

// verifyEmail adds and verifies an address on the account page of a logged-in tab, with the code mailed.
func (e *identityEnv) verifyEmail(tab *Tab, address string) {
	tab.tb().Helper()
	tab.Navigate(e.base + "/account")
	before := e.mail.count(address)
	tab.Type("address", address)
	tab.clickNav("add-contact")
	tab.Type("code", e.mail.code(tab.tb(), address, before))
	tab.clickNav("verify")
	if got := tab.Text("#email"); tab.path() != "/account" || !strings.Contains(got, address) {
		tab.tb().Fatalf("after verifying %s the account page shows %q at %s:\n%s", address, got, tab.URL(), tab.Text("main"))
	}
}

// loginTwoDocs submits the two-documents form.
func (e *identityEnv) loginTwoDocs(tab *Tab, subject string, d docs) {
	tab.tb().Helper()
	tab.Navigate(e.base + "/login/m/two-docs")
	tab.Type("subject", subject)
	tab.Type("nhi_card", d.nhi)
	tab.Type("household", d.household)
	tab.clickNav("submit")
}

func wantStatus(t *testing.T, tab *Tab, want int, what string) {
	t.Helper()
	if got := tab.status(); got != want {
		t.Errorf("%s: status %d, want %d; page %s:\n%s", what, got, want, tab.URL(), tab.Text("main"))
	}
}

// TestIdentityLogins logs in with each real method through the hub binary in Chromium — certificate,
// passkey, two documents with a mailed code, OpenID — then steps up for a dataset that needs more, and
// checks that forms without this browser's CSRF token, redirects off the portal after login, and a consent
// decided from a weaker session of the same citizen are refused.
func TestIdentityLogins(t *testing.T) {
	t.Parallel()
	skipWithoutChromium(t)
	began := time.Now()
	e := startIdentityHub(t, identityOptions{catalogue: true})
	browser := StartBrowser(t)
	shot := screenshots(t)
	tab := englishTab(t, browser)
	tab.addAuthenticator()
	t.Logf("hub, stand-ins and browser up in %s", time.Since(began).Round(time.Millisecond))

	t.Run("certificate", func(t *testing.T) {
		tab := tab.For(t)
		tab.Navigate(e.base + "/login")
		tab.clickNav("method-" + certMethod)
		tab.Type("subject", citizenA)
		shot(tab, "identity-1-certificate")
		e.submitCard(tab)
		if tab.path() != "/history" {
			t.Fatalf("after the certificate login the browser is at %s:\n%s", tab.URL(), tab.Text("main"))
		}
		e.wantSession(tab, citizenA, "Test citizen certificate", "high")

		for _, c := range []struct {
			name   string
			card   *cardsigner.Card
			reason string
		}{
			{"revoked card", e.revokedA, "The certificate has been revoked or suspended."},
			{"another citizen's card", e.cardB, "The certificate does not belong to the ID number you entered."},
		} {
			e.logout(tab)
			e.signer.Insert(c.card)
			e.loginCard(tab, citizenA, "/history")
			wantStatus(t, tab, 401, c.name)
			if got := tab.Text("#error"); !strings.Contains(got, "Certificate login refused") || !strings.Contains(got, c.reason) {
				t.Errorf("%s: the page says %q, want the reason %q", c.name, got, c.reason)
			}
			if c.card == e.revokedA {
				shot(tab, "identity-2-certificate-revoked")
			}
		}
		e.signer.Insert(e.cardA)
		tab.Navigate(e.base + "/account")
		if tab.path() == "/account" {
			t.Errorf("a refused certificate left a session")
		}
	})

	passkey := t.Run("passkey", func(t *testing.T) {
		tab := tab.For(t)
		e.loginCard(tab, citizenA, "/account")
		if tab.path() != "/account" {
			t.Fatalf("certificate login: at %s:\n%s", tab.URL(), tab.Text("main"))
		}
		tab.Type("passkey-name", "Test laptop")
		tab.clickNav("add-passkey")
		if got := tab.Text("#passkeys"); !strings.Contains(got, "Test laptop") {
			t.Fatalf("after registering, the account page lists %q; status %q:\n%s", got, tab.Text("#register-status"), tab.Text("main"))
		}
		shot(tab, "identity-3-passkey-registered")
		e.logout(tab)
		e.loginPasskey(tab)
		if tab.path() != "/history" {
			t.Fatalf("passkey login: at %s, status %q:\n%s", tab.URL(), tab.Text("#passkey-status"), tab.Text("main"))
		}
		e.wantSession(tab, citizenA, "Passkey (FIDO)", "medium")
	})

	t.Run("two documents with a mailed code", func(t *testing.T) {
		tab := tab.For(t)
		const address = "chen@example.test"
		e.logout(tab)
		e.devLogin(tab, citizenC, "nhi-card", "/account")
		e.verifyEmail(tab, address)
		e.logout(tab)

		sent := e.mail.count(address)
		e.loginTwoDocs(tab, citizenC, registryDocs[citizenC])
		if tab.Text("#code-sent") == "" {
			t.Fatalf("a first login with two documents does not ask for a code: %s\n%s", tab.URL(), tab.Text("main"))
		}
		shot(tab, "identity-4-two-docs-code")
		tab.Type("code", e.mail.code(t, address, sent))
		tab.clickNav("submit")
		if tab.path() != "/history" {
			t.Fatalf("after the code: at %s:\n%s", tab.URL(), tab.Text("main"))
		}
		e.wantSession(tab, citizenC, "Two documents", "medium")

		// The second time, the documents alone.
		e.logout(tab)
		e.loginTwoDocs(tab, citizenC, registryDocs[citizenC])
		if tab.path() != "/history" {
			t.Fatalf("second login with two documents: at %s:\n%s", tab.URL(), tab.Text("main"))
		}
		if n := e.mail.count(address); n != sent+1 {
			t.Errorf("%d codes mailed for two logins, want 1", n-sent)
		}
	})

	t.Run("openid", func(t *testing.T) {
		tab := tab.For(t)
		for _, c := range []struct {
			acr   string
			amr   []string
			level string
		}{
			{"urn:test:loa:high", []string{"pwd", "hwk"}, "high"},
			{"urn:test:loa:substantial", []string{"pwd"}, "medium"},
		} {
			e.op.Configure(func(s *oidctest.Settings) { s.ACR, s.AMR = c.acr, c.amr })
			e.logout(tab)
			tab.Navigate(e.base + "/login")
			tab.clickNav("method-" + oidcMethod)
			if tab.path() != "/history" {
				t.Fatalf("OpenID login (acr %s): at %s:\n%s", c.acr, tab.URL(), tab.Text("main"))
			}
			e.wantSession(tab, citizenD, "Test identity provider", c.level)
		}
	})

	stepUp := passkey && t.Run("step-up", func(t *testing.T) {
		tab := tab.For(t)
		e.logout(tab)
		e.loginPasskey(tab) // level 2; the dataset needs 3
		tab.Navigate(e.authorizeURL())
		if tab.path() != "/login" || tab.Text("#stepup") == "" {
			t.Fatalf("a level-2 session at a request for a level-3 dataset: at %s:\n%s", tab.URL(), tab.Text("main"))
		}
		if got := tab.Text("h1"); got != "A stronger login is needed" {
			t.Errorf("step-up page title %q", got)
		}
		if got, want := tab.ids("#methods [id^=method-]"), []string{"method-" + certMethod, "method-" + oidcMethod}; !slices.Equal(got, want) {
			t.Errorf("the step-up page offers %v, want only the level-3 methods %v", got, want)
		}
		if got, want := tab.ids("select#method option"), []string{"moica", "fin-card"}; !slices.Equal(got, want) {
			t.Errorf("the development login offers %v, want only its level-3 methods %v", got, want)
		}
		shot(tab, "identity-5-step-up")
		tab.clickNav("method-" + certMethod)
		tab.Type("subject", citizenA)
		e.submitCard(tab)
		if tab.path() != "/oauth/authorize" || tab.Text("#approve") == "" {
			t.Fatalf("after stepping up: at %s:\n%s", tab.URL(), tab.Text("main"))
		}
		if got := tab.Text("main"); !strings.Contains(got, "Credit card application") || !strings.Contains(got, "level: high") && !strings.Contains(got, "assurance level: high") {
			t.Errorf("the consent page does not name the service or the session's level:\n%s", got)
		}
		shot(tab, "identity-6-consent")
	})

	t.Run("consent from a weaker session", func(t *testing.T) {
		if !stepUp {
			t.Fatal("the step-up subtest did not reach the consent page this one decides")
		}
		tab := tab.For(t)
		form := map[string]string{
			"pending":  tab.formValue(`form[action="/oauth/consent"]`, "pending"),
			"csrf":     tab.formValue(`form[action="/oauth/consent"]`, "csrf"),
			"decision": "approve",
		}
		// The same citizen, same browser, logs in again with the weaker passkey; the page shown to the
		// stronger session is then posted.
		e.logout(tab)
		e.loginPasskey(tab)
		tab.post("/oauth/consent", form)
		wantStatus(t, tab, 403, "a consent decided from a weaker session")
		if got := tab.Text("#error"); !strings.Contains(got, "another login session") {
			t.Errorf("the refusal says %q", got)
		}
		if strings.HasPrefix(tab.URL(), "http://127.0.0.1:9/") {
			t.Errorf("the weaker session's decision went to the service")
		}
	})

	t.Run("csrf", func(t *testing.T) {
		tab := tab.For(t)
		other := englishTab(t, browser)
		other.Navigate(e.base + "/login/m/otp")
		othersToken := other.formValue("#method-form", "csrf")
		other.Navigate(e.base + "/login")
		othersDevToken := other.formValue(`form[action="/login"]`, "csrf")

		e.logout(tab)
		for _, c := range []struct {
			name  string
			page  string
			form  string
			token string // "": the field removed
			btn   string
		}{
			{"method form without a token", "/login/m/otp", "#method-form", "", "submit"},
			{"method form with another browser's token", "/login/m/otp", "#method-form", othersToken, "submit"},
			{"development login with another browser's token", "/login", `form[action="/login"]`, othersDevToken, "login"},
		} {
			tab.Navigate(e.base + c.page)
			tab.Type("subject", citizenA)
			if c.token == "" {
				tab.Eval(fmt.Sprintf(`document.querySelector(%s).elements.namedItem("csrf").remove()`, jsString(c.form)), nil)
			} else {
				tab.Eval(fmt.Sprintf(`document.querySelector(%s).elements.namedItem("csrf").value = %s`, jsString(c.form), jsString(c.token)), nil)
			}
			tab.clickNav(c.btn)
			wantStatus(t, tab, 403, c.name)
			if got := tab.Text("#error"); !strings.Contains(got, "did not come from this site") {
				t.Errorf("%s: the page says %q", c.name, got)
			}
		}
		tab.Navigate(e.base + "/account")
		if tab.path() == "/account" {
			t.Errorf("a refused form left a session")
		}
	})

	t.Run("open redirect", func(t *testing.T) {
		tab := tab.For(t)
		for _, next := range []string{
			"%2F%5Cevil.example%2Fx",              // /\evil.example/x: Chromium reads \ as /
			"%2F%5C%2Fevil.example%2Fx",           // /\/evil
			"%5C%5Cevil.example%2Fx",              // \\evil
			"%2F%2Fevil.example%2Fx",              // //evil
			"%2F%2F%2Fevil.example%2Fx",           // ///evil
			"https%3A%2F%2Fevil.example%2Fx",      // absolute
			"%2F%09%2Fevil.example%2Fx",           // a tab, which browsers strip
			"%2F%0A%2Fevil.example%2Fx",           // a newline, likewise
			"%2F%255Cevil.example%2Fx",            // \ encoded once more
			"%2F%252F%252Fevil.example%2Fx",       // // encoded once more
			"%2F.%2F%2Fevil.example%2Fx",          // /.//evil
			"%2Fhistory%2F..%2F%2Fevil.example",   // a dot segment
			"javascript%3Aalert(document.domain)", // script
			"%2F%E3%80%80%2Fevil.example%2Fx",     // an ideographic space
		} {
			// A login over a session starts a new one, so there is no need to log out in between.
			tab.Navigate(e.base + "/login?next=" + next)
			tab.Type("subject", citizenA)
			tab.Select("method", "moica")
			tab.clickNav("login")
			var origin string
			tab.Eval(`location.origin`, &origin)
			if origin != e.base {
				t.Errorf("next=%s: after the login the browser is at %s", next, tab.URL())
			}
		}
		// The same through a real method, whose form carries next in a POST.
		e.logout(tab)
		tab.Navigate(e.base + "/login?next=%2F%5Cevil.example%2Fx")
		tab.clickNav("method-" + certMethod)
		tab.Type("subject", citizenA)
		e.submitCard(tab)
		var origin string
		tab.Eval(`location.origin`, &origin)
		if origin != e.base {
			t.Errorf("certificate login with next=/\\evil: the browser is at %s", tab.URL())
		}
	})
}

// lockedUntil reads the time a lockout message names ("... try again after 2026-05-01 10:00:05 UTC+08:00").
var lockedTime = regexp.MustCompile(`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC[+-]\d\d:\d\d`)

func lockedUntil(t *testing.T, text string) time.Time {
	t.Helper()
	s := lockedTime.FindString(text)
	until, err := time.Parse("2006-01-02 15:04:05 UTC-07:00", s)
	if err != nil {
		t.Fatalf("the lockout message %q names no time: %v", text, err)
	}
	return until
}

// TestIdentityLockout fails logins past identity.lockout.max_failures — wrong one-time codes, then wrong
// documents — and checks that the next try, right or wrong, is 429 with the time to come back, that the
// client address is locked with the citizen, and that after identity.lockout.duration logins work again.
func TestIdentityLockout(t *testing.T) {
	t.Parallel()
	skipWithoutChromium(t)
	const duration = 4 * time.Second
	e := startIdentityHub(t, identityOptions{lockout: fmt.Sprintf("{max_failures: 3, window: 1m, duration: %s}", duration)})
	browser := StartBrowser(t)
	shot := screenshots(t)
	tab := englishTab(t, browser)
	const address = "chen@example.test"

	// checkLocked expects the page to be the lockout, and waits until it ends.
	checkLocked := func(t *testing.T, tab *Tab, what string) {
		t.Helper()
		wantStatus(t, tab, 429, what)
		msg := tab.Text("#error")
		if !strings.Contains(msg, "Too many failed attempts") {
			t.Fatalf("%s: the page says %q", what, msg)
		}
		until := lockedUntil(t, msg)
		if d := time.Until(until); d < -2*time.Second || d > duration+2*time.Second {
			t.Errorf("%s: locked until %s, %s from now; the lockout lasts %s", what, until, d, duration)
		}
		time.Sleep(time.Until(until) + 1100*time.Millisecond)
	}

	t.Run("wrong codes", func(t *testing.T) {
		tab := tab.For(t)
		e.devLogin(tab, citizenC, "nhi-card", "/account")
		e.verifyEmail(tab, address)
		e.logout(tab)
		tab.Navigate(e.base + "/login/m/otp")
		tab.Type("subject", citizenC)
		sent := e.mail.count(address)
		tab.clickNav("submit")
		code := e.mail.code(t, address, sent)
		wrong := "000000"
		if code == wrong {
			wrong = "111111"
		}
		for i := 1; i <= 3; i++ {
			tab.Type("code", wrong)
			tab.clickNav("submit")
			wantStatus(t, tab, 401, fmt.Sprintf("wrong code %d", i))
		}
		tab.Type("code", code) // right, but too late
		tab.clickNav("submit")
		shot(tab, "identity-7-locked")
		checkLocked(t, tab, "the right code after 3 wrong ones")

		tab.Navigate(e.base + "/login/m/otp")
		tab.Type("subject", citizenC)
		sent = e.mail.count(address)
		tab.clickNav("submit")
		tab.Type("code", e.mail.code(t, address, sent))
		tab.clickNav("submit")
		if tab.path() != "/history" {
			t.Fatalf("one-time code after the lockout ended: at %s:\n%s", tab.URL(), tab.Text("main"))
		}
		e.wantSession(tab, citizenC, "One-time code", "low")
	})

	t.Run("wrong documents", func(t *testing.T) {
		tab := tab.For(t)
		e.logout(tab)
		wrong := docs{registryDocs[citizenC].nhi, "A0000001"}
		for i := 1; i <= 3; i++ {
			e.loginTwoDocs(tab, citizenC, wrong)
			wantStatus(t, tab, 401, fmt.Sprintf("wrong documents %d", i))
			if got := tab.Text("#error"); !strings.Contains(got, "do not match") {
				t.Errorf("wrong documents %d: the page says %q", i, got)
			}
		}
		// Another citizen from the same address is locked out too.
		e.loginTwoDocs(tab, citizenA, registryDocs[citizenA])
		wantStatus(t, tab, 429, "another citizen from the locked address")
		e.loginTwoDocs(tab, citizenC, registryDocs[citizenC])
		checkLocked(t, tab, "the right documents after 3 wrong ones")

		sent := e.mail.count(address)
		e.loginTwoDocs(tab, citizenC, registryDocs[citizenC])
		if tab.Text("#code-sent") == "" {
			t.Fatalf("the right documents after the lockout ended: %s\n%s", tab.URL(), tab.Text("main"))
		}
		tab.Type("code", e.mail.code(t, address, sent))
		tab.clickNav("submit")
		if tab.path() != "/history" {
			t.Fatalf("after the code: at %s:\n%s", tab.URL(), tab.Text("main"))
		}
		e.wantSession(tab, citizenC, "Two documents", "medium")
	})
}

// TestIdentityPages walks every page of the portal in Traditional Chinese and in English on a phone's
// 360-pixel-wide screen: no page may scroll sideways, and axe-core may find no serious or critical
// accessibility violation on any.
func TestIdentityPages(t *testing.T) {
	t.Parallel()
	skipWithoutChromium(t)
	e := startIdentityHub(t, identityOptions{catalogue: true})
	browser := StartBrowser(t)
	shot := screenshots(t)

	// axe must see what it is here for: an unlabelled field is a critical violation.
	probe := browser.NewTab().For(t)
	probe.Navigate(e.base + "/")
	probe.Eval(`document.querySelector("main").append(document.createElement("input")), true`, nil)
	if vs := probe.axe(); !slices.ContainsFunc(vs, func(v axeViolation) bool { return v.ID == "label" && v.Impact == "critical" }) {
		t.Fatalf("axe did not report an unlabelled field: %v", vs)
	}

	for _, lang := range []string{"zh-TW", "en"} {
		t.Run(lang, func(t *testing.T) {
			tab := browser.NewTab().For(t)
			tab.setLang(lang)
			tab.phone()
			check := func(page string) {
				t.Helper()
				tab.checkPhonePage(page, lang)
			}
			visit := func(page, path string) {
				t.Helper()
				tab.Navigate(e.base + path)
				check(page)
			}
			visit("home", "/")
			visit("catalogue", "/catalogue")
			visit("login", "/login")
			for _, m := range []string{certMethod, "two-docs", "otp"} {
				visit("method page "+m, "/login/m/"+m)
			}
			tab.Type("subject", citizenA)
			tab.clickNav("submit")
			check("one-time code step")
			visit("error page", "/login/m/no-such-method")
			e.devLogin(tab, citizenA, "nhi-card", "/history")
			check("history")
			visit("account", "/account")
			shot(tab, "identity-pages-account-"+lang)
			tab.Navigate(e.authorizeURL())
			if tab.Text("#stepup") == "" {
				t.Fatalf("no step-up page for a level-2 session: %s\n%s", tab.URL(), tab.Text("main"))
			}
			check("step-up")
			shot(tab, "identity-pages-step-up-"+lang)
			tab.Type("subject", citizenA)
			tab.Select("method", "moica")
			tab.clickNav("login")
			if tab.Text("#approve") == "" {
				t.Fatalf("no consent page after stepping up: %s\n%s", tab.URL(), tab.Text("main"))
			}
			check("consent")
			shot(tab, "identity-pages-consent-"+lang)
		})
	}

	// The header's language button switches the page the citizen is on, and the choice stays.
	t.Run("language switch", func(t *testing.T) {
		tab := browser.NewTab().For(t)
		tab.setLang("zh-TW")
		tab.phone()
		tab.Navigate(e.base + "/")
		tab.clickNav("lang-switch")
		if tab.path() != "/" || tab.Attr("lang-switch", "value") != "zh-TW" {
			t.Errorf("after switching on the home page: at %s, the button offers %q", tab.URL(), tab.Attr("lang-switch", "value"))
		}
		tab.Navigate(e.base + "/catalogue")
		var htmlLang string
		tab.Eval(`document.documentElement.lang`, &htmlLang)
		if htmlLang != "en" {
			t.Errorf("the choice of English did not stay: the catalogue is in %q", htmlLang)
		}
		// On a login method's page, reached from a service's request, the switch must keep the page and
		// the request rather than drop the citizen on another page.
		next := strings.TrimPrefix(e.authorizeURL(), e.base)
		tab.Navigate(e.base + "/login/m/" + certMethod + "?next=" + url.QueryEscape(next))
		tab.clickNav("lang-switch")
		if got := tab.path(); got != "/login/m/"+certMethod {
			t.Errorf("switching the language on the certificate page (%s) led to %s", "/login/m/"+certMethod+"?next=...", tab.URL())
		}
	})
}
