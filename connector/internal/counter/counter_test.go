package counter

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mydatafed/mydata/connector/internal/exchange"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/seal"
	"github.com/prometheus/client_golang/prometheus"
)

// fakeHub answers counter redemptions with answer, and counts them.
type fakeHub struct {
	mu     sync.Mutex
	calls  []hubapi.CounterRedeemRequest
	answer func(req hubapi.CounterRedeemRequest) (*hubapi.CounterRedeemResponse, error)
}

func (h *fakeHub) Do(ctx context.Context, method, path string, in, out any, _ ...hubapi.CallOption) error {
	if method != http.MethodPost || path != hubapi.PathCounterRedeem {
		return &hubapi.Error{Status: 404, Message: "not found"}
	}
	req := in.(hubapi.CounterRedeemRequest)
	h.mu.Lock()
	h.calls = append(h.calls, req)
	answer := h.answer
	h.mu.Unlock()
	resp, err := answer(req)
	if err != nil {
		return err
	}
	*out.(*hubapi.CounterRedeemResponse) = *resp
	return nil
}

func (h *fakeHub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.calls)
}

// fakeCollector makes an exchange from the hub's tickets with content from content (by dataset), as
// exchange.Manager would after fetching, and keeps the content slices so a test can see them overwritten.
type fakeCollector struct {
	content map[string]string
	types   map[string]string

	mu    sync.Mutex
	owned [][]byte
}

func (c *fakeCollector) Collect(ctx, bg context.Context, redeem exchange.Redeemer) (*exchange.Exchange, error) {
	resp, err := redeem(ctx, seal.KEMHybrid, []byte("public key"))
	if err != nil {
		return nil, err
	}
	ex := &exchange.Exchange{ID: "ex-1", Service: resp.Service}
	for _, t := range resp.Tickets {
		d := &exchange.Dataset{Dataset: t.Dataset, DP: t.DP, Status: exchange.StatusNoRecord}
		if body, ok := c.content[t.Dataset]; ok {
			b := []byte(body)
			c.mu.Lock()
			c.owned = append(c.owned, b)
			c.mu.Unlock()
			d.Status, d.Content, d.Size, d.ContentType, d.Verified = exchange.StatusDelivered, b, int64(len(b)), c.types[t.Dataset], true
		}
		ex.Datasets = append(ex.Datasets, d)
	}
	for _, u := range resp.Unavailable {
		ex.Datasets = append(ex.Datasets, &exchange.Dataset{Dataset: u.Dataset, Status: exchange.StatusUnavailable, Reason: u.Reason})
	}
	return ex, nil
}

// allZero says whether every byte of every content slice handed out has been overwritten.
func (c *fakeCollector) allZero() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range c.owned {
		for _, x := range b {
			if x != 0 {
				return false
			}
		}
	}
	return len(c.owned) > 0
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

const (
	pdfBody  = "%PDF-1.4\n% a tiny test document PAYLOAD-PDF\n%%EOF\n"
	jsonBody = `{"household":"PAYLOAD-HOUSEHOLD","head":{"name":"王小明","born":1980},"members":[{"name":"王小明","relation":"head"},{"name":"<script>alert(1)</script>","relation":"child"}]}`
	csvBody  = "\xef\xbb\xbfyear,income\n2025,1234567\n2024,\"1,000\"\n"
)

type rig struct {
	t     *testing.T
	s     *Server
	hub   *fakeHub
	coll  *fakeCollector
	clock *clock
	srv   *httptest.Server
	reg   *prometheus.Registry
}

