package twodocs_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mydatafed/mydata/hub/internal/identity/twodocs"
	"github.com/mydatafed/mydata/pkg/docregistry"
)

const (
	citizen = "A123456789"
	token   = "s3cret-registry-token"
)

// The sample registry's documents for citizen.
var (
	nhi      = "000012345678"
	house    = "D0012345"
	issued   = time.Date(2019, 3, 5, 0, 0, 0, 0, time.UTC)
	byHouse  = twodocs.Documents{NHICard: nhi, Household: house}
	byIssued = twodocs.Documents{NHICard: nhi, IssueDate: issued, IssueType: twodocs.IssueReissue}
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// caFile writes the test server's certificate where Config.CAFile can name it.
func caFile(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	return writeFile(t, t.TempDir(), "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))
}

// sampleRegistry serves pkg/docregistry/testdata/sample-registry.json over TLS, wanting token.
func sampleRegistry(t *testing.T) *httptest.Server {
	t.Helper()
	recs, err := docregistry.Load("../../../../pkg/docregistry/testdata/sample-registry.json")
	if err != nil {
		t.Fatal(err)
	}
	reg, err := docregistry.New(recs, token)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(reg)
	t.Cleanup(srv.Close)
	return srv
}

func newClient(t *testing.T, cfg twodocs.Config) *twodocs.Client {
	t.Helper()
	c, err := twodocs.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// noSecrets fails when an error's text shows the national ID or a document.
func noSecrets(t *testing.T, err error, nationalID string, d twodocs.Documents) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range []string{nationalID, d.NHICard, d.Household, d.IssueDate.Format(time.DateOnly)} {
		if s != "" && s != "0001-01-01" && strings.Contains(err.Error(), s) {
			t.Fatalf("error %q shows %q", err, s)
		}
	}
}

func TestCheckSampleRegistry(t *testing.T) {
	srv := sampleRegistry(t)
	dir := t.TempDir()
	c := newClient(t, twodocs.Config{URL: srv.URL, CAFile: caFile(t, srv), TokenFile: writeFile(t, dir, "token", token+"\n")})
	if c.ID() != twodocs.DefaultID {
		t.Errorf("ID() = %q, want the default %q", c.ID(), twodocs.DefaultID)
	}
	tests := []struct {
		name string
		id   string
		docs twodocs.Documents
		want error
	}{
		{"household", citizen, byHouse, nil},
		{"issue date", citizen, byIssued, nil},
		{"wrong NHI card", citizen, twodocs.Documents{NHICard: "000012345679", Household: house}, twodocs.ErrMismatch},
		{"wrong household", citizen, twodocs.Documents{NHICard: nhi, Household: "B0207788"}, twodocs.ErrMismatch},
		{"wrong issue date", citizen, twodocs.Documents{NHICard: nhi, IssueDate: issued.AddDate(0, 0, 1), IssueType: twodocs.IssueReissue}, twodocs.ErrMismatch},
		{"wrong issue type", citizen, twodocs.Documents{NHICard: nhi, IssueDate: issued, IssueType: twodocs.IssueReplacement}, twodocs.ErrMismatch},
		{"another citizen's documents", "B220713459", byHouse, twodocs.ErrMismatch},
		{"unknown citizen", "F131104093", byHouse, twodocs.ErrMismatch},
		// A child has no ID card yet: only the household number can match.
		{"child by household", "A102408158", twodocs.Documents{NHICard: "000034567890", Household: house}, nil},
		{"child by issue date", "A102408158", twodocs.Documents{NHICard: "000034567890", IssueDate: issued, IssueType: twodocs.IssueFirst}, twodocs.ErrMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.Check(context.Background(), tt.id, tt.docs)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Check = %v, want %v", err, tt.want)
			}
			noSecrets(t, err, tt.id, tt.docs)
		})
	}
}

