package federationtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const (
	citizenA = "A123456789"
	citizenB = "B220000000" // another valid national ID
)

// onlineFederation is a hub, two DPs and a bank SP with a credit-card service asking for two datasets.
type onlineFederation struct {
	h        *Hub
	moi, fia *Connector
	bank     *Connector
	redirect string
	fiaDir   string
}

func startOnline(t *testing.T) *onlineFederation {
	t.Helper()
	f := &onlineFederation{redirect: "http://127.0.0.1:9/callback"}
	f.h = StartHub(t, HubOptions{})
	household := fmt.Sprintf(`{"household":"PAYLOAD-HOUSEHOLD-%s","members":["%s"]}`, citizenA, citizenA)
	f.moi = f.h.AddConnector("moi", "dp1", ConnectorOptions{Roles: "dp", Extra: DatasetsYAML(FileDataset(t, "moi.household", map[string]string{citizenA: household}))})
	f.fiaDir = t.TempDir()
	os.WriteFile(filepath.Join(f.fiaDir, citizenA+".json"), []byte(`{"income":"PAYLOAD-INCOME-1234567"}`), 0o644)
	f.fia = f.h.AddConnector("fia", "dp2", ConnectorOptions{Roles: "dp", Extra: fmt.Sprintf("datasets:\n  fia.income:\n    backend:\n      type: file\n      file:\n        dir: %s\n", f.fiaDir)})
	f.bank = f.h.AddConnector("bank", "sp1", ConnectorOptions{Roles: "sp"})
	for _, c := range []*Connector{f.moi, f.fia, f.bank} {
		if _, err := c.Enroll(f.h.Token(c.Org, c.Name)); err != nil {
			t.Fatal(err)
		}
		c.Start()
	}
	f.h.Admin("dataset", "add", "--id", "moi.household", "--name-zh", "戶籍資料", "--name-en", "Household registration", "--dp", "moi/dp1", "--min-aal", "2")
	f.h.Admin("dataset", "add", "--id", "fia.income", "--name-zh", "所得資料", "--name-en", "Income", "--dp", "fia/dp2", "--min-aal", "2")
	f.h.Admin("service", "add", "--id", "bank.card", "--name-zh", "信用卡申辦", "--name-en", "Credit card application", "--sp", "bank/sp1",
		"--datasets", "moi.household,fia.income", "--purpose", "Check identity and income for a credit card", "--terms", "Terms of the card",
		"--terms-version", "3", "--redirect-uri", f.redirect)
	// The DPs publish their HPKE keys once they run; wait until the hub has them, or tickets cannot be made.
	Eventually(t, 10*time.Second, "DP keys published", func() error {
		out := f.h.Admin("--json", "connector", "list")
		if strings.Count(out, `"hpke_key"`) < 3 {
			return fmt.Errorf("keys so far: %d", strings.Count(out, `"hpke_key"`))
		}
		return nil
	})
	return f
}

func (f *onlineFederation) approve(t *testing.T, subject string, scope string) (code string, p PKCE) {
	c := f.h.NewCitizen()
	c.Login(subject, "nhi-card")
	p = NewPKCE()
	return c.Approve(f.h.AuthorizeURL("bank.card", f.redirect, scope, "st-1", p, nil)), p
}

