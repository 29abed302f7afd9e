package portal

import (
	"encoding/base64"
	"fmt"
	"html"
	"io"
	"log"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/mydatafed/mydata/hub/internal/identity/certlogin"
	"github.com/mydatafed/mydata/hub/internal/identity/passkey"
	"github.com/mydatafed/mydata/hub/internal/identity/passkey/passkeytest"
	"github.com/mydatafed/mydata/hub/internal/identity/twodocs"
	"github.com/mydatafed/mydata/hub/internal/notify"
	"github.com/mydatafed/mydata/pkg/cardca"
	"github.com/mydatafed/mydata/pkg/cardsigner"
	"github.com/mydatafed/mydata/pkg/docregistry"
)

// mailbox is a real SMTP server (go-smtp) on loopback that keeps what it receives.
type mailbox struct {
	addr string
	mu   sync.Mutex
	msgs []*mail.Message
	body []string
}

func startMailbox(t *testing.T) *mailbox {
	t.Helper()
	mb := &mailbox{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &mailSession{mb: mb}, nil }))
	srv.Domain = "localhost"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mb.addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return mb
}

type mailSession struct{ mb *mailbox }

func (s *mailSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *mailSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *mailSession) Reset()                               {}
func (s *mailSession) Logout() error                        { return nil }
func (s *mailSession) Data(r io.Reader) error {
	m, err := mail.ReadMessage(r)
	if err != nil {
		return err
	}
	var body []byte
	if m.Header.Get("Content-Transfer-Encoding") == "quoted-printable" {
		body, err = io.ReadAll(quotedprintable.NewReader(m.Body))
	} else if m.Header.Get("Content-Transfer-Encoding") == "base64" {
		body, err = io.ReadAll(base64.NewDecoder(base64.StdEncoding, m.Body))
	} else {
		body, err = io.ReadAll(m.Body)
	}
	if err != nil {
		return err
	}
	s.mb.mu.Lock()
	s.mb.msgs = append(s.mb.msgs, m)
	s.mb.body = append(s.mb.body, string(body))
	s.mb.mu.Unlock()
	return nil
}

var sixDigits = regexp.MustCompile(`\b[0-9]{6}\b`)

// code waits for the n-th message and reads the code in it.
func (mb *mailbox) code(t *testing.T, n int) (code, to, subject string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		mb.mu.Lock()
		if len(mb.msgs) >= n {
			m, body := mb.msgs[n-1], mb.body[n-1]
			mb.mu.Unlock()
			subject, _ = new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
			return sixDigits.FindString(body), m.Header.Get("To"), subject
		}
		mb.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no message %d arrived", n)
	return "", "", ""
}

func mailLogins(t *testing.T, mb *mailbox) Logins {
	t.Helper()
	sender, err := notify.New(notify.Config{Mail: notify.MailConfig{Host: "127.0.0.1", Port: portOf(mb.addr), From: "MyData <no-reply@mydata.test>", StartTLS: "none"}})
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := notify.LoadTemplates("")
	if err != nil {
		t.Fatal(err)
	}
	return Logins{OTP: &OTPLogin{Level: 1}, Notify: sender, Templates: tmpl}
}

func portOf(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	var n int
	fmt.Sscan(p, &n)
	return n
}

// verifyEmail adds and verifies an e-mail address on the account page with the code the mailbox gets.
func (b *browser) verifyEmail(t *testing.T, mb *mailbox, n int, address string) {
	t.Helper()
	acct := b.get("/account")
	f := form(acct.body, "/account/contact")
	f.Set("channel", "email")
	f.Set("address", address)
	r := b.post("/account/contact", f)
	if r.status != http.StatusOK || !strings.Contains(r.body, `id="verify-form"`) {
		t.Fatalf("add a contact: %d %s", r.status, r.body)
	}
	code, to, _ := mb.code(t, n)
	if !strings.Contains(to, address) {
		t.Fatalf("the code went to %q", to)
	}
	v := form(r.body, "/account/contact/verify")
	v.Set("code", code)
	if r := b.post("/account/contact/verify", v); r.status != http.StatusSeeOther {
		t.Fatalf("verify: %d %s", r.status, r.body)
	}
	if acct := b.get("/account"); !strings.Contains(acct.body, address) {
		t.Fatal("the account page does not show the verified address")
	}
}