func newRig(t *testing.T) *rig {
	t.Helper()
	dir := t.TempDir()
	staff := filepath.Join(dir, "staff")
	os.WriteFile(staff, []byte("alice:"+testHash+"\nbob:"+testHash+"\n"), 0o600)
	r := &rig{t: t, hub: &fakeHub{}, clock: &clock{now: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}, reg: prometheus.NewRegistry(),
		coll: &fakeCollector{
			content: map[string]string{"moi.household": jsonBody, "fia.income": csvBody, "moi.certificate": pdfBody},
			types:   map[string]string{"moi.household": "application/json", "fia.income": "text/csv; charset=utf-8", "moi.certificate": "application/pdf"},
		}}
	r.hub.answer = func(req hubapi.CounterRedeemRequest) (*hubapi.CounterRedeemResponse, error) {
		return r.okAnswer(nil), nil
	}
	loc, _ := time.LoadLocation("Asia/Taipei")
	s, err := New(Config{Hub: r.hub, Exchanges: r.coll, StaffFile: staff, TTL: 30 * time.Minute, IdleTimeout: 15 * time.Minute,
		LockoutAfter: 5, LockoutFor: 15 * time.Minute, Location: loc, Registerer: r.reg, Now: r.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	r.s = s
	r.srv = httptest.NewServer(s.Handler())
	t.Cleanup(r.srv.Close)
	return r
}

func (r *rig) okAnswer(agent *hubapi.CounterAgent) *hubapi.CounterRedeemResponse {
	dp := "spiffe://mydata.example/org/moi/connector/dp1"
	return &hubapi.CounterRedeemResponse{Agent: agent, RedeemResponse: hubapi.RedeemResponse{
		ConsentID: "c-1", Service: "bank.counter", Subject: "A123456789",
		Tickets: []hubapi.RedeemedTicket{{Dataset: "moi.household", DP: dp}, {Dataset: "fia.income", DP: "spiffe://mydata.example/org/fia/connector/dp2"},
			{Dataset: "moi.certificate", DP: dp}, {Dataset: "moi.vehicle", DP: dp}},
		Unavailable: []hubapi.UnavailableDataset{{Dataset: "nhi.card", Reason: "the agency is in maintenance"}},
	}}
}

// browser is one staff member's browser.
type browser struct {
	r *rig
	c *http.Client
}

type resp struct {
	status int
	body   string
	header http.Header
	loc    string
}

func (r *rig) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{r: r, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) do(req *http.Request) resp {
	b.r.t.Helper()
	req.Header.Set("Accept-Language", "en")
	res, err := b.c.Do(req)
	if err != nil {
		b.r.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, string(body), res.Header, res.Header.Get("Location")}
}

func (b *browser) get(path string) resp {
	req, _ := http.NewRequest(http.MethodGet, b.r.srv.URL+path, nil)
	return b.do(req)
}

func (b *browser) post(path string, form url.Values) resp {
	req, _ := http.NewRequest(http.MethodPost, b.r.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token on the page:\n%s", page)
	}
	return m[1]
}

// login logs in and returns the CSRF token of the page after.
func (b *browser) login(name string) string {
	b.r.t.Helper()
	p := b.get("/login")
	r := b.post("/login", url.Values{"csrf": {csrfOf(b.r.t, p.body)}, "name": {name}, "password": {"correct horse battery"}})
	if r.status != http.StatusSeeOther || r.loc != "/" {
		b.r.t.Fatalf("login: %d %s", r.status, r.body)
	}
	return csrfOf(b.r.t, b.get("/").body)
}

func (b *browser) redeem(csrf, code string) resp {
	return b.post("/redeem", url.Values{"csrf": {csrf}, "code": {code}})
}

func TestSessionsAndCSRF(t *testing.T) {
	r := newRig(t)
	b := r.browser()
	if p := b.get("/"); p.status != http.StatusSeeOther || p.loc != "/login" {
		t.Fatalf("no session: %d %s", p.status, p.loc)
	}
	login := b.get("/login")
	for _, h := range []string{"Content-Security-Policy", "Cache-Control", "X-Frame-Options"} {
		if login.header.Get(h) == "" {
			t.Errorf("no %s", h)
		}
	}
	tests := []struct {
		name   string
		form   url.Values
		status int
	}{
		{"no CSRF token", url.Values{"name": {"alice"}, "password": {"correct horse battery"}}, http.StatusForbidden},
		{"a forged CSRF token", url.Values{"csrf": {"x"}, "name": {"alice"}, "password": {"correct horse battery"}}, http.StatusForbidden},
		{"wrong password", url.Values{"csrf": {csrfOf(t, login.body)}, "name": {"alice"}, "password": {"wrong password"}}, http.StatusUnauthorized},
		{"no such account", url.Values{"csrf": {csrfOf(t, login.body)}, "name": {"mallory"}, "password": {"correct horse battery"}}, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if p := b.post("/login", tt.form); p.status != tt.status {
				t.Fatalf("%d, want %d: %s", p.status, tt.status, p.body)
			}
		})
	}
	// Another browser's login token does not work here: it is bound to the browser's pre-login cookie.
	other := r.browser()
	otherToken := csrfOf(t, other.get("/login").body)
	if p := b.post("/login", url.Values{"csrf": {otherToken}, "name": {"alice"}, "password": {"correct horse battery"}}); p.status != http.StatusForbidden {
		t.Fatalf("another browser's login token: %d", p.status)
	}

	csrf := b.login("alice")
	u, _ := url.Parse(r.srv.URL)
	var cookie *http.Cookie
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == sessionCookie {
			cookie = c
		}
	}
	if cookie == nil {
		t.Fatal("no session cookie")
	}
	// The jar does not keep the attributes: read them off a fresh login's Set-Cookie.
	fresh := r.browser()
	p := fresh.get("/login")
	res := fresh.post("/login", url.Values{"csrf": {csrfOf(t, p.body)}, "name": {"bob"}, "password": {"correct horse battery"}})
	sc := strings.Join(res.header.Values("Set-Cookie"), "\n")
	if !strings.Contains(sc, sessionCookie+"=") || !strings.Contains(sc, "HttpOnly") || !strings.Contains(sc, "SameSite=Strict") {
		t.Fatalf("session cookie attributes: %s", sc)
	}

	// Every form needs this session's token: none, another session's, and the login token are refused.
	bobToken := csrfOf(t, fresh.get("/").body)
	for name, tok := range map[string]string{"none": "", "another session's": bobToken, "forged": csrf + "x"} {
		if p := b.redeem(tok, "ABCD2345"); p.status != http.StatusForbidden {
			t.Errorf("%s token: %d", name, p.status)
		}
	}
	if r.hub.count() != 0 {
		t.Fatal("a form without a good token reached the hub")
	}

	// Idle for the idle timeout: the session is gone.
	r.clock.Add(15 * time.Minute)
	if p := b.get("/"); p.status != http.StatusSeeOther || p.loc != "/login" {
		t.Fatalf("after the idle timeout: %d %s", p.status, p.loc)
	}
	// Logout ends a session; its token is then useless.
	csrf = b.login("alice")
	if p := b.post("/logout", url.Values{"csrf": {csrf}}); p.status != http.StatusSeeOther || p.loc != "/login" {
		t.Fatalf("logout: %d", p.status)
	}
	if p := b.get("/"); p.loc != "/login" {
		t.Fatal("still logged in after logout")
	}
}

