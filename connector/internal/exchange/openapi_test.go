package exchange

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/openapitest"
	"github.com/mydatafed/mydata/pkg/seal"
	"github.com/prometheus/client_golang/prometheus"
)

// TestOpenAPIRoutes holds openapi.yaml and the routes NewAPI registers to each other, both ways: every
// pattern registered in api.go is documented, and every documented operation reaches a handler of ours
// (not the mux's own 404 or 405) on a running API.
func TestOpenAPIRoutes(t *testing.T) {
	doc := openapitest.Load(t, OpenAPI)
	var registered []string
	for _, r := range openapitest.Routes(t, "api.go", "NewAPI", nil) {
		if r.Pattern == "" {
			t.Fatalf("api.go:%d: route pattern %s is not a string literal; resolve it in this test", r.Line, r.Expr)
		}
		registered = append(registered, r.Pattern)
	}
	slices.Sort(registered)
	documented := doc.Operations()
	for _, p := range registered {
		if !slices.Contains(documented, p) {
			t.Errorf("api.go registers %q, which openapi.yaml does not document", p)
		}
	}
	for _, p := range documented {
		if !slices.Contains(registered, p) {
			t.Errorf("openapi.yaml documents %q, which api.go does not register", p)
		}
	}

	srv := httptest.NewServer(newTestAPI(t, "").srv.Handler)
	defer srv.Close()
	for _, op := range documented {
		method, path, _ := strings.Cut(op, " ")
		path = strings.NewReplacer("{id}", "no-such-exchange", "{dataset}", "moi.household").Replace(path)
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader("{}"))
		resp, body := doc.Do(t, srv.Client(), req)
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") && !strings.HasPrefix(ct, "application/yaml") {
			t.Errorf("%s reached no handler of the API: %d %s %q", op, resp.StatusCode, ct, body)
		}
	}
}

// TestOpenAPIAnswers validates the API's answers that need no hub against openapi.yaml: the errors of each
// endpoint, a login hint, the document itself, and every endpoint's 401 when a bearer token is set.
func TestOpenAPIAnswers(t *testing.T) {
	doc := openapitest.Load(t, OpenAPI)
	srv := httptest.NewServer(newTestAPI(t, "").srv.Handler)
	defer srv.Close()
	cases := []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/v1/exchanges", `{`, 400},
		{"POST", "/v1/exchanges", `{"code":"c"}`, 400},
		{"POST", "/v1/exchanges", `{"code":"c","code_verifier":"v","redirect_uri":"r","extra":1}`, 400},
		{"POST", "/v1/exchanges/stream", `{"code":"c","code_verifier":"v","redirect_uri":"r"}`, 400},
		{"POST", "/v1/exchanges/stream?dataset=moi.household", `{}`, 400},
		{"GET", "/v1/exchanges/nope", "", 404},
		{"GET", "/v1/exchanges/nope/datasets/moi.household/content", "", 404},
		{"POST", "/v1/login-hints", `{"subject":"A123456789"}`, 400},
		{"POST", "/v1/login-hints", `{"client_id":"bank.card","subject":"A123456780"}`, 400},
		{"POST", "/v1/login-hints", `{"client_id":"bank.card","subject":"A123456789"}`, 200},
		{"POST", "/v1/par", `{"redirect_uri":"https://bank.example/cb"}`, 400},
		{"POST", "/v1/par", `{"client_id":"bank.card","subject":"A123456789","login_hint":"k.abc"}`, 400},
		{"POST", "/v1/par", `{"client_id":"bank.card","subject":"nope"}`, 400},
		{"GET", "/v1/openapi.yaml", "", 200},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
		resp, body := doc.Do(t, srv.Client(), req)
		if resp.StatusCode != c.status {
			t.Errorf("%s %s %s: %d %s, want %d", c.method, c.path, c.body, resp.StatusCode, body, c.status)
		}
		if c.path == "/v1/openapi.yaml" && !bytes.Equal(body, OpenAPI) {
			t.Error("GET /v1/openapi.yaml does not serve the embedded document")
		}
	}

	// Without the hub's HPKE key in the directory, hints cannot be sealed.
	noKey := newTestAPI(t, "")
	noKey.m.cfg.HubKeys = func() []hubapi.HubKey { return nil }
	srv2 := httptest.NewServer(noKey.srv.Handler)
	defer srv2.Close()
	for _, path := range []string{"/v1/login-hints", "/v1/par"} {
		req, _ := http.NewRequest("POST", srv2.URL+path, strings.NewReader(`{"client_id":"bank.card","subject":"A123456789"}`))
		if resp, body := doc.Do(t, srv2.Client(), req); resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("%s without a hub key: %d %s", path, resp.StatusCode, body)
		}
	}

	// With a bearer token, every operation refuses a request without it.
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv3 := httptest.NewServer(newTestAPI(t, tokenFile).srv.Handler)
	defer srv3.Close()
	for _, op := range doc.Operations() {
		method, path, _ := strings.Cut(op, " ")
		path = strings.NewReplacer("{id}", "x", "{dataset}", "moi.household").Replace(path)
		req, _ := http.NewRequest(method, srv3.URL+path, strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer wrong-token-0000000")
		if resp, body := doc.Do(t, srv3.Client(), req); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token: %d %s", op, resp.StatusCode, body)
		}
	}
}

// newTestAPI makes an API on a manager with no hub: the hub's HPKE key is a fresh one.
func newTestAPI(t *testing.T, tokenFile string) *API {
	t.Helper()
	key, err := seal.GenerateKey(seal.KEMHybrid)
	if err != nil {
		t.Fatal(err)
	}
	hubKey := hubapi.HubKey{KID: "hub-1-hpke", Node: "hub-1", Kind: hubapi.HubKeyHPKE, KEM: seal.KEMHybrid, PublicKey: key.PublicKey().Bytes()}
	log := slog.New(slog.DiscardHandler)
	m, err := New(Config{Registerer: prometheus.NewRegistry(), Log: log, HubKeys: func() []hubapi.HubKey { return []hubapi.HubKey{hubKey} }})
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAPI(m, tokenFile, log)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
