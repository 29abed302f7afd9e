package cardsigner_test

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mydatafed/mydata/pkg/cardca"
	"github.com/mydatafed/mydata/pkg/cardsigner"
	"github.com/smallstep/pkcs7"
)

// The hub's certlogin verifies what the server signs in hub/internal/identity/certlogin's tests; here
// the SignedData is checked with pkcs7 alone.

const (
	portal    = "https://portal.mydata.test:8443"
	citizenID = "A123456789"
)

type env struct {
	srv    *httptest.Server
	signer *cardsigner.Server
	ca     *cardca.CA
}

func setup(t *testing.T, rsa bool, origins ...string) env {
	t.Helper()
	ca, err := cardca.New(cardca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	leaf, err := ca.IssueCitizen(cardca.CitizenOptions{NationalID: citizenID, RSA: rsa})
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath, err := leaf.WriteFiles(dir, "card")
	if err != nil {
		t.Fatal(err)
	}
	if len(origins) == 0 {
		origins = []string{portal}
	}
	s, err := cardsigner.New(certPath, keyPath, origins...)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return env{srv: srv, signer: s, ca: ca}
}

// signChallenge asks the server to sign challenge from origin and returns the answer.
func signChallenge(t *testing.T, e env, origin string, challenge []byte, detached bool) cardsigner.SignResponse {
	t.Helper()
	body, _ := json.Marshal(cardsigner.SignRequest{Challenge: base64.StdEncoding.EncodeToString(challenge), Detached: detached})
	resp := post(t, e.srv.URL+"/sign", origin, "application/json", string(body))
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != origin {
		t.Fatalf("status %s, ACAO %q", resp.Status, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	var out cardsigner.SignResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// verifySigned checks that out is a SignedData over challenge by a card that chains to e's root, and
// returns the signer's certificate.
func verifySigned(t *testing.T, e env, out cardsigner.SignResponse, challenge []byte) *x509.Certificate {
	t.Helper()
	der, err := base64.StdEncoding.DecodeString(out.SignedData)
	if err != nil {
		t.Fatal(err)
	}
	p7, err := pkcs7.Parse(der)
	if err != nil {
		t.Fatal(err)
	}
	if len(p7.Content) == 0 {
		p7.Content = challenge
	} else if !bytes.Equal(p7.Content, challenge) {
		t.Fatalf("signed content %q, want the challenge", p7.Content)
	}
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Root)
	if err := p7.VerifyWithChainAtTime(roots, e.ca.Now()); err != nil {
		t.Fatalf("the SignedData does not verify to the root: %v", err)
	}
	signer := p7.GetOnlySigner()
	if signer == nil || base64.StdEncoding.EncodeToString(signer.Raw) != out.Certificate {
		t.Fatal("the returned certificate is not the signer's")
	}
	return signer
}

func post(t *testing.T, url, origin, contentType, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name     string
		rsa      bool
		detached bool
	}{
		{"ECDSA attached", false, false},
		{"ECDSA detached", false, true},
		{"RSA attached", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t, tc.rsa)
			challenge := []byte("portal-challenge-0123456789")
			out := signChallenge(t, e, portal, challenge, tc.detached)
			der, _ := base64.StdEncoding.DecodeString(out.SignedData)
			if p7, err := pkcs7.Parse(der); err != nil || (len(p7.Content) == 0) != tc.detached {
				t.Fatalf("detached %v: content %d bytes (%v)", tc.detached, len(p7.Content), err)
			}
			if got := verifySigned(t, e, out, challenge); got.Subject.SerialNumber != citizenID {
				t.Fatalf("signed by %q", got.Subject.SerialNumber)
			}
		})
	}
}

// TestOrigins serves the portals of a hub cluster: each gets its own origin back, others are refused.
func TestOrigins(t *testing.T) {
	const other = "http://localhost:8081"
	e := setup(t, false, portal, other)
	for _, origin := range []string{portal, other} {
		verifySigned(t, e, signChallenge(t, e, origin, []byte("c"), false), []byte("c"))
	}
	good := `{"challenge":"YQ=="}`
	for _, origin := range []string{"", "http://evil.example", "http://127.0.0.1:8081"} {
		if resp := post(t, e.srv.URL+"/sign", origin, "application/json", good); resp.StatusCode != http.StatusForbidden {
			t.Errorf("Origin %q: status %s, want 403", origin, resp.Status)
		}
	}
	if got := e.signer.Origins(); len(got) != 2 || got[0] != portal || got[1] != other {
		t.Errorf("Origins() = %q", got)
	}
}