func TestLoginLockout(t *testing.T) {
	r := newRig(t)
	b := r.browser()
	for i := 1; i <= 5; i++ {
		p := b.post("/login", url.Values{"csrf": {csrfOf(t, b.get("/login").body)}, "name": {"alice"}, "password": {"guess number " + string(rune('0'+i))}})
		want := http.StatusUnauthorized
		if i == 5 {
			want = http.StatusTooManyRequests
		}
		if p.status != want {
			t.Fatalf("try %d: %d", i, p.status)
		}
	}
	p := b.post("/login", url.Values{"csrf": {csrfOf(t, b.get("/login").body)}, "name": {"alice"}, "password": {"correct horse battery"}})
	if p.status != http.StatusTooManyRequests || !strings.Contains(p.body, "cannot log in until 2026-11-23 18:15:00") {
		t.Fatalf("the right password during the lock: %d %s", p.status, p.body)
	}
	r.clock.Add(15 * time.Minute)
	b.login("alice")
}

func TestCodeLockout(t *testing.T) {
	r := newRig(t)
	r.hub.answer = func(hubapi.CounterRedeemRequest) (*hubapi.CounterRedeemResponse, error) {
		return nil, &hubapi.Error{Status: 404, Message: hubapi.CounterInvalidCode}
	}
	b := r.browser()
	csrf := b.login("alice")
	// A string that cannot be a code never reaches the hub and does not count.
	for _, bad := range []string{"ABC", "ABCD0123", "ABCDEFGHJ", "<b>"} {
		if p := b.redeem(csrf, bad); p.status != http.StatusUnprocessableEntity {
			t.Fatalf("%q: %d", bad, p.status)
		}
	}
	if r.hub.count() != 0 {
		t.Fatal("a malformed code reached the hub")
	}
	for i := 1; i <= 4; i++ {
		p := b.redeem(csrf, "abcd-2345")
		if p.status != http.StatusNotFound || !strings.Contains(p.body, "No valid code like that") || !strings.Contains(p.body, string(rune('0'+5-i))+" more wrong codes") {
			t.Fatalf("wrong code %d: %d %s", i, p.status, p.body)
		}
	}
	p := b.redeem(csrf, "ABCD2345")
	if p.status != http.StatusTooManyRequests || !strings.Contains(p.body, "cannot enter codes until 2026-11-23 18:15:00") {
		t.Fatalf("fifth wrong code: %d %s", p.status, p.body)
	}
	if p := b.redeem(csrf, "ABCD2346"); p.status != http.StatusTooManyRequests || r.hub.count() != 5 {
		t.Fatalf("a code during the lock: %d, hub asked %d times", p.status, r.hub.count())
	}
	// The lock is the account's: logging in again does not lift it.
	b2 := r.browser()
	csrf2 := b2.login("alice")
	if p := b2.get("/"); !strings.Contains(p.body, `id="locked"`) {
		t.Fatal("a new session of the locked account can enter codes")
	}
	if p := b2.redeem(csrf2, "ABCD2346"); p.status != http.StatusTooManyRequests {
		t.Fatalf("a new session during the lock: %d", p.status)
	}
	// The hub asked with the terminal, never with the session cookie.
	u, _ := url.Parse(r.srv.URL)
	for _, c := range b.c.Jar.Cookies(u) {
		for _, call := range r.hub.calls {
			if c.Value == call.Terminal {
				t.Fatal("the terminal is the session cookie")
			}
		}
	}
	r.clock.Add(15 * time.Minute)
	r.hub.answer = func(hubapi.CounterRedeemRequest) (*hubapi.CounterRedeemResponse, error) { return r.okAnswer(nil), nil }
	if p := b2.redeem(csrf2, "ABCD2346"); p.status != http.StatusSeeOther {
		t.Fatalf("after the lock: %d %s", p.status, p.body)
	}
}