func TestOneTimeCodeLogin(t *testing.T) {
	mb := startMailbox(t)
	w := newWorldWith(t, "http://portal.test", func(*world) Logins { return mailLogins(t, mb) })
	b := w.browser()
	b.lang = "en"
	b.login(alice, "nhi-card", "/history")
	b.verifyEmail(t, mb, 1, "alice@example.tw")
	// The address is sealed in the state, not in clear.
	if c, _ := w.f.ContactOf(mustHashes(t, w, alice)...); c == nil || strings.Contains(string(c.EmailSealed), "alice@") || c.EmailVerifiedAt.IsZero() {
		t.Fatalf("stored contact: %+v", c)
	}

	other := w.browser()
	other.lang = "en"
	page := other.get("/login/m/otp?next=/history")
	f := form(page.body, "/login/m/otp")
	f.Set("subject", alice)
	f.Set("channel", "email")
	r := other.post("/login/m/otp", f)
	if !strings.Contains(r.body, `id="code"`) {
		t.Fatalf("no code step: %d %s", r.status, r.body)
	}
	code, _, subject := mb.code(t, 2)
	if !strings.Contains(subject, "MyData") {
		t.Errorf("subject %q", subject)
	}
	step := form(r.body, "/login/m/otp")
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	step.Set("code", wrong)
	if r := other.post("/login/m/otp", step); r.status != http.StatusUnauthorized || !strings.Contains(r.body, "4 tries left") {
		t.Fatalf("a wrong code: %d %s", r.status, r.body)
	}
	step.Set("code", code)
	r = other.post("/login/m/otp", step)
	if r.status != http.StatusSeeOther || r.location != "/history" {
		t.Fatalf("the right code: %d %s", r.status, r.body)
	}
	if acct := other.get("/account"); !strings.Contains(acct.body, "One-time code by e-mail or SMS (level: low)") {
		t.Errorf("logged in with the code at level low? %s", acct.body)
	}
	// Single use.
	// Single use: the same step again is refused (the new session also voids the form's token).
	if r := other.post("/login/m/otp", step); r.status == http.StatusSeeOther || r.status == http.StatusOK {
		t.Errorf("the code twice: %d", r.status)
	}
	// A citizen with no verified contact sees the same page, and no mail goes out.
	bobB := w.browser()
	page = bobB.get("/login/m/otp")
	f = form(page.body, "/login/m/otp")
	f.Set("subject", bob)
	f.Set("channel", "email")
	if r := bobB.post("/login/m/otp", f); !strings.Contains(r.body, `id="code"`) {
		t.Fatalf("no code step for bob: %s", r.body)
	}
	time.Sleep(100 * time.Millisecond)
	if len(mb.msgs) != 2 {
		t.Errorf("%d messages: a code went to someone with no contact", len(mb.msgs))
	}
}