func TestOnlineExchange(t *testing.T) {
	t.Parallel()
	f := startOnline(t)
	citizen := f.h.NewCitizen()
	p := NewPKCE()
	authURL := f.h.AuthorizeURL("bank.card", f.redirect, "moi.household fia.income", "xyz", p, nil)

	// Not logged in: the hub asks for a login at the level the datasets need.
	if page := citizen.GetFollow(authURL); page.Status != 200 || !strings.Contains(page.Body, `id="subject"`) {
		t.Fatalf("authorize without a session: %d %s", page.Status, page.Body)
	}
	// A weak login is not enough for datasets that need level 2.
	citizen.Login(citizenA, "otp")
	if page := citizen.GetFollow(authURL); !strings.Contains(page.Body, `id="stepup"`) || !strings.Contains(page.Body, "this request needs medium or higher") {
		t.Fatalf("a level-1 login reached the consent page:\n%s", page.Body)
	}
	citizen.Login(citizenA, "nhi-card")
	page := citizen.Get(authURL)
	for _, want := range []string{"Credit card application", "Check identity and income", "Terms of the card", "version 3", "Household registration", "Income", "Test agency moi"} {
		if !strings.Contains(page.Body, want) {
			t.Errorf("consent page lacks %q", want)
		}
	}
	u := citizen.Decide(page, true)
	if u.Query().Get("state") != "xyz" || !strings.HasPrefix(u.String(), f.redirect+"?") {
		t.Fatalf("redirect %s", u)
	}
	code := u.Query().Get("code")

	// The consent page is decided once; its signed request cannot be edited or posted by someone else.
	form, err := ConsentForm(page.Body)
	if err != nil {
		t.Fatal(err)
	}
	form.Set("decision", "deny")
	if r := citizen.Post("/oauth/consent", form); r.Status != http.StatusConflict || !strings.Contains(r.Body, "already decided") {
		t.Fatalf("the same consent page decided twice: %d %s", r.Status, r.Body)
	}
	edited := url.Values{"pending": {form.Get("pending") + "x"}, "csrf": form["csrf"], "decision": {"approve"}}
	if r := citizen.Post("/oauth/consent", edited); r.Status != http.StatusForbidden {
		t.Fatalf("an edited consent request: %d %s", r.Status, r.Body)
	}
	other := f.h.NewCitizen()
	other.Login(citizenB, "nhi-card")
	if r := other.Post("/oauth/consent", form); r.Status != http.StatusForbidden {
		t.Fatalf("another citizen posted this citizen's consent page: %d %s", r.Status, r.Body)
	}

	res, status, body := f.bank.Exchange(code, p.Verifier, f.redirect)
	if status != 200 {
		t.Fatalf("exchange: %d %s", status, body)
	}
	if res.AAL != 2 || res.LoginMethod != "nhi-card" || res.State != "complete" {
		t.Fatalf("exchange: %+v", res)
	}
	st, _, content := res.Dataset(t, "moi.household")
	if st != "delivered" || !bytes.Contains(content, []byte("PAYLOAD-HOUSEHOLD-"+citizenA)) {
		t.Fatalf("household: %s %q", st, content)
	}
	st, _, content = res.Dataset(t, "fia.income")
	if st != "delivered" || !bytes.Contains(content, []byte("PAYLOAD-INCOME-1234567")) {
		t.Fatalf("income: %s %q", st, content)
	}

	// The code is single use.
	if _, status, body := f.bank.Exchange(code, p.Verifier, f.redirect); status != 400 || !strings.Contains(body, "invalid_grant") {
		t.Fatalf("replayed code: %d %s", status, body)
	}

	// Every transfer is in both audit logs, which verify, and in the citizen's history.
	for _, c := range []*Connector{f.moi, f.fia, f.bank} {
		if out, err := c.Audit("verify"); err != nil || !strings.Contains(out, "chain intact") {
			t.Fatalf("%s audit verify: %v %s", c.Name, err, out)
		}
		out, err := c.Audit("export")
		if err != nil || !strings.Contains(out, res.ConsentID) || !strings.Contains(out, `"outcome":"delivered"`) {
			t.Fatalf("%s audit export lacks the transfer: %v\n%s", c.Name, err, out)
		}
		if strings.Contains(out, citizenA) {
			t.Fatalf("%s audit log holds the raw national ID", c.Name)
		}
		if !regexp.MustCompile(`"subject":"[0-9a-f]{16,}"`).MatchString(out) {
			t.Fatalf("%s audit log has no subject hash:\n%s", c.Name, out)
		}
	}
	Eventually(t, 15*time.Second, "four receipts in the citizen's history", func() error {
		h := citizen.Get("/history").Body
		if n := strings.Count(h, `class="receipt"`); n != 4 {
			return fmt.Errorf("%d receipts", n)
		}
		return nil
	})

	// No byte of the payloads reaches the hub's disk.
	for path, b := range f.h.HubFiles(t) {
		for _, marker := range []string{"PAYLOAD-HOUSEHOLD", "PAYLOAD-INCOME"} {
			if bytes.Contains(b, []byte(marker)) {
				t.Fatalf("payload %s found in hub file %s", marker, path)
			}
		}
	}
}

