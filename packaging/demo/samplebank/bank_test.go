package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
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

	"github.com/mydatafed/mydata/pkg/nationalid"
)

const (
	applicant     = "B220713459"
	applicantName = "陳怡君"
)

// fakeConnector plays the SP connector's local API: it seals nothing and fetches nothing, but checks
// what the application sends and answers as the real one does.
type fakeConnector struct {
	t        *testing.T
	mu       sync.Mutex
	hints    []map[string]string
	redeems  []map[string]string
	answer   exchange // returned by POST /v1/exchanges and GET /v1/exchanges/{id}
	status   int      // for POST /v1/exchanges, when not 200
	message  string
	srv      *httptest.Server
	verifier func(code, verifier string) bool
}

func newFakeConnector(t *testing.T) *fakeConnector {
	f := &fakeConnector{t: t}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/login-hints", func(w http.ResponseWriter, r *http.Request) {
		var req map[string]string
		json.NewDecoder(r.Body).Decode(&req)
		f.mu.Lock()
		f.hints = append(f.hints, req)
		f.mu.Unlock()
		if nationalid.Valid(req["subject"]) != nil {
			writeJSON(w, 400, map[string]string{"error": "subject: not a valid national ID"})
			return
		}
		writeJSON(w, 200, map[string]string{"login_hint": "kid1.SEALED-" + strings.Repeat("x", 20)})
	})
	mux.HandleFunc("POST /v1/exchanges", func(w http.ResponseWriter, r *http.Request) {
		var req map[string]string
		json.NewDecoder(r.Body).Decode(&req)
		f.mu.Lock()
		f.redeems = append(f.redeems, req)
		status, msg, answer, check := f.status, f.message, f.answer, f.verifier
		f.mu.Unlock()
		if check != nil && !check(req["code"], req["code_verifier"]) {
			writeJSON(w, 400, map[string]string{"error": "the hub refused the code: invalid_grant: PKCE verification failed"})
			return
		}
		if status != 0 {
			writeJSON(w, status, map[string]string{"error": msg})
			return
		}
		writeJSON(w, 200, answer)
	})
	mux.HandleFunc("GET /v1/exchanges/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		answer := f.answer
		f.mu.Unlock()
		if r.PathValue("id") != answer.ID {
			writeJSON(w, 404, map[string]string{"error": "no such exchange"})
			return
		}
		writeJSON(w, 200, answer)
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (f *fakeConnector) calls() (hints, redeems []map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]map[string]string(nil), f.hints...), append([]map[string]string(nil), f.redeems...)
}