// TestCheckTyped goes from what a citizen types, through the parsers, to a match.
func TestCheckTyped(t *testing.T) {
	srv := sampleRegistry(t)
	c := newClient(t, twodocs.Config{URL: srv.URL, CAFile: caFile(t, srv), TokenFile: writeFile(t, t.TempDir(), "token", token)})
	card, err := twodocs.ParseNHICard("００００ １２３４ ５６７８")
	if err != nil {
		t.Fatal(err)
	}
	date, err := twodocs.ParseIssueDate("民國108年3月5日")
	if err != nil {
		t.Fatal(err)
	}
	typ, err := twodocs.ParseIssueType("補發")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(context.Background(), citizen, twodocs.Documents{NHICard: card, IssueDate: date, IssueType: typ}); err != nil {
		t.Fatal(err)
	}
}

func TestCheckToken(t *testing.T) {
	srv := sampleRegistry(t)
	dir := t.TempDir()
	ca := caFile(t, srv)
	t.Run("wrong token", func(t *testing.T) {
		c := newClient(t, twodocs.Config{URL: srv.URL, CAFile: ca, TokenFile: writeFile(t, dir, "wrong", "not-the-token")})
		err := c.Check(context.Background(), citizen, byHouse)
		if !errors.Is(err, twodocs.ErrUnavailable) || errors.Is(err, twodocs.ErrMismatch) {
			t.Fatalf("Check = %v, want ErrUnavailable", err)
		}
		if strings.Contains(err.Error(), "not-the-token") {
			t.Fatalf("error %q shows the token", err)
		}
	})
	t.Run("no token", func(t *testing.T) {
		c := newClient(t, twodocs.Config{URL: srv.URL, CAFile: ca})
		if err := c.Check(context.Background(), citizen, byHouse); !errors.Is(err, twodocs.ErrUnavailable) {
			t.Fatalf("Check = %v, want ErrUnavailable", err)
		}
	})
	t.Run("rotated", func(t *testing.T) {
		file := writeFile(t, dir, "rotated", "old-token")
		c := newClient(t, twodocs.Config{URL: srv.URL, CAFile: ca, TokenFile: file})
		if err := c.Check(context.Background(), citizen, byHouse); !errors.Is(err, twodocs.ErrUnavailable) {
			t.Fatalf("Check with the old token = %v, want ErrUnavailable", err)
		}
		writeFile(t, dir, "rotated", token)
		if err := c.Check(context.Background(), citizen, byHouse); err != nil {
			t.Fatalf("Check after rotation = %v", err)
		}
	})
	t.Run("token file removed", func(t *testing.T) {
		file := writeFile(t, dir, "removed", token)
		c := newClient(t, twodocs.Config{URL: srv.URL, CAFile: ca, TokenFile: file})
		os.Remove(file)
		if err := c.Check(context.Background(), citizen, byHouse); !errors.Is(err, twodocs.ErrUnavailable) {
			t.Fatalf("Check = %v, want ErrUnavailable", err)
		}
	})
}

func TestCheckUntrustedServer(t *testing.T) {
	srv := sampleRegistry(t)
	// No ca_file: the test server's self-signed certificate is not in the system roots.
	c := newClient(t, twodocs.Config{URL: srv.URL, TokenFile: writeFile(t, t.TempDir(), "token", token)})
	if err := c.Check(context.Background(), citizen, byHouse); !errors.Is(err, twodocs.ErrUnavailable) {
		t.Fatalf("Check = %v, want ErrUnavailable", err)
	}
}

func TestCheckRegistryDown(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	ca := caFile(t, srv)
	url := srv.URL
	srv.Close()
	c := newClient(t, twodocs.Config{URL: url, CAFile: ca, Timeout: 2 * time.Second})
	err := c.Check(context.Background(), citizen, byHouse)
	if !errors.Is(err, twodocs.ErrUnavailable) {
		t.Fatalf("Check = %v, want ErrUnavailable", err)
	}
	noSecrets(t, err, citizen, byHouse)
}