func TestHubAnswers(t *testing.T) {
	tests := []struct {
		name   string
		err    *hubapi.Error
		status int
		want   string
	}{
		{"used", &hubapi.Error{Status: 409, Message: hubapi.CounterUsed}, 409, "has been used already"},
		{"another SP's", &hubapi.Error{Status: 403, Message: hubapi.CounterWrongClient}, 403, "another organisation"},
		{"hub lock", &hubapi.Error{Status: 429, Message: hubapi.CounterLocked, RetryAfter: 10 * time.Minute}, 429, "locked this counter terminal out until 2026-11-23 18:10:00"},
		{"hub down", &hubapi.Error{Status: 503, Message: "no leader"}, 502, "cannot be reached"},
		{"other refusal", &hubapi.Error{Status: 400, Message: "invalid_request", Description: "terminal: required"}, 400, "terminal: required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			r.hub.answer = func(hubapi.CounterRedeemRequest) (*hubapi.CounterRedeemResponse, error) { return nil, tt.err }
			b := r.browser()
			p := b.redeem(b.login("alice"), "ABCD2345")
			if p.status != tt.status || !strings.Contains(p.body, tt.want) {
				t.Fatalf("%d %s", p.status, p.body)
			}
			// The hub's lock holds here too, until the time it said.
			if locked := strings.Contains(b.get("/").body, `id="locked"`); locked != (tt.status == 429) {
				t.Fatalf("locked here: %v", locked)
			}
		})
	}
}

func TestOTP(t *testing.T) {
	r := newRig(t)
	r.hub.answer = func(req hubapi.CounterRedeemRequest) (*hubapi.CounterRedeemResponse, error) {
		switch req.OTP {
		case "":
			return nil, &hubapi.Error{Status: 428, Message: hubapi.CounterOTPRequired}
		case "123456":
			return r.okAnswer(nil), nil
		}
		return nil, &hubapi.Error{Status: 401, Message: hubapi.CounterOTPWrong, Description: "2 tries remain"}
	}
	b := r.browser()
	csrf := b.login("alice")
	p := b.redeem(csrf, "ABCD2345")
	if p.status != http.StatusOK || !strings.Contains(p.body, `id="otp"`) || !strings.Contains(p.body, "has sent one to the citizen") {
		t.Fatalf("otp_required: %d %s", p.status, p.body)
	}
	p = b.post("/otp", url.Values{"csrf": {csrf}, "otp": {"999999"}})
	if p.status != http.StatusUnauthorized || !strings.Contains(p.body, "2 tries remain") || !strings.Contains(p.body, `id="otp"`) {
		t.Fatalf("otp_wrong: %d %s", p.status, p.body)
	}
	p = b.post("/otp", url.Values{"csrf": {csrf}, "otp": {"123456"}})
	if p.status != http.StatusSeeOther || p.loc != "/view" {
		t.Fatalf("right otp: %d %s", p.status, p.body)
	}
	r.hub.mu.Lock()
	calls := r.hub.calls
	r.hub.mu.Unlock()
	if len(calls) != 3 || calls[2].Code != "ABCD2345" || calls[2].OTP != "123456" || calls[0].Terminal == "" || calls[0].Terminal != calls[2].Terminal {
		t.Fatalf("hub calls %+v", calls)
	}
	// Cancel forgets the code.
	b.post("/done", url.Values{"csrf": {csrf}})
	b.redeem(csrf, "ABCD2345")
	if p := b.post("/otp", url.Values{"csrf": {csrf}, "cancel": {"1"}}); p.loc != "/" {
		t.Fatal("cancel")
	}
	if p := b.get("/"); strings.Contains(p.body, `id="otp"`) {
		t.Fatal("the code outlived cancel")
	}
}