func TestAuthorizeErrors(t *testing.T) {
	t.Parallel()
	f := startOnline(t)
	c := f.h.NewCitizen()
	c.Login(citizenA, "moica")
	p := NewPKCE()
	good := url.Values{"response_type": {"code"}, "client_id": {"bank.card"}, "redirect_uri": {f.redirect}, "scope": {"moi.household"},
		"state": {"s"}, "code_challenge": {p.Challenge}, "code_challenge_method": {"S256"}}
	with := func(k, v string) string {
		q := url.Values{}
		for kk, vv := range good {
			q[kk] = vv
		}
		if v == "" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
		return "/oauth/authorize?" + q.Encode()
	}
	tests := []struct {
		name      string
		url       string
		errorPage string // shown, never redirected
		redirect  string // error code sent back to the client
	}{
		{"unknown client", with("client_id", "evil.app"), "Unknown service", ""},
		{"redirect URI mismatch", with("redirect_uri", "http://127.0.0.1:9/other"), "did not register the return address", ""},
		{"redirect URI prefix", with("redirect_uri", f.redirect+"/../x"), "did not register the return address", ""},
		{"scope not in the service", with("scope", "moi.household moi.secret"), "", "invalid_scope"},
		{"no scope", with("scope", ""), "", "invalid_scope"},
		{"plain PKCE", with("code_challenge_method", "plain"), "", "invalid_request"},
		{"no PKCE", with("code_challenge", ""), "", "invalid_request"},
		{"token flow", with("response_type", "token"), "", "unsupported_response_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page := c.Get(tt.url)
			if tt.errorPage != "" {
				if page.Status != 400 || page.Location != "" || !strings.Contains(page.Body, tt.errorPage) {
					t.Fatalf("want an error page with %q, got %d %q %s", tt.errorPage, page.Status, page.Location, page.Body)
				}
				return
			}
			u, _ := url.Parse(page.Location)
			if page.Status != 302 || u.Query().Get("error") != tt.redirect || u.Query().Get("state") != "s" || !strings.HasPrefix(page.Location, f.redirect) {
				t.Fatalf("want a redirect with %s, got %d %s", tt.redirect, page.Status, page.Location)
			}
		})
	}

	// Denial redirects with access_denied.
	page := c.Get(with("state", "d"))
	u := c.Decide(page, false)
	if u.Query().Get("error") != "access_denied" || u.Query().Get("state") != "d" {
		t.Fatalf("denial: %s", u)
	}

	// PKCE mismatch and redirect mismatch at redemption.
	code, _ := f.approve(t, citizenA, "moi.household")
	if _, status, body := f.bank.Exchange(code, NewPKCE().Verifier, f.redirect); status != 400 || !strings.Contains(body, "PKCE") {
		t.Fatalf("PKCE mismatch: %d %s", status, body)
	}
	code, p2 := f.approve(t, citizenA, "moi.household")
	if _, status, body := f.bank.Exchange(code, p2.Verifier, "http://127.0.0.1:9/elsewhere"); status != 400 || !strings.Contains(body, "redirect_uri") {
		t.Fatalf("redirect mismatch at redemption: %d %s", status, body)
	}
	// A failed redemption does not spend the consent.
	if res, status, body := f.bank.Exchange(code, p2.Verifier, f.redirect); status != 200 || res.State != "complete" {
		t.Fatalf("redemption after a refused one: %d %s", status, body)
	}
}