// TestCheckAnswers runs the client against registries that answer badly.
func TestCheckAnswers(t *testing.T) {
	big := strings.Repeat(" ", 1<<20) + `{"match":true}`
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    error
	}{
		{"match", answer(200, `{"match":true}`), nil},
		{"match with a newline", answer(200, "{\"match\": true}\n"), nil},
		{"no match", answer(200, `{"match":false}`), twodocs.ErrMismatch},
		{"500", answer(500, `{"match":true}`), twodocs.ErrUnavailable},
		{"502", answer(502, `bad gateway`), twodocs.ErrUnavailable},
		{"503", answer(503, ``), twodocs.ErrUnavailable},
		{"429", answer(429, ``), twodocs.ErrUnavailable},
		{"401", answer(401, ``), twodocs.ErrUnavailable},
		{"403", answer(403, ``), twodocs.ErrUnavailable},
		{"400", answer(400, `{"error":"bad"}`), twodocs.ErrProtocol},
		{"404", answer(404, `{"match":false}`), twodocs.ErrProtocol},
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://elsewhere.example/check", http.StatusTemporaryRedirect)
		}, twodocs.ErrProtocol},
		{"garbage", answer(200, `<html>Service temporarily unavailable</html>`), twodocs.ErrProtocol},
		{"empty", answer(200, ``), twodocs.ErrProtocol},
		{"no match field", answer(200, `{}`), twodocs.ErrProtocol},
		{"null match", answer(200, `{"match":null}`), twodocs.ErrProtocol},
		{"match not a bool", answer(200, `{"match":"true"}`), twodocs.ErrProtocol},
		{"unknown field", answer(200, `{"match":true,"name":"王大明"}`), twodocs.ErrProtocol},
		{"trailing data", answer(200, `{"match":true}{"match":false}`), twodocs.ErrProtocol},
		{"array", answer(200, `[true]`), twodocs.ErrProtocol},
		{"oversized with a length", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1048590")
			io.WriteString(w, big)
		}, twodocs.ErrProtocol},
		{"oversized, chunked", func(w http.ResponseWriter, r *http.Request) {
			for i := 0; i < 64; i++ {
				io.WriteString(w, big[:1<<14])
				w.(http.Flusher).Flush()
			}
			io.WriteString(w, `{"match":true}`)
		}, twodocs.ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewTLSServer(tt.handler)
			defer srv.Close()
			c := newClient(t, twodocs.Config{URL: srv.URL, CAFile: caFile(t, srv)})
			err := c.Check(context.Background(), citizen, byHouse)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Check = %v, want %v", err, tt.want)
			}
			if strings.Contains(fmtErr(err), "王大明") || strings.Contains(fmtErr(err), "Service temporarily") {
				t.Fatalf("error %q shows the registry's body", err)
			}
			noSecrets(t, err, citizen, byHouse)
		})
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func answer(code int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
}

// TestCheckRequest checks what the registry receives.
func TestCheckRequest(t *testing.T) {
	var got struct {
		method, auth, ctype string
		body                map[string]any
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.method, got.auth, got.ctype = r.Method, r.Header.Get("Authorization"), r.Header.Get("Content-Type")
		got.body = nil
		json.NewDecoder(r.Body).Decode(&got.body)
		io.WriteString(w, `{"match":true}`)
	}))
	defer srv.Close()
	c := newClient(t, twodocs.Config{URL: srv.URL, CAFile: caFile(t, srv), TokenFile: writeFile(t, t.TempDir(), "token", " "+token+"\n")})

	tests := []struct {
		docs twodocs.Documents
		want map[string]any
	}{
		{byHouse, map[string]any{"national_id": citizen, "nhi_card": nhi, "household": house}},
		{byIssued, map[string]any{"national_id": citizen, "nhi_card": nhi, "issue_date": "2019-03-05", "issue_type": "reissue"}},
	}
	for _, tt := range tests {
		if err := c.Check(context.Background(), citizen, tt.docs); err != nil {
			t.Fatal(err)
		}
		if got.method != http.MethodPost || got.auth != "Bearer "+token || got.ctype != "application/json" {
			t.Errorf("method %q, Authorization %q, Content-Type %q", got.method, got.auth, got.ctype)
		}
		if len(got.body) != len(tt.want) {
			t.Errorf("body %v, want %v", got.body, tt.want)
		}
		for k, v := range tt.want {
			if got.body[k] != v {
				t.Errorf("body[%s] = %v, want %v", k, got.body[k], v)
			}
		}
	}
}