func mustHashes(t *testing.T, w *world, subject string) []string {
	h, err := w.portal.cfg.Keys.LookupHashes(subject)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestLockoutSaysWhenAndEnds(t *testing.T) {
	mb := startMailbox(t)
	w := newWorldWith(t, "http://portal.test", func(*world) Logins {
		l := mailLogins(t, mb)
		l.Lockout = Lockout{MaxFailures: 3, Window: 10 * time.Minute, Duration: 5 * time.Minute}
		return l
	})
	b := w.browser()
	b.lang = "en"
	try := func() response {
		page := b.get("/login/m/otp")
		f := form(page.body, "/login/m/otp")
		f.Set("subject", alice)
		f.Set("channel", "email")
		r := b.post("/login/m/otp", f)
		step := form(r.body, "/login/m/otp")
		if r.status != http.StatusOK || step == nil {
			return r
		}
		step.Set("code", "123456")
		return b.post("/login/m/otp", step)
	}
	for i := 0; i < 3; i++ {
		if r := try(); r.status != http.StatusUnauthorized {
			t.Fatalf("try %d: %d", i+1, r.status)
		}
	}
	r := try()
	if r.status != http.StatusTooManyRequests || !strings.Contains(r.body, "Please try again after") || r.header.Get("Retry-After") == "" {
		t.Fatalf("locked: %d %s", r.status, r.body)
	}
	// Another address is locked for alice too (per subject); bob from this address is locked (per address).
	bobB := w.browser()
	page := bobB.get("/login/m/otp")
	f := form(page.body, "/login/m/otp")
	f.Set("subject", alice)
	f.Set("channel", "email")
	if r := bobB.post("/login/m/otp", f); r.status != http.StatusTooManyRequests {
		t.Errorf("alice from another browser: %d", r.status)
	}
	w.now = w.now.Add(5*time.Minute + time.Second)
	if r := try(); r.status == http.StatusTooManyRequests {
		t.Errorf("still locked after the lock ended: %s", r.body)
	}
}

func TestCertificateLogin(t *testing.T) {
	dir := t.TempDir()
	ca, err := cardca.New(cardca.Options{Name: "Test MOICA"})
	if err != nil {
		t.Fatal(err)
	}
	card, _ := ca.IssueCitizen(cardca.CitizenOptions{NationalID: alice})
	revoked, _ := ca.IssueCitizen(cardca.CitizenOptions{NationalID: bob})
	ca.Revoke(revoked.Cert)
	files, err := ca.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	w := newWorldWith(t, "http://portal.test", func(w *world) Logins {
		v, err := certlogin.New(certlogin.Config{ID: "moica", Roots: []string{files.Root}, CRLs: []string{files.CRLPEM},
			SubjectRule: certlogin.SubjectRule{Kind: certlogin.SubjectAttribute}}, nil, func() time.Time { return w.now })
		if err != nil {
			t.Fatal(err)
		}
		return Logins{Certificates: []CertLogin{{Verifier: v, NameZh: "自然人憑證", NameEn: "Citizen certificate", Level: 3, SignerURL: "http://127.0.0.1:61161/sign"}}}
	})
	login := func(b *browser, subject string, leaf *cardca.Leaf) response {
		page := b.get("/login/m/moica?next=/history")
		if csp := page.header.Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self' http://127.0.0.1:61161;") {
			t.Errorf("the certificate page's CSP does not let it reach the signer: %s", csp)
		}
		challenge := regexp.MustCompile(`data-challenge="([^"]+)"`).FindStringSubmatch(page.body)
		if challenge == nil {
			t.Fatalf("no challenge: %s", page.body)
		}
		der, err := cardsigner.Sign([]byte(challenge[1]), leaf.Cert, leaf.Chain, leaf.Key, false)
		if err != nil {
			t.Fatal(err)
		}
		f := form(page.body, "/login/m/moica")
		f.Set("subject", subject)
		f.Set("signed_data", base64.StdEncoding.EncodeToString(der))
		return b.post("/login/m/moica", f)
	}
	b := w.browser()
	b.lang = "en"
	if r := login(b, alice, card); r.status != http.StatusSeeOther {
		t.Fatalf("alice's card: %d %s", r.status, r.body)
	}
	if acct := b.get("/account"); !strings.Contains(acct.body, "Citizen certificate (level: high)") {
		t.Errorf("account after the card: %s", acct.body)
	}
	// Bob's revoked card, and alice's card for bob's ID.
	for name, tc := range map[string]struct {
		subject string
		leaf    *cardca.Leaf
		want    string
	}{"revoked": {bob, revoked, "revoked"}, "not yours": {bob, card, "does not belong"}} {
		b := w.browser()
		b.lang = "en"
		r := login(b, tc.subject, tc.leaf)
		if r.status != http.StatusUnauthorized || !strings.Contains(strings.ToLower(r.body), tc.want) {
			t.Errorf("%s: %d, want 401 saying %q: %s", name, r.status, tc.want, r.body)
		}
	}
	// A signature over another page's challenge.
	b2 := w.browser()
	page := b2.get("/login/m/moica")
	der, _ := cardsigner.Sign([]byte("another challenge"), card.Cert, card.Chain, card.Key, false)
	f := form(page.body, "/login/m/moica")
	f.Set("subject", alice)
	f.Set("signed_data", base64.StdEncoding.EncodeToString(der))
	if r := b2.post("/login/m/moica", f); r.status != http.StatusUnauthorized {
		t.Errorf("another challenge: %d", r.status)
	}
}

