package localsigner_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mydatafed/mydata/hub/internal/identity/certlogin"
	"github.com/mydatafed/mydata/hub/internal/identity/certlogin/localsigner"
	"github.com/mydatafed/mydata/pkg/cardca"
)

const (
	portal    = "https://portal.mydata.test:8443"
	citizenID = "A123456789"
)

type env struct {
	srv *httptest.Server
	v   *certlogin.Verifier
}

func setup(t *testing.T, rsa bool) env {
	t.Helper()
	ca, err := cardca.New(cardca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files, err := ca.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.IssueCitizen(cardca.CitizenOptions{NationalID: citizenID, RSA: rsa})
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath, err := leaf.WriteFiles(dir, "card")
	if err != nil {
		t.Fatal(err)
	}
	h, err := localsigner.New(certPath, keyPath, portal)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	v, err := certlogin.New(certlogin.Config{
		ID:          "moica",
		Roots:       []string{files.Root},
		CRLs:        []string{files.CRLPEM},
		SubjectRule: certlogin.SubjectRule{Kind: certlogin.SubjectAttribute},
	}, nil, ca.Now)
	if err != nil {
		t.Fatal(err)
	}
	return env{srv: srv, v: v}
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
			challenge := certlogin.NewChallenge()
			body, _ := json.Marshal(localsigner.SignRequest{
				Challenge: base64.StdEncoding.EncodeToString(challenge), Detached: tc.detached})
			resp := post(t, e.srv.URL+"/sign", portal, "application/json", string(body))
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != portal {
				t.Fatalf("status %s, ACAO %q", resp.Status, resp.Header.Get("Access-Control-Allow-Origin"))
			}
			var out localsigner.SignResponse
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
				t.Fatal(err)
			}
			der, err := base64.StdEncoding.DecodeString(out.SignedData)
			if err != nil {
				t.Fatal(err)
			}
			proof, err := e.v.Verify(context.Background(), der, challenge, citizenID)
			if err != nil {
				t.Fatal(err)
			}
			if got := base64.StdEncoding.EncodeToString(proof.Certificate.Raw); got != out.Certificate {
				t.Fatal("the returned certificate is not the signer's")
			}
			// The same signature does not log in with another challenge.
			if _, err := e.v.Verify(context.Background(), der, certlogin.NewChallenge(), citizenID); !errors.Is(err, certlogin.ErrChallenge) {
				t.Fatalf("replay with a new challenge: %v", err)
			}
		})
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
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := localsigner.New(tc.cert, tc.key, tc.origin); err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
}