// TestCheckFieldErrors: documents not in the parsers' form are refused before the registry is asked.
func TestCheckFieldErrors(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		io.WriteString(w, `{"match":true}`)
	}))
	defer srv.Close()
	c := newClient(t, twodocs.Config{URL: srv.URL, CAFile: caFile(t, srv)})
	tests := []struct {
		name  string
		id    string
		docs  twodocs.Documents
		field string
	}{
		{"bad national ID", "A123456788", byHouse, twodocs.FieldNationalID},
		{"lower-case national ID", "a123456789", byHouse, twodocs.FieldNationalID},
		{"NHI card with spaces", citizen, twodocs.Documents{NHICard: "0000 1234 5678", Household: house}, twodocs.FieldNHICard},
		{"no second document", citizen, twodocs.Documents{NHICard: nhi}, twodocs.FieldDocuments},
		{"both second documents", citizen, twodocs.Documents{NHICard: nhi, Household: house, IssueDate: issued, IssueType: twodocs.IssueFirst}, twodocs.FieldDocuments},
		{"issue type missing", citizen, twodocs.Documents{NHICard: nhi, IssueDate: issued}, twodocs.FieldIssueType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.Check(context.Background(), tt.id, tt.docs)
			var fe *twodocs.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("Check = %v, want a FieldError for %s", err, tt.field)
			}
			if errors.Is(err, twodocs.ErrMismatch) {
				t.Fatal("a typo counted as a mismatch")
			}
		})
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("the registry was asked %d times", n)
	}
}

func TestCheckSlow(t *testing.T) {
	// The registry stalls until the test is done with it (stop), not until its request context ends: a
	// loaded machine's server may see that context end early and answer an empty 200 the client reads first.
	tests := []struct {
		name    string
		handler func(stop <-chan struct{}) http.HandlerFunc
	}{
		{"no headers", func(stop <-chan struct{}) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				<-stop
			}
		}},
		{"body stalls", func(stop <-chan struct{}) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Length", "14")
				io.WriteString(w, `{"match":`)
				w.(http.Flusher).Flush()
				<-stop
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stop := make(chan struct{})
			srv := httptest.NewTLSServer(tt.handler(stop))
			defer srv.Close()
			defer close(stop)
			c := newClient(t, twodocs.Config{URL: srv.URL, CAFile: caFile(t, srv), Timeout: 300 * time.Millisecond})
			start := time.Now()
			err := c.Check(context.Background(), citizen, byHouse)
			if !errors.Is(err, twodocs.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Check = %v, want ErrUnavailable and DeadlineExceeded", err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("Check took %s with a 300ms timeout", d)
			}
		})
	}
	t.Run("caller gives up", func(t *testing.T) {
		// The registry answers only once the test is over: not on its request context, which a loaded
		// machine's server may see end early and answer an empty 200 that the client reads first.
		stop := make(chan struct{})
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			<-stop
		}))
		defer srv.Close()
		defer close(stop)
		c := newClient(t, twodocs.Config{URL: srv.URL, CAFile: caFile(t, srv)})
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		err := c.Check(ctx, citizen, byHouse)
		if !errors.Is(err, twodocs.ErrUnavailable) || !errors.Is(err, context.Canceled) {
			t.Fatalf("Check = %v, want ErrUnavailable and Canceled", err)
		}
	})
}