func TestTwoDocumentsNeedACodeTheFirstTime(t *testing.T) {
	mb := startMailbox(t)
	reg, err := docregistry.Open(filepath.Join("..", "..", "..", "pkg", "docregistry", "testdata", "sample-registry.json"), "")
	if err != nil {
		t.Fatal(err)
	}
	rs := httptest.NewServer(reg)
	t.Cleanup(rs.Close)
	w := newWorldWith(t, "http://portal.test", func(*world) Logins {
		l := mailLogins(t, mb)
		c, err := twodocs.New(twodocs.Config{URL: rs.URL})
		if err != nil {
			t.Fatal(err)
		}
		l.TwoDocs = &TwoDocsLogin{Client: c, Level: 2}
		return l
	})
	b := w.browser()
	b.lang = "en"
	b.login(alice, "nhi-card", "/history")
	b.verifyEmail(t, mb, 1, "alice@example.tw")
	docs := func(b *browser, household string) response {
		page := b.get("/login/m/two-docs?next=/history")
		f := form(page.body, "/login/m/two-docs")
		f.Set("subject", alice)
		f.Set("nhi_card", "0000-1234-5678")
		f.Set("household", household)
		f.Set("channel", "email")
		return b.post("/login/m/two-docs", f)
	}
	fresh := w.browser()
	fresh.lang = "en"
	if r := docs(fresh, "D0099999"); r.status != http.StatusUnauthorized || !strings.Contains(r.body, "do not match") {
		t.Fatalf("wrong household: %d %s", r.status, r.body)
	}
	if r := docs(fresh, "bad"); r.status != http.StatusBadRequest {
		t.Fatalf("malformed household: %d", r.status)
	}
	r := docs(fresh, "D0012345")
	if !strings.Contains(r.body, `id="code"`) {
		t.Fatalf("first use did not ask for a code: %d %s", r.status, r.body)
	}
	code, _, _ := mb.code(t, 2)
	step := form(r.body, "/login/m/two-docs")
	step.Set("code", code)
	if r := fresh.post("/login/m/two-docs", step); r.status != http.StatusSeeOther {
		t.Fatalf("code: %d %s", r.status, r.body)
	}
	// The second time, no code.
	again := w.browser()
	if r := docs(again, "D0012345"); r.status != http.StatusSeeOther {
		t.Fatalf("second use: %d %s", r.status, r.body)
	}
}