func (f *fakeConnector) set(fn func(f *fakeConnector)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// testBank is the application under test with a fake connector, a log buffer and a browser.
type testBank struct {
	t    *testing.T
	bank *Bank
	srv  *httptest.Server
	conn *fakeConnector
	logs *bytes.Buffer

	clockMu sync.Mutex
	now     time.Time
}

func (tb *testBank) clock() time.Time {
	tb.clockMu.Lock()
	defer tb.clockMu.Unlock()
	return tb.now
}

func (tb *testBank) advance(d time.Duration) {
	tb.clockMu.Lock()
	defer tb.clockMu.Unlock()
	tb.now = tb.now.Add(d)
}

const hubPortal = "http://hub.test:8080"

func newTestBank(t *testing.T, mod func(*Config)) *testBank {
	t.Helper()
	tb := &testBank{t: t, conn: newFakeConnector(t), logs: &bytes.Buffer{}, now: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
	var logMu sync.Mutex
	cfg := Config{
		HubPortal: hubPortal, ConnectorAPI: tb.conn.srv.URL, ClientID: "demobank.card", RedirectURI: "http://bank.test/callback",
		Datasets: []string{"moi.household", "fia.income", "fia.property"}, BindCitizen: true,
		Log: slog.New(slog.NewTextHandler(lockedWriter{&logMu, tb.logs}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now: tb.clock,
	}
	if mod != nil {
		mod(&cfg)
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tb.bank = b
	tb.srv = httptest.NewServer(b)
	t.Cleanup(tb.srv.Close)
	t.Cleanup(func() {
		// The application never logs the national ID or the applicant's name.
		logMu.Lock()
		defer logMu.Unlock()
		for _, secret := range []string{applicant, applicantName} {
			if strings.Contains(tb.logs.String(), secret) {
				t.Errorf("the log holds %q:\n%s", secret, tb.logs)
			}
		}
	})
	return tb
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// browser is a client with its own cookie jar that stops at redirects.
func (tb *testBank) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type answer struct {
	status   int
	body     string
	location string
	header   http.Header
}

func (tb *testBank) do(c *http.Client, method, path string, form url.Values) answer {
	tb.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, tb.srv.URL+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		tb.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, string(b), resp.Header.Get("Location"), resp.Header}
}

// apply submits the form and returns the authorization request sent to the hub.
func (tb *testBank) apply(c *http.Client) url.Values {
	tb.t.Helper()
	a := tb.do(c, http.MethodPost, "/apply", url.Values{"name": {applicantName}, "national_id": {strings.ToLower(applicant)}})
	if a.status != http.StatusSeeOther || !strings.HasPrefix(a.location, hubPortal+"/oauth/authorize?") {
		tb.t.Fatalf("apply: %d %s\n%s", a.status, a.location, a.body)
	}
	u, _ := url.Parse(a.location)
	return u.Query()
}

func TestApplyStartsPKCEAuthorization(t *testing.T) {
	tb := newTestBank(t, nil)
	c := tb.browser()
	q := tb.apply(c)
	want := map[string]string{
		"response_type": "code", "client_id": "demobank.card", "redirect_uri": "http://bank.test/callback",
		"scope": "moi.household fia.income fia.property", "code_challenge_method": "S256",
	}
	for k, v := range want {
		if q.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, q.Get(k), v)
		}
	}
	if !regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`).MatchString(q.Get("code_challenge")) {
		t.Errorf("code_challenge %q is not a base64url SHA-256", q.Get("code_challenge"))
	}
	if len(q.Get("state")) < 22 {
		t.Errorf("state %q is too short to be unguessable", q.Get("state"))
	}
	if !strings.HasPrefix(q.Get("login_hint"), "kid1.SEALED-") {
		t.Errorf("login_hint %q is not the connector's", q.Get("login_hint"))
	}
	// The hint was asked for the typed ID, upper-cased, for this service.
	if hints, _ := tb.conn.calls(); len(hints) != 1 || hints[0]["subject"] != applicant || hints[0]["client_id"] != "demobank.card" {
		t.Errorf("login hint requests: %v", hints)
	}

	// The session cookie is random, HttpOnly and SameSite=Lax; the verifier stays on the server.
	u, _ := url.Parse(tb.srv.URL)
	cookies := c.Jar.Cookies(u)
	if len(cookies) != 1 || cookies[0].Name != cookieName || len(cookies[0].Value) < 40 {
		t.Fatalf("cookies: %v", cookies)
	}
	tb.bank.sessions.mu.Lock()
	sess := tb.bank.sessions.byID[cookies[0].Value]
	p, ok := sess.pending[q.Get("state")]
	tb.bank.sessions.mu.Unlock()
	if !ok || challengeS256(p.verifier) != q.Get("code_challenge") {
		t.Fatalf("the session does not hold the verifier of the challenge sent")
	}

	// A second application in the same browser gets its own state and verifier, and both stay valid.
	q2 := tb.apply(c)
	if q2.Get("state") == q.Get("state") || q2.Get("code_challenge") == q.Get("code_challenge") {
		t.Fatal("state or challenge reused")
	}
	tb.bank.sessions.mu.Lock()
	pending := len(sess.pending)
	tb.bank.sessions.mu.Unlock()
	if len(c.Jar.Cookies(u)) != 1 || pending != 2 {
		t.Fatalf("want one session with two pending authorizations, got %d cookies, %d pending", len(c.Jar.Cookies(u)), pending)
	}
}

func TestChallengeS256(t *testing.T) {
	// RFC 7636 appendix B.
	if got := challengeS256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"); got != "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM" {
		t.Fatalf("S256 of the RFC's verifier: %s", got)
	}
}

func TestApplyRefusesBadIDs(t *testing.T) {
	tb := newTestBank(t, nil)
	c := tb.browser()
	for _, tt := range []struct{ id, want string }{
		{"12345", "not a national ID"},
		{"B220713458", "check digit"}, // the connector checks it when it seals the hint
	} {
		a := tb.do(c, http.MethodPost, "/apply", url.Values{"name": {applicantName}, "national_id": {tt.id}})
		if a.status != http.StatusBadRequest || a.location != "" || !strings.Contains(a.body, tt.want) || !strings.Contains(a.body, `id="form-error"`) {
			t.Errorf("%s: %d %q\n%s", tt.id, a.status, a.location, a.body)
		}
	}
	if a := tb.do(c, http.MethodPost, "/apply", url.Values{"national_id": {applicant}}); a.status != http.StatusBadRequest {
		t.Errorf("no name: %d", a.status)
	}
}

func TestApplyWhenTheConnectorIsDown(t *testing.T) {
	tb := newTestBank(t, nil)
	tb.conn.srv.Close()
	a := tb.do(tb.browser(), http.MethodPost, "/apply", url.Values{"name": {applicantName}, "national_id": {applicant}})
	if a.status != http.StatusBadGateway || !strings.Contains(a.body, `data-error="connector_unavailable"`) {
		t.Fatalf("%d\n%s", a.status, a.body)
	}
}

func TestApplyWithoutBinding(t *testing.T) {
	tb := newTestBank(t, func(c *Config) { c.BindCitizen = false })
	q := tb.apply(tb.browser())
	if hints, _ := tb.conn.calls(); q.Has("login_hint") || len(hints) != 0 {
		t.Fatalf("a login hint without --bind-citizen: %v %v", q, hints)
	}
}

func sampleExchange() exchange {
	household, _ := os.ReadFile(filepath.Join("..", "data", "moi", "household", applicant+".json"))
	income, _ := os.ReadFile(filepath.Join("..", "data", "fia", "income", applicant+".json"))
	return exchange{ID: "ex-1", ConsentID: "consent-1", AAL: 2, LoginMethod: "nhi-card", State: "complete", Datasets: []exchangeDataset{
		{Dataset: "moi.household", Status: "delivered", ContentType: "application/json", Size: int64(len(household)), SHA256: "ab", Verified: true, Content: household},
		{Dataset: "fia.income", Status: "delivered", ContentType: "application/json", Size: int64(len(income)), SHA256: "cd", Verified: true, Content: income},
		{Dataset: "fia.property", Status: "no_record"},
	}}
}

func TestCallbackRedeemsTheCode(t *testing.T) {
	tb := newTestBank(t, nil)
	tb.conn.set(func(f *fakeConnector) { f.answer = sampleExchange() })
	c := tb.browser()
	q := tb.apply(c)
	// The hub would check the verifier against the challenge: so does the fake.
	tb.conn.set(func(f *fakeConnector) {
		f.verifier = func(code, v string) bool { return code == "the-code" && challengeS256(v) == q.Get("code_challenge") }
	})

	a := tb.do(c, http.MethodGet, "/callback?"+url.Values{"code": {"the-code"}, "state": {q.Get("state")}}.Encode(), nil)
	if a.status != http.StatusSeeOther || a.location != "/application/ex-1" {
		t.Fatalf("callback: %d %q\n%s", a.status, a.location, a.body)
	}
	_, redeems := tb.conn.calls()
	if r := redeems[0]; r["redirect_uri"] != "http://bank.test/callback" || r["client_id"] != "demobank.card" {
		t.Fatalf("redemption: %v", r)
	}
	if a.header.Get("Referrer-Policy") != "no-referrer" {
		t.Error("the callback page may leak the code as a referrer")
	}

	page := tb.do(c, http.MethodGet, "/application/ex-1", nil)
	if page.status != 200 {
		t.Fatalf("application: %d\n%s", page.status, page.body)
	}
	for _, want := range []string{
		`id="result" data-state="complete"`,
		`id="status-moi.household" data-status="delivered"`,
		`id="status-fia.income" data-status="delivered"`,
		`id="status-fia.property" data-status="no_record"`,
		"臺中市西屯區範例里12鄰範例街58巷6號", "陳建宏", "長女 Eldest daughter", // household
		"財團法人示範醫院 Demo Hospital", `<td class="num">612,000</td>`, `<td class="num">1,204</td>`, `<td class="num">2025</td>`, // income
		applicantName, "nhi-card",
		"MyData has sent us everything the agencies hold for you", // no record is an answer, not a failure
	} {
		if !strings.Contains(page.body, want) {
			t.Errorf("the application page lacks %q", want)
		}
	}
	if strings.Contains(page.body, `http-equiv="refresh"`) {
		t.Error("a complete application refreshes itself")
	}
	if page.header.Get("Cache-Control") != "no-store" {
		t.Error("a page with personal data may be cached")
	}

	// The state is spent: the same return again is refused without reaching the connector.
	again := tb.do(c, http.MethodGet, "/callback?"+url.Values{"code": {"the-code"}, "state": {q.Get("state")}}.Encode(), nil)
	if _, redeems := tb.conn.calls(); again.status != http.StatusBadRequest || !strings.Contains(again.body, `data-error="state_mismatch"`) || len(redeems) != 1 {
		t.Fatalf("replayed callback: %d, %d redemptions\n%s", again.status, len(redeems), again.body)
	}

	// Another browser cannot read the application.
	if other := tb.do(tb.browser(), http.MethodGet, "/application/ex-1", nil); other.status != http.StatusNotFound || strings.Contains(other.body, "陳建宏") {
		t.Fatalf("another browser read the application: %d", other.status)
	}
}

func TestCallbackStateChecks(t *testing.T) {
	tb := newTestBank(t, nil)
	tb.conn.set(func(f *fakeConnector) { f.answer = sampleExchange() })
	alice := tb.browser()
	q := tb.apply(alice)
	mallory := tb.browser()
	qm := tb.apply(mallory)
	tests := []struct {
		name   string
		client *http.Client
		query  url.Values
	}{
		{"no state", alice, url.Values{"code": {"c"}}},
		{"unknown state", alice, url.Values{"code": {"c"}, "state": {"forged"}}},
		{"another browser's state", alice, url.Values{"code": {"c"}, "state": {qm.Get("state")}}},
		{"no session cookie", tb.browser(), url.Values{"code": {"c"}, "state": {q.Get("state")}}},
		{"error with a forged state", alice, url.Values{"error": {"access_denied"}, "state": {"forged"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := tb.do(tt.client, http.MethodGet, "/callback?"+tt.query.Encode(), nil)
			if a.status != http.StatusBadRequest || !strings.Contains(a.body, `data-error="state_mismatch"`) {
				t.Fatalf("%d\n%s", a.status, a.body)
			}
		})
	}
	if _, redeems := tb.conn.calls(); len(redeems) != 0 {
		t.Fatalf("a code with a bad state reached the connector: %v", redeems)
	}
	// The failed tries spent nothing: alice's own return still works.
	if a := tb.do(alice, http.MethodGet, "/callback?"+url.Values{"code": {"c"}, "state": {q.Get("state")}}.Encode(), nil); a.status != http.StatusSeeOther {
		t.Fatalf("alice's callback after the forgeries: %d\n%s", a.status, a.body)
	}

	// A state expires with the hub's pending consent.
	q = tb.apply(alice)
	tb.advance(authTTL + time.Second)
	if a := tb.do(alice, http.MethodGet, "/callback?"+url.Values{"code": {"c"}, "state": {q.Get("state")}}.Encode(), nil); a.status != http.StatusBadRequest {
		t.Fatalf("expired state: %d", a.status)
	}
}

func TestCallbackErrors(t *testing.T) {
	tb := newTestBank(t, nil)
	c := tb.browser()
	tests := []struct {
		name, code, desc string
		shown            string // the page's data-error
		want             []string
	}{
		{"declined", "access_denied", "the citizen declined", "access_denied", []string{"You did not agree", "the citizen declined"}},
		{"bound to another citizen", "access_denied", "the request was bound to another citizen", "another_citizen", []string{"Another person logged in", "not the applicant"}},
		{"bad scope", "invalid_scope", "dataset x is not one the service registered", "invalid_scope", []string{"MyData refused our request", "dataset x"}},
		{"unknown error code", "weird_error", "", "weird_error", []string{"MyData could not complete your request"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := tb.apply(c)
			a := tb.do(c, http.MethodGet, "/callback?"+url.Values{"error": {tt.code}, "error_description": {tt.desc}, "state": {q.Get("state")}}.Encode(), nil)
			if a.status != http.StatusOK || !strings.Contains(a.body, `data-error="`+tt.shown+`"`) {
				t.Fatalf("%d\n%s", a.status, a.body)
			}
			for _, w := range tt.want {
				if !strings.Contains(a.body, w) {
					t.Errorf("the page lacks %q", w)
				}
			}
		})
	}
	if _, redeems := tb.conn.calls(); len(redeems) != 0 {
		t.Fatal("an error return reached the connector")
	}

	// No code and no error.
	q := tb.apply(c)
	if a := tb.do(c, http.MethodGet, "/callback?state="+q.Get("state"), nil); a.status != http.StatusBadRequest || !strings.Contains(a.body, "invalid_callback") {
		t.Fatalf("callback without code: %d", a.status)
	}

	// The connector refuses the code (expired, replayed, PKCE mismatch): a clear page, not a crash.
	tb.conn.set(func(f *fakeConnector) {
		f.status, f.message = 400, "the hub refused the code: invalid_grant: the code has expired"
	})
	q = tb.apply(c)
	a := tb.do(c, http.MethodGet, "/callback?"+url.Values{"code": {"old"}, "state": {q.Get("state")}}.Encode(), nil)
	if a.status != http.StatusBadGateway || !strings.Contains(a.body, `data-error="exchange_refused"`) || !strings.Contains(a.body, "the code has expired") {
		t.Fatalf("refused code: %d\n%s", a.status, a.body)
	}
}

func TestPendingApplicationRefreshes(t *testing.T) {
	tb := newTestBank(t, nil)
	ex := sampleExchange()
	ex.State = "in_progress"
	ex.Datasets[1] = exchangeDataset{Dataset: "fia.income", Status: "pending", RetryAfter: 20, Reason: "not ready"}
	tb.conn.set(func(f *fakeConnector) { f.answer = ex })
	c := tb.browser()
	q := tb.apply(c)
	tb.do(c, http.MethodGet, "/callback?"+url.Values{"code": {"c"}, "state": {q.Get("state")}}.Encode(), nil)
	page := tb.do(c, http.MethodGet, "/application/ex-1", nil)
	for _, want := range []string{`<meta http-equiv="refresh" content="3">`, `id="status-fia.income" data-status="pending"`, "Retrying", "retry in 20 s", `data-state="in_progress"`} {
		if !strings.Contains(page.body, want) {
			t.Errorf("the pending page lacks %q", want)
		}
	}

	// Delivered on the connector's retry: the next refresh shows it, and stops refreshing.
	tb.conn.set(func(f *fakeConnector) { f.answer = sampleExchange() })
	page = tb.do(c, http.MethodGet, "/application/ex-1", nil)
	if strings.Contains(page.body, "refresh") || !strings.Contains(page.body, `id="status-fia.income" data-status="delivered"`) {
		t.Fatalf("after delivery:\n%s", page.body)
	}

	// Failures show their reason; the connector forgetting the exchange is a clear "gone".
	ex = sampleExchange()
	ex.Datasets[1] = exchangeDataset{Dataset: "fia.income", Status: "failed", Reason: "data provider unreachable: timeout"}
	tb.conn.set(func(f *fakeConnector) { f.answer = ex })
	if page = tb.do(c, http.MethodGet, "/application/ex-1", nil); !strings.Contains(page.body, "data provider unreachable: timeout") || !strings.Contains(page.body, "a clerk will contact you") {
		t.Fatalf("failure reason not shown:\n%s", page.body)
	}
	tb.conn.set(func(f *fakeConnector) { f.answer = exchange{ID: "other"} })
	if page = tb.do(c, http.MethodGet, "/application/ex-1", nil); page.status != http.StatusGone {
		t.Fatalf("dropped exchange: %d", page.status)
	}
}

func TestSessionsExpire(t *testing.T) {
	tb := newTestBank(t, nil)
	c := tb.browser()
	q := tb.apply(c)
	tb.advance(sessionTTL + time.Minute)
	if a := tb.do(c, http.MethodGet, "/callback?"+url.Values{"code": {"c"}, "state": {q.Get("state")}}.Encode(), nil); a.status != http.StatusBadRequest {
		t.Fatalf("callback on an expired session: %d", a.status)
	}
	tb.bank.sessions.mu.Lock()
	defer tb.bank.sessions.mu.Unlock()
	if len(tb.bank.sessions.byID) != 0 {
		t.Fatalf("expired session kept")
	}
}

func TestRenderJSON(t *testing.T) {
	v, err := parseJSON([]byte(`{"z":1,"a":[{"amount":1450000,"payer":"<script>x</script>"},{"amount":-1234,"extra":true}],"year":2025,"list":["p","q"],"none":null,"empty":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	n := toNode("", v)
	var keys []string
	for _, f := range n.Fields {
		keys = append(keys, f.Label)
	}
	if strings.Join(keys, ",") != "z,a,年度 Year,list,none,empty" {
		t.Fatalf("keys out of order: %v", keys)
	}
	table := n.Fields[1].Value
	if table.Kind != "table" || strings.Join(table.Columns, ",") != "金額 Amount,給付單位 Payer,extra" || table.Rows[1][1].Text != "—" {
		t.Fatalf("array of objects: %+v", table)
	}
	if table.Rows[0][0].Text != "1,450,000" || table.Rows[1][0].Text != "-1,234" || n.Fields[2].Value.Text != "2025" {
		t.Fatalf("numbers: %q %q %q", table.Rows[0][0].Text, table.Rows[1][0].Text, n.Fields[2].Value.Text)
	}
	for _, bad := range []string{`{"a":`, `[1,2]x`, strings.Repeat("[", 40) + strings.Repeat("]", 40)} {
		if _, err := parseJSON([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}

	// Content is escaped in the page.
	tb := newTestBank(t, nil)
	ex := exchange{ID: "x", State: "complete", Datasets: []exchangeDataset{{Dataset: "fia.income", Status: "delivered", ContentType: "application/json",
		Content: []byte(`{"payer":"<script>alert(1)</script>"}`)}}}
	var buf bytes.Buffer
	if err := tb.bank.pages["application.html"].ExecuteTemplate(&buf, "application.html", map[string]any{"Title": "t", "A": buildView(&ex, "n")}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "<script>") || !strings.Contains(buf.String(), "&lt;script&gt;") {
		t.Fatal("dataset content not escaped")
	}
}

func TestNewChecksConfig(t *testing.T) {
	good := Config{HubPortal: "http://127.0.0.1:8080", ConnectorAPI: "http://127.0.0.1:8442", ClientID: "demobank.card",
		RedirectURI: "http://127.0.0.1:8000/callback", Datasets: []string{"moi.household"}}
	if _, err := New(good); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Config){
		"hub portal":    func(c *Config) { c.HubPortal = "127.0.0.1:8080" },
		"connector api": func(c *Config) { c.ConnectorAPI = "" },
		"redirect path": func(c *Config) { c.RedirectURI = "http://127.0.0.1:8000/other" },
		"client id":     func(c *Config) { c.ClientID = "" },
		"datasets":      func(c *Config) { c.Datasets = nil },
	} {
		c := good
		mod(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestSampleData checks the demo's synthetic citizens: valid national IDs, the same five citizens at both
// agencies, income items that add up to each year's total, and exactly one citizen without property.
func TestSampleData(t *testing.T) {
	data := filepath.Join("..", "data")
	citizens := func(dir string) []string {
		files, err := filepath.Glob(filepath.Join(data, dir, "*.json"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: %v %v", dir, files, err)
		}
		var ids []string
		for _, f := range files {
			id := strings.TrimSuffix(filepath.Base(f), ".json")
			if err := nationalid.Valid(id); err != nil {
				t.Errorf("%s: %v", f, err)
			}
			b, _ := os.ReadFile(f)
			if _, err := parseJSON(b); err != nil {
				t.Errorf("%s: %v", f, err)
			}
			ids = append(ids, id)
		}
		return ids
	}
	household, income := citizens("moi/household"), citizens("fia/income")
	if strings.Join(household, ",") != strings.Join(income, ",") || len(household) != 5 {
		t.Fatalf("household %v, income %v", household, income)
	}
	for _, id := range household {
		var h struct {
			Members []struct {
				NationalID string `json:"national_id"`
			} `json:"members"`
		}
		b, _ := os.ReadFile(filepath.Join(data, "moi", "household", id+".json"))
		json.Unmarshal(b, &h)
		found := false
		for _, m := range h.Members {
			if err := nationalid.Valid(m.NationalID); err != nil {
				t.Errorf("%s: member %s: %v", id, m.NationalID, err)
			}
			found = found || m.NationalID == id
		}
		if !found {
			t.Errorf("%s is not a member of their own household", id)
		}

		var in struct {
			Years []struct {
				Year  int   `json:"year"`
				Total int64 `json:"total"`
				Items []struct {
					Amount int64 `json:"amount"`
				} `json:"items"`
			} `json:"years"`
		}
		b, _ = os.ReadFile(filepath.Join(data, "fia", "income", id+".json"))
		json.Unmarshal(b, &in)
		for _, y := range in.Years {
			var sum int64
			for _, it := range y.Items {
				sum += it.Amount
			}
			if sum != y.Total {
				t.Errorf("%s %d: items add up to %d, total says %d", id, y.Year, sum, y.Total)
			}
		}
	}
	sqlText, err := os.ReadFile(filepath.Join(data, "fia", "property.sql"))
	if err != nil {
		t.Fatal(err)
	}
	owners := map[string]bool{}
	for _, m := range regexp.MustCompile(`\('([A-Z][0-9]{9})',`).FindAllStringSubmatch(string(sqlText), -1) {
		owners[m[1]] = true
	}
	var without []string
	for _, id := range household {
		if !owners[id] {
			without = append(without, id)
		}
	}
	if len(owners) != 4 || strings.Join(without, ",") != applicant {
		t.Fatalf("owners %v; without property %v, want only %s", owners, without, applicant)
	}
}