func TestPartialDelivery(t *testing.T) {
	t.Parallel()
	f := startOnline(t)

	// The income agency's system is slow for a moment: pending, then delivered on retry.
	retry := filepath.Join(f.fiaDir, citizenA+".json.retry")
	os.WriteFile(retry, []byte("1"), 0o644)
	code, p := f.approve(t, citizenA, "moi.household fia.income")
	res, status, body := f.bank.Exchange(code, p.Verifier, f.redirect)
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	if st, _, _ := res.Dataset(t, "moi.household"); st != "delivered" {
		t.Fatalf("household %s", st)
	}
	if st, _, _ := res.Dataset(t, "fia.income"); st != "pending" || res.State != "in_progress" {
		t.Fatalf("income should be pending: %s (%s)", st, res.State)
	}
	os.Remove(retry)
	Eventually(t, 10*time.Second, "pending dataset delivered on retry", func() error {
		r := f.bank.GetExchange(res.ID)
		if st, _, _ := r.Dataset(t, "fia.income"); st != "delivered" || r.State != "complete" {
			return fmt.Errorf("income %s, exchange %s", st, r.State)
		}
		return nil
	})

	// No record for a citizen the agency does not know.
	code, p = f.approve(t, citizenB, "moi.household fia.income")
	res, _, _ = f.bank.Exchange(code, p.Verifier, f.redirect)
	for _, ds := range []string{"moi.household", "fia.income"} {
		if st, _, _ := res.Dataset(t, ds); st != "no_record" {
			t.Fatalf("%s for an unknown citizen: %s", ds, st)
		}
	}

	// A dataset under maintenance: the consent page says so, and the SP gets a clear status.
	f.h.Admin("dataset", "maintenance", "--id", "fia.income")
	c := f.h.NewCitizen()
	c.Login(citizenA, "nhi-card")
	p = NewPKCE()
	page := c.Get(f.h.AuthorizeURL("bank.card", f.redirect, "moi.household fia.income", "m", p, nil))
	if !strings.Contains(page.Body, "Under maintenance") {
		t.Fatal("consent page does not show the maintenance")
	}
	code = c.Decide(page, true).Query().Get("code")
	res, _, _ = f.bank.Exchange(code, p.Verifier, f.redirect)
	if st, reason, _ := res.Dataset(t, "fia.income"); st != "unavailable" || !strings.Contains(reason, "maintenance") {
		t.Fatalf("maintenance: %s %s", st, reason)
	}
	f.h.Admin("dataset", "activate", "--id", "fia.income")

	// The income DP connector is down: that dataset fails clearly, the other is delivered, and the SP's
	// audit log and the hub both record the failure.
	f.fia.Stop()
	code, p = f.approve(t, citizenA, "moi.household fia.income")
	res, _, _ = f.bank.Exchange(code, p.Verifier, f.redirect)
	if st, _, _ := res.Dataset(t, "moi.household"); st != "delivered" {
		t.Fatalf("household with the other DP down: %s", st)
	}
	st, reason, _ := res.Dataset(t, "fia.income")
	if st != "failed" || !strings.Contains(reason, "data provider unreachable") {
		t.Fatalf("income with its DP down: %s %s", st, reason)
	}
	out, _ := f.bank.Audit("export")
	if !strings.Contains(out, `"outcome":"failed"`) || !strings.Contains(out, "fia.income") {
		t.Fatalf("SP audit lacks the failure:\n%s", out)
	}
	history := c.Get("/history").Body
	Eventually(t, 15*time.Second, "the failure reaches the citizen's history", func() error {
		history = c.Get("/history").Body
		if !strings.Contains(history, `data-receipt-outcome="failed"`) {
			return fmt.Errorf("no failed receipt yet")
		}
		return nil
	})
}