func TestPasskeyRegisterAndLogin(t *testing.T) {
	w := newWorldWith(t, "http://localhost:8080", func(*world) Logins {
		cfg := passkey.DefaultConfig()
		cfg.RPID, cfg.Origins = "localhost", []string{"http://localhost:8080"}
		return Logins{Passkey: &PasskeyLogin{Config: cfg, Level: 2, RegisterLevel: 2}}
	})
	auth := passkeytest.NewAuthenticator("http://localhost:8080")
	script := func(b *browser, path, csrf string, body io.Reader, ctype string) response {
		req, _ := http.NewRequest(http.MethodPost, b.w.srv.URL+path, body)
		req.Header.Set("Content-Type", ctype)
		req.Header.Set("X-CSRF-Token", csrf)
		return b.do(req)
	}
	csrfIn := func(page, id string) string {
		m := regexp.MustCompile(`id="` + id + `"[^>]*>\s*<input type="hidden" name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
		if m == nil {
			t.Fatalf("no csrf in #%s", id)
		}
		return html.UnescapeString(m[1])
	}
	b := w.browser()
	b.lang = "en"
	// A level-1 session may not register.
	b.login(alice, "otp", "/history")
	if acct := b.get("/account"); !strings.Contains(acct.body, `id="passkey-level"`) {
		t.Fatal("a level-1 session is offered registration")
	}
	b.login(alice, "nhi-card", "/history")
	acct := b.get("/account")
	csrf := csrfIn(acct.body, "passkey-form")
	r := script(b, "/account/passkeys/begin", csrf, strings.NewReader("name=phone"), "application/x-www-form-urlencoded")
	if r.status != http.StatusOK {
		t.Fatalf("begin registration: %d %s", r.status, r.body)
	}
	if strings.Contains(r.body, alice) {
		t.Fatal("the options carry the national ID")
	}
	cred, err := auth.Create([]byte(r.body))
	if err != nil {
		t.Fatal(err)
	}
	if r := script(b, "/account/passkeys/finish", csrf, strings.NewReader(string(cred)), "application/json"); r.status != http.StatusOK || !strings.Contains(r.body, `"/account"`) {
		t.Fatalf("finish registration: %d %s", r.status, r.body)
	}
	if acct := b.get("/account"); !strings.Contains(acct.body, "phone") {
		t.Fatal("the passkey is not listed")
	}
	// A fresh browser logs in with the passkey alone.
	other := w.browser()
	other.lang = "en"
	page := other.get("/login?next=/catalogue")
	m := regexp.MustCompile(`data-passkey="login"[^>]*>\s*<input type="hidden" name="csrf" value="([^"]+)">`).FindStringSubmatch(page.body)
	if m == nil {
		t.Fatalf("no passkey login on the login page: %s", page.body)
	}
	lcsrf := html.UnescapeString(m[1])
	r = script(other, "/login/passkey/begin", lcsrf, strings.NewReader(url.Values{"next": {"/catalogue"}}.Encode()), "application/x-www-form-urlencoded")
	if r.status != http.StatusOK {
		t.Fatalf("begin login: %d %s", r.status, r.body)
	}
	assertion, err := auth.Get([]byte(r.body))
	if err != nil {
		t.Fatal(err)
	}
	r = script(other, "/login/passkey/finish", lcsrf, strings.NewReader(string(assertion)), "application/json")
	if r.status != http.StatusOK || !strings.Contains(r.body, `"redirect":"/catalogue"`) {
		t.Fatalf("finish login: %d %s", r.status, r.body)
	}
	if acct := other.get("/account"); !strings.Contains(acct.body, "A12*****89") || !strings.Contains(acct.body, "Passkey (FIDO) (level: medium)") {
		t.Fatalf("account after the passkey: %s", acct.body)
	}
	// The same answer again: the ceremony was spent.
	if r := script(other, "/login/passkey/finish", lcsrf, strings.NewReader(string(assertion)), "application/json"); r.status == http.StatusOK {
		t.Error("a replayed passkey answer logged in")
	}
	// Removed on the account page, the passkey no longer logs anyone in.
	acct = other.get("/account")
	rm := regexp.MustCompile(`action="(/account/passkeys/[^/"]+/remove)"`).FindStringSubmatch(acct.body)
	if rm == nil {
		t.Fatalf("no remove button: %s", acct.body)
	}
	if r := other.post(rm[1], form(acct.body, rm[1])); r.status != http.StatusSeeOther {
		t.Fatalf("remove: %d %s", r.status, r.body)
	}
	if acct := other.get("/account"); !strings.Contains(acct.body, `id="no-passkeys"`) {
		t.Error("the passkey is still listed")
	}
	third := w.browser()
	page = third.get("/login")
	lcsrf = html.UnescapeString(regexp.MustCompile(`data-passkey="login"[^>]*>\s*<input type="hidden" name="csrf" value="([^"]+)">`).FindStringSubmatch(page.body)[1])
	r = script(third, "/login/passkey/begin", lcsrf, strings.NewReader(""), "application/x-www-form-urlencoded")
	assertion, _ = auth.Get([]byte(r.body))
	if r := script(third, "/login/passkey/finish", lcsrf, strings.NewReader(string(assertion)), "application/json"); r.status != http.StatusUnauthorized {
		t.Errorf("a removed passkey: %d %s", r.status, r.body)
	}
}