// TestInsert swaps the card in the reader while the server runs, and empties the reader.
func TestInsert(t *testing.T) {
	e := setup(t, false)
	leaf, err := e.ca.IssueCitizen(cardca.CitizenOptions{NationalID: "B220713459"})
	if err != nil {
		t.Fatal(err)
	}
	e.signer.Insert(&cardsigner.Card{Cert: leaf.Cert, Chain: leaf.Chain, Key: leaf.Key})
	if got := verifySigned(t, e, signChallenge(t, e, portal, []byte("c"), false), []byte("c")); got.Subject.SerialNumber != "B220713459" {
		t.Fatalf("signed by %q after the swap", got.Subject.SerialNumber)
	}
	e.signer.Insert(nil)
	if e.signer.Card() != nil {
		t.Fatal("the reader is not empty")
	}
	if resp := post(t, e.srv.URL+"/sign", portal, "application/json", `{"challenge":"YQ=="}`); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("empty reader: status %s, want 503", resp.Status)
	}
	s, err := cardsigner.NewServer(nil, portal)
	if err != nil || s.Card() != nil {
		t.Fatalf("NewServer with an empty reader: %v", err)
	}
}

func TestCORS(t *testing.T) {
	e := setup(t, false)
	good := `{"challenge":"` + base64.StdEncoding.EncodeToString([]byte("c")) + `"}`
	preflight := func(origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, e.srv.URL+"/sign", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type")
		req.Header.Set("Access-Control-Request-Private-Network", "true")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	t.Run("preflight from the portal", func(t *testing.T) {
		resp := preflight(portal)
		h := resp.Header
		if resp.StatusCode != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != portal ||
			h.Get("Access-Control-Allow-Private-Network") != "true" || !strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") ||
			!strings.Contains(strings.ToLower(h.Get("Access-Control-Allow-Headers")), "content-type") {
			t.Fatalf("status %s, headers %v", resp.Status, h)
		}
	})
	cases := []struct {
		name        string
		do          func() *http.Response
		wantStatus  int
		wantNoACAO  bool
		bodyContain string
	}{
		{"preflight from another origin", func() *http.Response { return preflight("https://evil.example") }, http.StatusForbidden, true, ""},
		{"preflight from the portal on another port", func() *http.Response { return preflight("https://portal.mydata.test:9443") }, http.StatusForbidden, true, ""},
		{"sign from another origin", func() *http.Response {
			return post(t, e.srv.URL+"/sign", "https://evil.example", "application/json", good)
		}, http.StatusForbidden, true, ""},
		{"sign without an origin", func() *http.Response { return post(t, e.srv.URL+"/sign", "", "application/json", good) }, http.StatusForbidden, true, ""},
		{"sign as a form post", func() *http.Response { return post(t, e.srv.URL+"/sign", portal, "text/plain", good) }, http.StatusUnsupportedMediaType, false, ""},
		{"bad base64", func() *http.Response {
			return post(t, e.srv.URL+"/sign", portal, "application/json", `{"challenge":"!!"}`)
		}, http.StatusBadRequest, false, ""},
		{"unknown field", func() *http.Response {
			return post(t, e.srv.URL+"/sign", portal, "application/json", `{"challenge":"YQ==","pin":"1234"}`)
		}, http.StatusBadRequest, false, ""},
		{"too large", func() *http.Response {
			return post(t, e.srv.URL+"/sign", portal, "application/json", `{"challenge":"`+strings.Repeat("A", 8<<10)+`"}`)
		}, http.StatusBadRequest, false, ""},
		{"what it is", func() *http.Response {
			resp, err := http.Get(e.srv.URL + "/")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { resp.Body.Close() })
			return resp
		}, http.StatusOK, true, "local signer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := tc.do()
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %s, want %d", resp.Status, tc.wantStatus)
			}
			if tc.wantNoACAO && resp.Header.Get("Access-Control-Allow-Origin") != "" {
				t.Fatalf("Access-Control-Allow-Origin %q on a refusal", resp.Header.Get("Access-Control-Allow-Origin"))
			}
			if tc.bodyContain != "" {
				b, _ := io.ReadAll(resp.Body)
				if !bytes.Contains(b, []byte(tc.bodyContain)) {
					t.Fatalf("body %q", b)
				}
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	ca, err := cardca.New(cardca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	a, err := ca.IssueCitizen(cardca.CitizenOptions{NationalID: citizenID})
	if err != nil {
		t.Fatal(err)
	}
	b, err := ca.IssueCitizen(cardca.CitizenOptions{NationalID: citizenID})
	if err != nil {
		t.Fatal(err)
	}
	aCert, aKey, err := a.WriteFiles(dir, "a")
	if err != nil {
		t.Fatal(err)
	}
	_, bKey, err := b.WriteFiles(dir, "b")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, cert, key, origin string }{
		{"origin with a path", aCert, aKey, portal + "/login"},
		{"origin without a scheme", aCert, aKey, "portal.mydata.test"},
		{"key of another certificate", aCert, bKey, portal},
		{"missing certificate", dir + "/none.pem", aKey, portal},
		{"key file is a certificate", aCert, aCert, portal},
		{"no origin", aCert, aKey, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := cardsigner.New(tc.cert, tc.key, tc.origin); err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
	if _, err := cardsigner.New(aCert, aKey); err == nil {
		t.Error("New accepted no origin at all")
	}
}