func heldBytes(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "mydata_connector_counter_held_bytes" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no mydata_connector_counter_held_bytes")
	return 0
}

// TestViewAndDone: the data shows, each dataset with its agency and status; Done overwrites every byte
// the store owned and leaves nothing behind.
func TestViewAndDone(t *testing.T) {
	r := newRig(t)
	b := r.browser()
	csrf := b.login("alice")
	if p := b.redeem(csrf, "abcd 2345"); p.status != http.StatusSeeOther || p.loc != "/view" {
		t.Fatalf("redeem: %d %s", p.status, p.body)
	}
	if got := r.hub.calls[0]; got.Code != "ABCD2345" || got.RecipientKEM != seal.KEMHybrid || string(got.RecipientKey) != "public key" {
		t.Fatalf("hub request %+v", got)
	}
	want := float64(len(jsonBody) + len(csvBody) + len(pdfBody))
	if n := heldBytes(t, r.reg); n != want {
		t.Fatalf("held bytes %v, want %v", n, want)
	}
	if p := b.get("/"); p.loc != "/view" {
		t.Fatal("the entry page with data held")
	}
	v := b.get("/view")
	if v.header.Get("Cache-Control") != "no-store" {
		t.Fatal("the data page may be cached")
	}
	for _, w := range []string{"bank.counter", "A12*****89", "PAYLOAD-HOUSEHOLD", "<dt>household</dt>", "<th scope=\"col\">relation</th>",
		"&lt;script&gt;alert(1)&lt;/script&gt;", "<th scope=\"col\">income</th>", "<td>1,000</td>", `src="/view/content/2"`,
		"moi / dp1", "fia / dp2", "Delivered", "No record", "Unavailable", "the agency is in maintenance", "2026-11-23 18:30:00"} {
		if !strings.Contains(v.body, w) {
			t.Errorf("the data page lacks %q", w)
		}
	}
	if strings.Contains(v.body, "A123456789") || strings.Contains(v.body, "<script>alert") {
		t.Fatal("the page shows the full ID or unescaped data")
	}
	pdf := b.get("/view/content/2")
	if pdf.status != 200 || pdf.header.Get("Content-Type") != "application/pdf" || pdf.body != pdfBody ||
		!strings.Contains(pdf.header.Get("Content-Security-Policy"), "frame-ancestors 'self'") || pdf.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("pdf: %d %v", pdf.status, pdf.header)
	}
	// Only PDFs are served raw: JSON could otherwise be sniffed or framed as a page.
	if p := b.get("/view/content/0"); p.status != http.StatusNotFound {
		t.Fatalf("raw JSON: %d", p.status)
	}
	// Another staff member's session sees none of it.
	other := r.browser()
	other.login("bob")
	if p := other.get("/view"); p.loc != "/" {
		t.Fatal("another session reached this terminal's data")
	}
	if p := other.get("/view/content/2"); p.status != http.StatusNotFound {
		t.Fatal("another session read this terminal's PDF")
	}

	if p := b.post("/done", url.Values{"csrf": {csrf}}); p.status != http.StatusSeeOther || p.loc != "/" {
		t.Fatalf("done: %d", p.status)
	}
	if r.s.store.count() != 0 || heldBytes(t, r.reg) != 0 {
		t.Fatal("the store holds data after Done")
	}
	if !r.coll.allZero() {
		t.Fatal("the content was not overwritten")
	}
	if p := b.get("/view"); p.loc != "/" {
		t.Fatal("the data page after Done")
	}
	if p := b.get("/view/content/2"); p.status != http.StatusNotFound {
		t.Fatal("the PDF after Done")
	}
}