func TestCheckMutualTLS(t *testing.T) {
	ca := newTestCA(t)
	recs, err := docregistry.Load("../../../../pkg/docregistry/testdata/sample-registry.json")
	if err != nil {
		t.Fatal(err)
	}
	reg, err := docregistry.New(recs, "")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(reg)
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.pool}
	srv.StartTLS()
	defer srv.Close()
	dir := t.TempDir()
	certFile, keyFile := ca.issueFiles(t, dir)

	c := newClient(t, twodocs.Config{URL: srv.URL, CAFile: caFile(t, srv), ClientCert: certFile, ClientKey: keyFile})
	if err := c.Check(context.Background(), citizen, byHouse); err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}
	c = newClient(t, twodocs.Config{URL: srv.URL, CAFile: caFile(t, srv)})
	if err := c.Check(context.Background(), citizen, byHouse); !errors.Is(err, twodocs.ErrUnavailable) {
		t.Fatalf("without a client certificate: %v, want ErrUnavailable", err)
	}
}

func TestConfig(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  twodocs.Config
		want string // part of the error; "" means valid
	}{
		{"https", twodocs.Config{URL: "https://registry.example/check"}, ""},
		{"http to loopback", twodocs.Config{URL: "http://127.0.0.1:8099/check"}, ""},
		{"http to localhost", twodocs.Config{URL: "http://localhost:8099/check"}, ""},
		{"http to ::1", twodocs.Config{URL: "http://[::1]:8099/check"}, ""},
		{"own id", twodocs.Config{ID: "two-docs-test", URL: "https://registry.example/"}, ""},
		{"no url", twodocs.Config{}, "url: required"},
		{"http elsewhere", twodocs.Config{URL: "http://registry.example/check"}, "url:"},
		{"not a URL", twodocs.Config{URL: "registry.example"}, "url:"},
		{"ftp", twodocs.Config{URL: "ftp://registry.example/"}, "url:"},
		{"credentials in the URL", twodocs.Config{URL: "https://hub:pw@registry.example/"}, "url: holds credentials"},
		{"ca_file with http", twodocs.Config{URL: "http://127.0.0.1/", CAFile: "ca.pem"}, "url:"},
		{"cert without key", twodocs.Config{URL: "https://registry.example/", ClientCert: "c.pem"}, "client_key:"},
		{"key without cert", twodocs.Config{URL: "https://registry.example/", ClientKey: "k.pem"}, "client_key:"},
		{"negative timeout", twodocs.Config{URL: "https://registry.example/", Timeout: -time.Second}, "timeout:"},
		{"long timeout", twodocs.Config{URL: "https://registry.example/", Timeout: time.Hour}, "timeout:"},
		{"bad id", twodocs.Config{ID: "Two Docs", URL: "https://registry.example/"}, "id:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want %q", err, tt.want)
			}
		})
	}

	// New reads the files, so a bad one is reported at start-up, not at a citizen's login.
	newTests := []struct {
		name string
		cfg  twodocs.Config
		want string
	}{
		{"token file missing", twodocs.Config{URL: "https://registry.example/", TokenFile: filepath.Join(dir, "none")}, "token_file:"},
		{"token file empty", twodocs.Config{URL: "https://registry.example/", TokenFile: writeFile(t, dir, "empty", " \n")}, "token_file:"},
		{"ca file missing", twodocs.Config{URL: "https://registry.example/", CAFile: filepath.Join(dir, "none")}, "ca_file:"},
		{"ca file not PEM", twodocs.Config{URL: "https://registry.example/", CAFile: writeFile(t, dir, "ca.txt", "hello")}, "ca_file:"},
		{"client cert missing", twodocs.Config{URL: "https://registry.example/", ClientCert: filepath.Join(dir, "c"), ClientKey: filepath.Join(dir, "k")}, "client_cert:"},
		{"invalid", twodocs.Config{URL: "http://registry.example/"}, "url:"},
	}
	for _, tt := range newTests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := twodocs.New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want %q", err, tt.want)
			}
		})
	}
	if d := (twodocs.Config{}).WithDefaults(); d.ID != twodocs.DefaultID || d.Timeout != twodocs.DefaultTimeout {
		t.Fatalf("WithDefaults = %+v", d)
	}
}

// testCA issues the hub's client certificate for the mutual TLS test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Test Registry Client CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

func (ca *testCA) issueFiles(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "mydata-hub"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = writeFile(t, dir, "client.crt", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	keyFile = writeFile(t, dir, "client.key", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})))
	return certFile, keyFile
}
