package portal

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/pkg/hubapi"
)

func parRequest() hubapi.PARRequest {
	q, _ := url.ParseQuery(strings.TrimPrefix(authorizeURL("moi.household", nil), "/oauth/authorize?"))
	return hubapi.PARRequest{ClientID: q.Get("client_id"), ResponseType: "code", RedirectURI: q.Get("redirect_uri"), Scope: q.Get("scope"),
		State: q.Get("state"), CodeChallenge: q.Get("code_challenge"), CodeChallengeMethod: "S256"}
}

func TestPushedAuthorizationRequests(t *testing.T) {
	w := newWorld(t, "https://portal.test")
	ctx := context.Background()
	resp, perr := w.portal.PushRequest(ctx, "bank", "sp1", parRequest())
	if perr != nil {
		t.Fatal(perr)
	}
	if !strings.HasPrefix(resp.RequestURI, hubapi.PARRequestURIPrefix) || resp.ExpiresIn != 90 {
		t.Fatalf("response %+v", resp)
	}
	refusals := []struct {
		name      string
		org, conn string
		mutate    func(*hubapi.PARRequest)
		status    int
		code      string
	}{
		{"another connector", "moi", "dp1", nil, 401, "invalid_client"},
		{"unknown client", "bank", "sp1", func(r *hubapi.PARRequest) { r.ClientID = "evil.app" }, 401, "invalid_client"},
		{"unregistered redirect", "bank", "sp1", func(r *hubapi.PARRequest) { r.RedirectURI = "https://evil.example/cb" }, 400, "invalid_request"},
		{"no PKCE", "bank", "sp1", func(r *hubapi.PARRequest) { r.CodeChallenge = "" }, 400, "invalid_request"},
		{"foreign dataset", "bank", "sp1", func(r *hubapi.PARRequest) { r.Scope = "fia.income" }, 400, "invalid_scope"},
	}
	for _, tc := range refusals {
		req := parRequest()
		if tc.mutate != nil {
			tc.mutate(&req)
		}
		_, perr := w.portal.PushRequest(ctx, tc.org, tc.conn, req)
		if perr == nil || perr.Status != tc.status || perr.Message != tc.code {
			t.Errorf("%s: %+v, want %d %s", tc.name, perr, tc.status, tc.code)
		}
	}

	b := w.browser()
	b.lang = "en"
	b.login(alice, "nhi-card", "/history")
	ref := "/oauth/authorize?" + url.Values{"client_id": {"bank.loan"}, "request_uri": {resp.RequestURI}}.Encode()
	page := b.get(ref)
	if page.status != http.StatusOK || !strings.Contains(page.body, `id="approve"`) {
		t.Fatalf("authorize by request_uri: %d %s", page.status, page.body)
	}
	f := form(page.body, "/oauth/consent")
	f.Set("decision", "approve")
	r := b.post("/oauth/consent", f)
	loc, _ := url.Parse(r.location)
	if q := loc.Query(); q.Get("code") == "" || q.Get("state") != "s1" || q.Get("iss") != "https://portal.test" {
		t.Fatalf("the code's redirect: %s", r.location)
	}
	for name, u := range map[string]string{
		"another client":   "/oauth/authorize?" + url.Values{"client_id": {"other"}, "request_uri": {resp.RequestURI}}.Encode(),
		"tampered":         "/oauth/authorize?" + url.Values{"client_id": {"bank.loan"}, "request_uri": {resp.RequestURI + "x"}}.Encode(),
		"not ours":         "/oauth/authorize?" + url.Values{"client_id": {"bank.loan"}, "request_uri": {"https://evil.example/req"}}.Encode(),
		"two request_uris": ref + "&request_uri=" + url.QueryEscape(resp.RequestURI),
	} {
		if r := b.get(u); r.status != http.StatusBadRequest || !strings.Contains(r.body, `id="error"`) {
			t.Errorf("%s: %d %s", name, r.status, r.location)
		}
	}
	w.now = w.now.Add(91 * time.Second)
	if r := b.get(ref); r.status != http.StatusBadRequest || !strings.Contains(r.body, "expired") {
		t.Errorf("expired request_uri: %d", r.status)
	}

	// A service that requires PAR refuses a plain request on the portal, and takes a pushed one.
	w.now = time.Now()
	if err := w.apply(&fsm.ServiceAdd{Service: fsm.Service{ID: "bank.fapi", NameZh: "高安全服務", NameEn: "High-security service", SPOrg: "bank", SPConnector: "sp1",
		Modes: []string{"online"}, Datasets: []string{"moi.household"}, Purpose: "p", Terms: "t", TermsVersion: "1",
		RedirectURIs: []string{"https://bank.example/cb"}, RequirePAR: true}, Now: w.now}); err != nil {
		t.Fatal(err)
	}
	plain := strings.Replace(authorizeURL("moi.household", nil), "client_id=bank.loan", "client_id=bank.fapi", 1)
	if r := b.get(plain); r.status != http.StatusBadRequest || !strings.Contains(r.body, "PAR") || r.location != "" {
		t.Errorf("a plain request to a PAR-only service: %d %q", r.status, r.location)
	}
	req := parRequest()
	req.ClientID = "bank.fapi"
	resp, perr = w.portal.PushRequest(ctx, "bank", "sp1", req)
	if perr != nil {
		t.Fatal(perr)
	}
	if r := b.get("/oauth/authorize?" + url.Values{"client_id": {"bank.fapi"}, "request_uri": {resp.RequestURI}}.Encode()); !strings.Contains(r.body, `id="approve"`) {
		t.Errorf("a pushed request to a PAR-only service: %d", r.status)
	}
	// Not logged in: the login page learns the service and the level from the pushed request.
	fresh := w.browser()
	fresh.lang = "en"
	r = fresh.get("/oauth/authorize?" + url.Values{"client_id": {"bank.fapi"}, "request_uri": {resp.RequestURI}}.Encode())
	if login := fresh.get(r.location); !strings.Contains(login.body, "High-security service asks you to log in") {
		t.Errorf("the login page for a pushed request does not name the service: %s", login.body)
	}
}

func TestAuthorizationServerMetadata(t *testing.T) {
	w := newWorld(t, "https://portal.test")
	w.portal.cfg.APIURL = "https://hub.test:8443"
	r := w.browser().get("/.well-known/oauth-authorization-server")
	var md map[string]any
	if err := json.Unmarshal([]byte(r.body), &md); err != nil {
		t.Fatalf("%d %s", r.status, r.body)
	}
	for k, want := range map[string]any{
		"issuer": "https://portal.test", "authorization_endpoint": "https://portal.test/oauth/authorize",
		"pushed_authorization_request_endpoint": "https://hub.test:8443/v1/par", "token_endpoint": "https://hub.test:8443/v1/redeem",
		"authorization_response_iss_parameter_supported": true,
	} {
		if md[k] != want {
			t.Errorf("%s: %v, want %v", k, md[k], want)
		}
	}
	if s, _ := json.Marshal(md["code_challenge_methods_supported"]); string(s) != `["S256"]` {
		t.Errorf("PKCE methods %s", s)
	}
	if s, _ := json.Marshal(md["scopes_supported"]); !strings.Contains(string(s), "moi.household") {
		t.Errorf("scopes %s", s)
	}
}