func TestPurgeAfterTTLAndLogout(t *testing.T) {
	r := newRig(t)
	b := r.browser()
	csrf := b.login("alice")
	b.redeem(csrf, "ABCD2345")
	for range 3 {
		r.clock.Add(10 * time.Minute)
		r.s.sweep()
		b.get("/view") // keeps the session alive, not the data
	}
	if r.s.store.count() != 0 || heldBytes(t, r.reg) != 0 || !r.coll.allZero() {
		t.Fatal("data outlived its TTL")
	}
	if p := b.get("/view"); p.loc != "/" {
		t.Fatal("the data page after the TTL")
	}

	r2 := newRig(t)
	b2 := r2.browser()
	csrf = b2.login("alice")
	b2.redeem(csrf, "ABCD2345")
	b2.post("/logout", url.Values{"csrf": {csrf}})
	if r2.s.store.count() != 0 || !r2.coll.allZero() {
		t.Fatal("data outlived logout")
	}

	// An idle session's data goes with it at the next sweep.
	r3 := newRig(t)
	b3 := r3.browser()
	b3.redeem(b3.login("alice"), "ABCD2345")
	r3.clock.Add(16 * time.Minute)
	r3.s.sweep()
	if r3.s.store.count() != 0 || !r3.coll.allZero() {
		t.Fatal("data outlived its idle session")
	}
}

func TestAgentPickup(t *testing.T) {
	r := newRig(t)
	r.hub.answer = func(hubapi.CounterRedeemRequest) (*hubapi.CounterRedeemResponse, error) {
		return r.okAnswer(&hubapi.CounterAgent{NationalID: "B220000000", Name: "陳代辦"}), nil
	}
	b := r.browser()
	csrf := b.login("alice")
	b.redeem(csrf, "ABCD2345")
	v := b.get("/view")
	for _, w := range []string{"Pickup by an agent", "陳代辦", "B220000000", `id="agent-checked"`, "I checked the agent&#39;s ID card"} {
		if !strings.Contains(v.body, w) {
			t.Errorf("the agent notice lacks %q", w)
		}
	}
	if strings.Contains(v.body, "PAYLOAD") || strings.Contains(v.body, `id="datasets"`) {
		t.Fatal("data shows before the agent's ID was checked")
	}
	if p := b.get("/view/content/2"); p.status != http.StatusNotFound {
		t.Fatal("the PDF before the agent's ID was checked")
	}
	if p := b.post("/agent", url.Values{"csrf": {csrf}}); p.status != http.StatusUnprocessableEntity || strings.Contains(p.body, "PAYLOAD") {
		t.Fatalf("unticked: %d", p.status)
	}
	if p := b.post("/agent", url.Values{"csrf": {csrf}, "checked": {"yes"}}); p.loc != "/view" {
		t.Fatalf("ticked: %d", p.status)
	}
	v = b.get("/view")
	if !strings.Contains(v.body, "PAYLOAD-HOUSEHOLD") || !strings.Contains(v.body, "陳代辦") || !strings.Contains(v.body, "has been checked") {
		t.Fatalf("after the check:\n%s", v.body)
	}
}

// TestRemovedAccount: taking an account out of the staff file ends its session and its data.
func TestRemovedAccount(t *testing.T) {
	r := newRig(t)
	b := r.browser()
	b.redeem(b.login("bob"), "ABCD2345")
	os.WriteFile(r.s.staff.path, []byte("alice:"+testHash+"\n"), 0o600)
	os.Chtimes(r.s.staff.path, time.Now().Add(time.Minute), time.Now().Add(time.Minute))
	if p := b.get("/view"); p.loc != "/login" {
		t.Fatalf("a removed account's session: %d %s", p.status, p.loc)
	}
	if r.s.store.count() != 0 || !r.coll.allZero() {
		t.Fatal("a removed account's data is still held")
	}
}

func TestChinese(t *testing.T) {
	r := newRig(t)
	b := r.browser()
	req, _ := http.NewRequest(http.MethodGet, r.srv.URL+"/login", nil)
	res, err := b.c.Do(req) // no Accept-Language
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), "櫃檯人員登入") || !strings.Contains(string(body), `lang="zh-Hant-TW"`) {
		t.Fatalf("no Chinese by default:\n%s", body)
	}
}
