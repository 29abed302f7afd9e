package federationtest

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mydatafed/mydata/pkg/directory"
	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/openapitest"
	"github.com/mydatafed/mydata/pkg/pemfile"
	"github.com/mydatafed/mydata/pkg/seal"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// TestOpenAPIRealAnswers validates real answers of a running federation against the OpenAPI documents the
// processes serve: the SP connector's local API through a whole online exchange (delivered, streamed,
// content, no record, refusals), and the hub's connector-facing API as an SP connector calls it with its
// SVID (directory, keys, redemption, PAR, receipts, counter codes, enrollment), error answers included.
func TestOpenAPIRealAnswers(t *testing.T) {
	t.Parallel()
	f := startOnline(t)
	api := "http://" + f.bank.API
	plain := &http.Client{}
	connDoc := openapitest.Load(t, []byte(fetch(t, api+"/v1/openapi.yaml")))
	call := func(doc *openapitest.Doc, c *http.Client, method, url, body string, want int) []byte {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, b := doc.Do(t, c, req)
		if want != 0 && resp.StatusCode != want {
			t.Errorf("%s %s: %d %s, want %d", method, url, resp.StatusCode, b, want)
		}
		return b
	}
	exchange := func(code string, p PKCE) string {
		return fmt.Sprintf(`{"code":%q,"code_verifier":%q,"redirect_uri":%q}`, code, p.Verifier, f.redirect)
	}

	// The SP connector's local API.
	call(connDoc, plain, "GET", api+"/v1/openapi.yaml", "", 200)
	call(connDoc, plain, "POST", api+"/v1/login-hints", fmt.Sprintf(`{"client_id":"bank.card","subject":%q}`, citizenA), 200)
	p := NewPKCE()
	call(connDoc, plain, "POST", api+"/v1/par", fmt.Sprintf(`{"client_id":"bank.card","redirect_uri":%q,"scope":"moi.household","code_challenge":%q,"subject":%q}`,
		f.redirect, p.Challenge, citizenA), 201)
	call(connDoc, plain, "POST", api+"/v1/par", fmt.Sprintf(`{"client_id":"bank.card","redirect_uri":%q,"scope":"nope.nothing","code_challenge":%q}`,
		f.redirect, p.Challenge), 400)

	code, p := f.approve(t, citizenA, "moi.household fia.income")
	var ex struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(call(connDoc, plain, "POST", api+"/v1/exchanges", exchange(code, p), 200), &ex); err != nil || ex.ID == "" {
		t.Fatalf("exchange id: %v", err)
	}
	call(connDoc, plain, "POST", api+"/v1/exchanges", exchange(code, p), 400) // the code is spent
	call(connDoc, plain, "GET", api+"/v1/exchanges/"+ex.ID, "", 200)
	call(connDoc, plain, "GET", api+"/v1/exchanges/no-such-exchange", "", 404)
	if b := call(connDoc, plain, "GET", api+"/v1/exchanges/"+ex.ID+"/datasets/moi.household/content", "", 200); !strings.Contains(string(b), "PAYLOAD-HOUSEHOLD") {
		t.Errorf("content: %q", b)
	}
	call(connDoc, plain, "GET", api+"/v1/exchanges/"+ex.ID+"/datasets/moi.nothing/content", "", 404)

	code, p = f.approve(t, citizenA, "moi.household fia.income")
	if b := call(connDoc, plain, "POST", api+"/v1/exchanges/stream?dataset=fia.income", exchange(code, p), 200); !strings.Contains(string(b), "PAYLOAD-INCOME") {
		t.Errorf("streamed: %q", b)
	}
	code, p = f.approve(t, citizenA, "moi.household")
	call(connDoc, plain, "POST", api+"/v1/exchanges/stream?dataset=fia.income", exchange(code, p), 404)

	code, p = f.approve(t, citizenB, "moi.household fia.income")
	if err := json.Unmarshal(call(connDoc, plain, "POST", api+"/v1/exchanges", exchange(code, p), 200), &ex); err != nil {
		t.Fatal(err)
	}
	call(connDoc, plain, "GET", api+"/v1/exchanges/"+ex.ID+"/datasets/moi.household/content", "", 409) // no record

	// The hub's connector-facing API, as the SP connector calls it.
	hub := f.h.URL()
	withSVID, anon := hubHTTPClients(t, f.bank)
	resp, err := anon.Get(hub + "/v1/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	hubDoc := openapitest.Load(t, raw)
	call(hubDoc, anon, "GET", hub+"/v1/openapi.yaml", "", 200)
	call(hubDoc, anon, "GET", hub+"/v1/health", "", 200)
	call(hubDoc, anon, "GET", hub+"/v1/bundle", "", 200)
	var signed directory.Signed
	if err := json.Unmarshal(call(hubDoc, withSVID, "GET", hub+"/v1/directory", "", 200), &signed); err != nil {
		t.Fatal(err)
	}
	var doc directory.Document
	if err := json.Unmarshal(signed.Payload, &doc); err != nil {
		t.Fatal(err)
	}
	call(hubDoc, withSVID, "GET", fmt.Sprintf("%s/v1/directory?after=%d&wait=0s", hub, doc.Version), "", 304)
	call(hubDoc, withSVID, "GET", hub+"/v1/directory?after=x", "", 400)
	call(hubDoc, anon, "GET", hub+"/v1/directory", "", 401)
	for _, c := range doc.Connectors {
		if c.Org == f.bank.Org && c.Name == f.bank.Name {
			key, _ := json.Marshal(map[string]any{"kem": c.HPKEKEM, "public_key": c.HPKEKey})
			call(hubDoc, withSVID, "POST", hub+"/v1/keys", string(key), 204) // the key it has: no change
		}
	}
	call(hubDoc, withSVID, "POST", hub+"/v1/keys", `{"kem":1,"public_key":"AAAA"}`, 400)
	call(hubDoc, withSVID, "POST", hub+"/v1/renew", `{"csr":"AAAA"}`, 400)
	call(hubDoc, anon, "POST", hub+"/v1/renew", `{"csr":"AAAA"}`, 401)
	call(hubDoc, anon, "POST", hub+"/v1/enroll", `{"token":"mdj1.x.y","org":"bank","connector":"sp1","csr":"AAAA"}`, 0)

	recipient, err := seal.GenerateKey(seal.KEMHybrid)
	if err != nil {
		t.Fatal(err)
	}
	code, p = f.approve(t, citizenA, "moi.household fia.income")
	redeem, _ := json.Marshal(map[string]any{"client_id": "bank.card", "code": code, "code_verifier": p.Verifier, "redirect_uri": f.redirect,
		"recipient_kem": seal.KEMHybrid, "recipient_key": recipient.PublicKey().Bytes()})
	var redeemed struct {
		ConsentID string `json:"consent_id"`
		Tickets   []struct {
			Dataset  string `json:"dataset"`
			DP       string `json:"dp"`
			TicketID string `json:"ticket_id"`
		} `json:"tickets"`
	}
	if err := json.Unmarshal(call(hubDoc, withSVID, "POST", hub+"/v1/redeem", string(redeem), 200), &redeemed); err != nil || len(redeemed.Tickets) == 0 {
		t.Fatalf("redeemed: %+v %v", redeemed, err)
	}
	call(hubDoc, withSVID, "POST", hub+"/v1/redeem", string(redeem), 400) // spent
	call(hubDoc, withSVID, "POST", hub+"/v1/redeem", `{}`, 400)
	tk := redeemed.Tickets[0]
	receipt, _ := json.Marshal(map[string]any{"receipts": []map[string]any{{"ticket_id": tk.TicketID, "consent_id": redeemed.ConsentID, "dataset": tk.Dataset,
		"role": "sp", "counterpart": tk.DP, "outcome": "failed", "bytes": 0, "at": "2026-12-05T12:00:00Z"}}})
	call(hubDoc, withSVID, "POST", hub+"/v1/receipts", string(receipt), 200)
	call(hubDoc, withSVID, "POST", hub+"/v1/receipts", `{"receipts":[]}`, 400)
	p = NewPKCE()
	call(hubDoc, withSVID, "POST", hub+"/v1/par", fmt.Sprintf(`{"client_id":"bank.card","response_type":"code","redirect_uri":%q,"scope":"moi.household","code_challenge":%q,"code_challenge_method":"S256"}`,
		f.redirect, p.Challenge), 201)
	call(hubDoc, withSVID, "POST", hub+"/v1/par", `{}`, 401) // invalid_client: no client_id
	counter, _ := json.Marshal(map[string]any{"code": "ZZZZZZZZ", "terminal": "t-openapi", "recipient_kem": seal.KEMHybrid, "recipient_key": recipient.PublicKey().Bytes()})
	call(hubDoc, withSVID, "POST", hub+"/v1/counter/redeem", string(counter), 0)
}

// hubHTTPClients are HTTPS clients of the hub API that verify the hub's SVID: one that presents c's SVID,
// and one that presents none.
func hubHTTPClients(t *testing.T, c *Connector) (withSVID, without *http.Client) {
	t.Helper()
	svid, err := pemfile.ReadSVID(filepath.Join(c.DataDir(), "identity", "svid.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots, err := pemfile.ReadCertificates(filepath.Join(c.DataDir(), "identity", "bundle.crt"))
	if err != nil {
		t.Fatal(err)
	}
	td := spiffeid.RequireTrustDomainFromString(TrustDomain)
	bundle := x509bundle.FromX509Authorities(td, roots)
	hubOnly := fedid.Authorizer(td, fedid.KindHub, nil)
	mtls := tlsconfig.MTLSClientConfig(svid, bundle, hubOnly)
	anon := tlsconfig.TLSClientConfig(bundle, hubOnly)
	for _, c := range []*tls.Config{mtls, anon} {
		c.MinVersion = tls.VersionTLS13
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: mtls}}, &http.Client{Transport: &http.Transport{TLSClientConfig: anon}}
}