func TestLoginHintBindsTheCitizen(t *testing.T) {
	t.Parallel()
	f := startOnline(t)
	// The SP seals the citizen it expects to the hub's HPKE key from the directory.
	hint := sealLoginHint(t, f.bank, "bank.card", citizenA)
	p := NewPKCE()
	authURL := f.h.AuthorizeURL("bank.card", f.redirect, "moi.household", "h", p, url.Values{"login_hint": {hint}})
	other := f.h.NewCitizen()
	other.Login(citizenB, "nhi-card")
	page := other.Get(authURL)
	if page.Status != http.StatusForbidden || !strings.Contains(page.Body, "another citizen") {
		t.Fatalf("another citizen reached the consent page: %d", page.Status)
	}
	right := f.h.NewCitizen()
	right.Login(citizenA, "nhi-card")
	code := right.Approve(authURL)
	if res, status, body := f.bank.Exchange(code, p.Verifier, f.redirect); status != 200 || res.State != "complete" {
		t.Fatalf("bound exchange: %d %s", status, body)
	}
	bad := f.h.AuthorizeURL("bank.card", f.redirect, "moi.household", "h", p, url.Values{"login_hint": {"nope.AAAA"}})
	if page := right.Get(bad); page.Status != 302 || !strings.Contains(page.Location, "invalid_request") {
		t.Fatalf("forged hint: %d %s", page.Status, page.Location)
	}

	// The same through a pushed request (RFC 9126): the bank's connector pushes it over its mutual TLS,
	// with the citizen it expects, and the browser carries only the reference.
	f.h.Admin("service", "add", "--id", "bank.fapi", "--name-zh", "高安全申辦", "--name-en", "High-security application", "--sp", "bank/sp1",
		"--datasets", "moi.household", "--purpose", "p", "--terms", "t", "--terms-version", "1", "--redirect-uri", f.redirect, "--require-par")
	p = NewPKCE()
	status, out := pushRequest(t, f.bank, map[string]string{"client_id": "bank.fapi", "redirect_uri": f.redirect, "scope": "moi.household",
		"state": "par", "code_challenge": p.Challenge, "subject": citizenA})
	if status != http.StatusCreated || !strings.HasPrefix(out["request_uri"], "urn:ietf:params:oauth:request_uri:") {
		t.Fatalf("push: %d %v", status, out)
	}
	byRef := "/oauth/authorize?" + url.Values{"client_id": {"bank.fapi"}, "request_uri": {out["request_uri"]}}.Encode()
	if page := other.Get(byRef); page.Status != http.StatusForbidden || !strings.Contains(page.Body, "another citizen") {
		t.Fatalf("another citizen with the pushed request: %d", page.Status)
	}
	u := right.Decide(right.Get(byRef), true)
	if u.Query().Get("state") != "par" || u.Query().Get("iss") != f.h.PortalURL() {
		t.Fatalf("redirect after a pushed request: %s", u)
	}
	if res, status, body := f.bank.Exchange(u.Query().Get("code"), p.Verifier, f.redirect); status != 200 || res.State != "complete" {
		t.Fatalf("exchange after a pushed request: %d %s", status, body)
	}
	// The service takes nothing else; another service's connector cannot push for it.
	if page := right.Get(f.h.AuthorizeURL("bank.fapi", f.redirect, "moi.household", "x", p, nil)); page.Status != http.StatusBadRequest || page.Location != "" {
		t.Fatalf("a plain request to a PAR-only service: %d %s", page.Status, page.Location)
	}
	if status, out := pushRequest(t, f.moi, map[string]string{"client_id": "bank.fapi", "redirect_uri": f.redirect, "scope": "moi.household",
		"code_challenge": p.Challenge}); status != http.StatusUnauthorized || out["error"] != "invalid_client" {
		t.Fatalf("the moi connector pushing for the bank: %d %v", status, out)
	}
}

// pushRequest asks a connector's local API to push an authorization request.
func pushRequest(t *testing.T, c *Connector, req map[string]string) (int, map[string]string) {
	t.Helper()
	body, _ := json.Marshal(req)
	resp, err := http.Post("http://"+c.API+"/v1/par", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]string{}
	var raw map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatalf("push answer: %d %v", resp.StatusCode, err)
	}
	for k, v := range raw {
		out[k] = fmt.Sprint(v)
	}
	return resp.StatusCode, out
}

// sealLoginHint asks the SP connector's local API to seal a login hint.
func sealLoginHint(t *testing.T, sp *Connector, clientID, subject string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"client_id": clientID, "subject": subject})
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://"+sp.API+"/v1/login-hints", bytes.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		LoginHint string `json:"login_hint"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || out.LoginHint == "" {
		t.Fatalf("login hint: %d %v", resp.StatusCode, err)
	}
	return out.LoginHint
}
