package backend

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func httpConfig(url string) Config {
	var c Config
	c.Type = TypeHTTP
	c.HTTP.URL = url
	return c
}

// agency is a fake agency API: each test case installs its handler.
func agency(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func TestHTTP(t *testing.T) {
	fixed := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	tests := []struct {
		name    string
		handler http.HandlerFunc
		status  Status
		retry   time.Duration
		ct      string
		size    int64
		body    string
		err     string // substring of a wanted ErrBackend
	}{
		{
			name: "200 with length",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"head":"王小明"}`)
			},
			status: Found, ct: "application/json", size: int64(len(`{"head":"王小明"}`)), body: `{"head":"王小明"}`,
		},
		{
			name: "200 without type",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header()["Content-Type"] = nil // stop net/http sniffing one
				io.WriteString(w, "raw")
			},
			status: Found, ct: "application/octet-stream", size: 3, body: "raw",
		},
		{name: "404", handler: http.NotFound, status: NoRecord},
		{
			name: "503 retry-after seconds",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", "120")
				w.WriteHeader(http.StatusServiceUnavailable)
			},
			status: NotReady, retry: 2 * time.Minute,
		},
		{
			name: "503 retry-after date",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", fixed.Add(90*time.Second).Format(http.TimeFormat))
				w.WriteHeader(http.StatusServiceUnavailable)
			},
			status: NotReady, retry: 90 * time.Second,
		},
		{
			name: "503 retry-after date in the past",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", fixed.Add(-time.Hour).Format(http.TimeFormat))
				w.WriteHeader(http.StatusServiceUnavailable)
			},
			status: NotReady, retry: 0,
		},
		{
			name: "202 retry-after",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", "5")
				w.WriteHeader(http.StatusAccepted)
			},
			status: NotReady, retry: 5 * time.Second,
		},
		{
			name:    "202 without retry-after",
			handler: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) },
			status:  NotReady, retry: defaultRetryAfter,
		},
		{
			name:    "503 without retry-after",
			handler: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) },
			err:     "503 Service Unavailable",
		},
		{
			name: "503 with a bad retry-after",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", "soon")
				w.WriteHeader(http.StatusServiceUnavailable)
			},
			err: "503 Service Unavailable",
		},
		{
			name:    "500",
			handler: func(w http.ResponseWriter, r *http.Request) { http.Error(w, "db down", http.StatusInternalServerError) },
			err:     "500 Internal Server Error",
		},
		{
			name: "redirect is not followed",
			handler: func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "http://elsewhere.invalid/"+subject, http.StatusFound)
			},
			err: "302 Found",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var path atomic.Value
			srv := agency(t, func(w http.ResponseWriter, r *http.Request) {
				path.Store(r.URL.Path)
				tt.handler(w, r)
			})
			b := mustNew(t, httpConfig(srv.URL+"/household/{subject}"))
			b.(*httpBackend).now = func() time.Time { return fixed }
			res, body, err := fetch(t, b, subject)
			if got := path.Load(); got != "/household/"+subject {
				t.Fatalf("agency saw path %v", got)
			}
			if tt.err != "" {
				if !errors.Is(err, ErrBackend) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want ErrBackend with %q", err, tt.err)
				}
				if strings.Contains(err.Error(), subject) {
					t.Fatalf("error %q names the subject", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != tt.status || res.RetryAfter != tt.retry {
				t.Fatalf("status %s retry %s, want %s %s", res.Status, res.RetryAfter, tt.status, tt.retry)
			}
			if tt.status == Found && (res.ContentType != tt.ct || res.Size != tt.size || string(body) != tt.body) {
				t.Fatalf("got %q size %d %q, want %q %d %q", res.ContentType, res.Size, body, tt.ct, tt.size, tt.body)
			}
		})
	}
}

func TestHTTPBadSubjectNotSent(t *testing.T) {
	var hits atomic.Int32
	srv := agency(t, func(w http.ResponseWriter, r *http.Request) { hits.Add(1) })
	b := mustNew(t, httpConfig(srv.URL+"/household/{subject}"))
	for _, s := range badSubjects {
		if _, err := b.Fetch(context.Background(), s); !errors.Is(err, ErrSubject) {
			t.Errorf("Fetch(%q) = %v, want ErrSubject", s, err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("agency got %d requests", n)
	}
}

// TestHTTPStreaming shows the body reaches the caller while the agency is still sending it.
func TestHTTPStreaming(t *testing.T) {
	next := make(chan struct{})
	srv := agency(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/csv")
		io.WriteString(w, "part one\n")
		w.(http.Flusher).Flush()
		select {
		case <-next:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "part two\n")
	})
	b := mustNew(t, httpConfig(srv.URL+"/{subject}"))
	res, err := b.Fetch(context.Background(), subject)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.Status != Found || res.Size != -1 || res.ContentType != "text/csv" {
		t.Fatalf("result %+v", res)
	}
	first := make([]byte, len("part one\n"))
	if _, err := io.ReadFull(res.Body, first); err != nil || string(first) != "part one\n" {
		t.Fatalf("first part %q %v", first, err)
	}
	close(next)
	rest, err := io.ReadAll(res.Body)
	if err != nil || string(rest) != "part two\n" {
		t.Fatalf("rest %q %v", rest, err)
	}
}

func TestHTTPMaxBytes(t *testing.T) {
	const max = 1000
	tests := []struct {
		name    string
		size    int
		chunked bool
		fetch   bool // Fetch itself fails, from the announced length
		fail    bool // reading fails
	}{
		{name: "exactly max, with length", size: max},
		{name: "exactly max, chunked", size: max, chunked: true},
		{name: "over, with length", size: max + 1, fetch: true},
		{name: "over, chunked", size: 3 * max, chunked: true, fail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := agency(t, func(w http.ResponseWriter, r *http.Request) {
				data := strings.Repeat("x", tt.size)
				if !tt.chunked {
					w.Header().Set("Content-Length", fmt.Sprint(tt.size))
					io.WriteString(w, data)
					return
				}
				for i := 0; i < len(data); i += 100 {
					io.WriteString(w, data[i:i+100])
					w.(http.Flusher).Flush()
				}
			})
			c := httpConfig(srv.URL + "/{subject}")
			c.HTTP.MaxBytes = max
			b := mustNew(t, c)
			res, body, err := fetch(t, b, subject)
			switch {
			case tt.fetch:
				if res != nil || !errors.Is(err, ErrBackend) || !strings.Contains(err.Error(), "http.max_bytes") {
					t.Fatalf("Fetch = %v, %v; want a max_bytes error", res, err)
				}
			case tt.fail:
				if !errors.Is(err, ErrBackend) || !strings.Contains(err.Error(), "more than http.max_bytes (1000)") {
					t.Fatalf("read error %v, want a max_bytes error", err)
				}
				if len(body) != max {
					t.Fatalf("caller got %d bytes before the error, want %d", len(body), max)
				}
			default:
				if err != nil || len(body) != tt.size {
					t.Fatalf("read %d bytes, %v", len(body), err)
				}
			}
		})
	}
}

func TestHTTPTimeout(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	wait := func(r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}
	t.Run("headers late", func(t *testing.T) {
		srv := agency(t, func(w http.ResponseWriter, r *http.Request) { wait(r) })
		c := httpConfig(srv.URL + "/{subject}")
		c.HTTP.Timeout = 200 * time.Millisecond
		b := mustNew(t, c)
		_, err := b.Fetch(context.Background(), subject)
		if !errors.Is(err, ErrBackend) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Fetch = %v, want a timeout", err)
		}
	})
	t.Run("body stalls", func(t *testing.T) {
		srv := agency(t, func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "start")
			w.(http.Flusher).Flush()
			wait(r)
		})
		c := httpConfig(srv.URL + "/{subject}")
		c.HTTP.Timeout = 200 * time.Millisecond
		b := mustNew(t, c)
		res, body, err := fetch(t, b, subject)
		if res == nil || string(body) != "start" || !errors.Is(err, ErrBackend) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %q, %v; want the start, then a timeout", body, err)
		}
	})
	t.Run("404 body stalls", func(t *testing.T) {
		srv := agency(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, "not here")
			w.(http.Flusher).Flush()
			wait(r)
		})
		c := httpConfig(srv.URL + "/{subject}")
		c.HTTP.Timeout = 200 * time.Millisecond
		b := mustNew(t, c)
		start := time.Now()
		if res, _, err := fetch(t, b, subject); err != nil || res.Status != NoRecord {
			t.Fatalf("fetch = %v, %v", res, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("took %s", d)
		}
	})
	t.Run("slow reader is not cut", func(t *testing.T) {
		srv := agency(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "all of it") })
		c := httpConfig(srv.URL + "/{subject}")
		c.HTTP.Timeout = 100 * time.Millisecond
		b := mustNew(t, c)
		res, err := b.Fetch(context.Background(), subject)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		time.Sleep(300 * time.Millisecond)
		if data, err := io.ReadAll(res.Body); err != nil || string(data) != "all of it" {
			t.Fatalf("read %q, %v", data, err)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close() // nothing listens there now
		b := mustNew(t, httpConfig("http://"+addr+"/{subject}"))
		if _, err := b.Fetch(context.Background(), subject); !errors.Is(err, ErrBackend) || strings.Contains(err.Error(), subject) {
			t.Fatalf("Fetch = %v, want ErrBackend without the subject", err)
		}
	})
}

func TestHTTPBearerToken(t *testing.T) {
	srv := agency(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret-2" {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		io.WriteString(w, "ok")
	})
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := httpConfig(srv.URL + "/{subject}")
	c.HTTP.BearerTokenFile = tokenFile
	b := mustNew(t, c)
	if _, _, err := fetch(t, b, subject); !errors.Is(err, ErrBackend) || !strings.Contains(err.Error(), "401") {
		t.Fatalf("with the old token: %v, want a 401", err)
	}
	// A rotated token is picked up without a restart.
	if err := os.WriteFile(tokenFile, []byte("  s3cret-2 \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if res, body, err := fetch(t, b, subject); err != nil || res.Status != Found || string(body) != "ok" {
		t.Fatalf("with the new token: %v %q %v", res, body, err)
	}

	c.HTTP.BearerTokenFile = filepath.Join(t.TempDir(), "missing")
	if _, err := New(c); !errors.Is(err, ErrBackend) || !strings.Contains(err.Error(), "http.bearer_token_file") {
		t.Fatalf("New with a missing token file = %v", err)
	}
}

func TestHTTPMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	caFile := filepath.Join(dir, "ca.pem")
	writeFile(t, caFile, string(ca.certPEM))
	serverCert := ca.issue(t, "api.moi.example", x509.ExtKeyUsageServerAuth)
	clientCert, clientKey := ca.issueFiles(t, dir, "mydata-connector", x509.ExtKeyUsageClientAuth)
	otherCA := newTestCA(t)
	strangerCert, strangerKey := otherCA.issueFiles(t, dir, "stranger", x509.ExtKeyUsageClientAuth)

	var lastSerial atomic.Value
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != "mydata-connector" {
			http.Error(w, "no client certificate", http.StatusForbidden)
			return
		}
		lastSerial.Store(r.TLS.PeerCertificates[0].SerialNumber.String())
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	}))
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.pool(),
	}
	// Silence the server's log of the handshakes refused on purpose below.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)

	url := srv.URL + "/household/{subject}"
	tests := []struct {
		name             string
		cert, key, cafil string
		ok               bool
	}{
		{name: "client certificate", cert: clientCert, key: clientKey, cafil: caFile, ok: true},
		{name: "no client certificate", cafil: caFile},
		{name: "client certificate from another CA", cert: strangerCert, key: strangerKey, cafil: caFile},
		{name: "server not trusted without ca_file", cert: clientCert, key: clientKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := httpConfig(url)
			c.HTTP.ClientCert, c.HTTP.ClientKey, c.HTTP.CAFile = tt.cert, tt.key, tt.cafil
			b := mustNew(t, c)
			res, body, err := fetch(t, b, subject)
			if !tt.ok {
				if !errors.Is(err, ErrBackend) {
					t.Fatalf("fetch = %v, want ErrBackend", err)
				}
				return
			}
			if err != nil || res.Status != Found || string(body) != `{"ok":true}` {
				t.Fatalf("fetch = %v %q %v", res, body, err)
			}
		})
	}

	t.Run("renewed client certificate is used without restart", func(t *testing.T) {
		dir := t.TempDir()
		certFile, keyFile := ca.issueFiles(t, dir, "mydata-connector", x509.ExtKeyUsageClientAuth)
		c := httpConfig(url)
		c.HTTP.ClientCert, c.HTTP.ClientKey, c.HTTP.CAFile = certFile, keyFile, caFile
		b := mustNew(t, c)
		if _, _, err := fetch(t, b, subject); err != nil {
			t.Fatal(err)
		}
		first := lastSerial.Load()
		ca.issueFiles(t, dir, "mydata-connector", x509.ExtKeyUsageClientAuth) // overwrites both files
		b.(*httpBackend).transport.CloseIdleConnections()                     // force a new handshake
		if _, _, err := fetch(t, b, subject); err != nil {
			t.Fatal(err)
		}
		if second := lastSerial.Load(); second == first {
			t.Fatalf("the server saw the old certificate (serial %v) again", first)
		}
	})
	t.Run("TLS 1.2 minimum", func(t *testing.T) {
		c := httpConfig(url)
		c.HTTP.CAFile = caFile
		b := mustNew(t, c)
		if v := b.(*httpBackend).transport.TLSClientConfig.MinVersion; v != tls.VersionTLS12 {
			t.Fatalf("MinVersion %x", v)
		}
	})
	t.Run("bad files at New", func(t *testing.T) {
		c := httpConfig(url)
		c.HTTP.CAFile = clientKey // a key, not a certificate
		if _, err := New(c); !errors.Is(err, ErrBackend) || !strings.Contains(err.Error(), "http.ca_file") {
			t.Fatalf("New = %v", err)
		}
		c.HTTP.CAFile = caFile
		c.HTTP.ClientCert, c.HTTP.ClientKey = clientCert, strangerKey // mismatched pair
		if _, err := New(c); !errors.Is(err, ErrBackend) || !strings.Contains(err.Error(), "http.client_cert") {
			t.Fatalf("New = %v", err)
		}
	})
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	tests := []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{" 30 ", 30 * time.Second, true},
		{"-5", 0, false},
		{"1.5", 0, false},
		{"99999999999999", (1 << 31) * time.Second, true},
		{now.Add(time.Minute).Format(http.TimeFormat), time.Minute, true},
		{now.Add(time.Minute).Format(time.RFC850), time.Minute, true},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0, true},
		{"tomorrow", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseRetryAfter(tt.v, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseRetryAfter(%q) = %s %v, want %s %v", tt.v, got, ok, tt.want, tt.ok)
		}
	}
}

// testCA issues the agency's server certificate and the connector's client certificate.
type testCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Test Agency CA"},
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
	return &testCA{cert: cert, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

func (ca *testCA) issuePEM(t *testing.T, cn string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{cn},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

func (ca *testCA) issue(t *testing.T, cn string, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	certPEM, keyPEM := ca.issuePEM(t, cn, usage)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func (ca *testCA) issueFiles(t *testing.T, dir, cn string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM := ca.issuePEM(t, cn, usage)
	certFile, keyFile = filepath.Join(dir, cn+".crt"), filepath.Join(dir, cn+".key")
	writeFile(t, certFile, string(certPEM))
	writeFile(t, keyFile, string(keyPEM))
	return certFile, keyFile
}
