package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/filetest"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/hubapi/hubapitest"
	"github.com/mydatafed/mydata/pkg/jointoken"
	"github.com/mydatafed/mydata/pkg/pemfile"
	"github.com/mydatafed/mydata/pkg/spiffetest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

const (
	td        = "mydata.test"
	connID    = "spiffe://mydata.test/org/moi/connector/moi-dp"
	otherID   = "spiffe://mydata.test/org/fia/connector/fia-dp"
	hubNodeID = "spiffe://mydata.test/hub/hub-1"
)

var (
	conn  = spiffeid.RequireFromString(connID)
	other = spiffeid.RequireFromString(otherID)
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// saveSVID writes svid and the roots into dir as enrollment leaves them.
func saveSVID(t *testing.T, dir string, svid *x509svid.SVID, roots ...*x509.Certificate) {
	t.Helper()
	if err := save(dir, svid, roots); err != nil {
		t.Fatal(err)
	}
}

func TestPaths(t *testing.T) {
	svid, bundle := Paths("/var/lib/mydata/identity")
	if svid != "/var/lib/mydata/identity/svid.pem" || bundle != "/var/lib/mydata/identity/bundle.crt" {
		t.Errorf("Paths = %s, %s", svid, bundle)
	}
}

func TestRenewAt(t *testing.T) {
	nb := time.Date(2026, 11, 23, 16, 27, 47, 0, time.UTC)
	tests := []struct {
		name string
		life time.Duration
		want time.Duration // after NotBefore
	}{
		{"default svid_ttl", 24 * time.Hour, 12 * time.Hour},
		{"shortest svid_ttl", 10 * time.Second, 5 * time.Second},
		{"odd seconds", 3 * time.Second, 1500 * time.Millisecond},
		{"a year", 365 * 24 * time.Hour, 365 * 12 * time.Hour},
		// NotAfter before NotBefore cannot verify anyway; the result is before NotBefore, so Run renews at once.
		{"inverted", -2 * time.Hour, -time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &x509.Certificate{NotBefore: nb, NotAfter: nb.Add(tt.life)}
			if got := renewAt(c); !got.Equal(nb.Add(tt.want)) {
				t.Errorf("renewAt = %s, want %s", got, nb.Add(tt.want))
			}
		})
	}
}

func TestSaveAndLoad(t *testing.T) {
	ca := spiffetest.New(t, td)
	svid := ca.SVID(t, connID, time.Hour)
	dir := t.TempDir()
	saveSVID(t, dir, svid, ca.Root)

	svidPath, bundlePath := Paths(dir)
	for path, mode := range map[string]os.FileMode{svidPath: 0o600, bundlePath: 0o644} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		// The SVID file holds the private key: nobody else may read it.
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", filepath.Base(path), fi.Mode().Perm(), mode)
		}
	}

	l, err := LoadLocal(dir, conn, discard())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got, err := l.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != conn || !got.Certificates[0].Equal(svid.Certificates[0]) || !l.Leaf().Equal(svid.Certificates[0]) {
		t.Errorf("loaded SVID %s is not the saved one", got.ID)
	}
	if !got.PrivateKey.Public().(*ecdsa.PublicKey).Equal(svid.PrivateKey.Public()) {
		t.Error("loaded key is not the saved one")
	}
	b, err := l.GetX509BundleForTrustDomain(conn.TrustDomain())
	if err != nil {
		t.Fatal(err)
	}
	if auth := b.X509Authorities(); len(auth) != 1 || !auth[0].Equal(ca.Root) {
		t.Errorf("bundle holds %d authorities, want the CA's root", len(auth))
	}
	if _, err := l.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("elsewhere.test")); err == nil ||
		!strings.Contains(err.Error(), `no bundle for trust domain "elsewhere.test"`) {
		t.Errorf("bundle for another trust domain: %v", err)
	}
	// The loaded source must do what the connector uses it for: a TLS certificate that verifies.
	if _, _, err := x509svid.Verify(got.Certificates, b); err != nil {
		t.Errorf("loaded SVID does not verify against the loaded bundle: %v", err)
	}
}

func TestLoadLocalErrors(t *testing.T) {
	ca := spiffetest.New(t, td)
	svid := ca.SVID(t, connID, time.Hour)
	otherSVID := ca.SVID(t, otherID, time.Hour)
	keyPEM, err := pemfile.EncodeKey(svid.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	otherKeyPEM, err := pemfile.EncodeKey(otherSVID.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pemfile.EncodeCertificates(svid.Certificates)
	rootPEM := pemfile.EncodeCertificates([]*x509.Certificate{ca.Root})

	tests := []struct {
		name    string
		noDir   bool
		files   map[string][]byte // under the identity directory; a name ending in "/" is a directory
		want    error
		wantMsg []string // substrings of the error
	}{
		{name: "no directory", noDir: true, want: ErrNotEnrolled},
		{name: "empty directory", want: ErrNotEnrolled},
		{name: "bundle only", files: map[string][]byte{bundleFile: rootPEM}, want: ErrNotEnrolled},
		{name: "empty SVID file", files: map[string][]byte{svidFile: {}, bundleFile: rootPEM},
			wantMsg: []string{"load SVID: ", svidFile, "want a PRIVATE KEY and at least one CERTIFICATE"}},
		{name: "SVID file not PEM", files: map[string][]byte{svidFile: []byte("hello\n"), bundleFile: rootPEM},
			wantMsg: []string{"load SVID: ", "want a PRIVATE KEY and at least one CERTIFICATE"}},
		{name: "SVID file without key", files: map[string][]byte{svidFile: certPEM, bundleFile: rootPEM},
			wantMsg: []string{"load SVID: ", "want a PRIVATE KEY"}},
		{name: "SVID file without certificate", files: map[string][]byte{svidFile: keyPEM, bundleFile: rootPEM},
			wantMsg: []string{"load SVID: ", "at least one CERTIFICATE"}},
		{name: "SVID file cut short", files: map[string][]byte{svidFile: append(keyPEM, certPEM[:len(certPEM)/2]...), bundleFile: rootPEM},
			wantMsg: []string{"load SVID: ", "at least one CERTIFICATE"}},
		{name: "SVID file with another SVID's key", files: map[string][]byte{svidFile: append(otherKeyPEM, certPEM...), bundleFile: rootPEM},
			wantMsg: []string{"load SVID: ", svidFile, "does not match private key"}},
		{name: "SVID file with a foreign block", files: map[string][]byte{svidFile: append([]byte("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"), certPEM...), bundleFile: rootPEM},
			wantMsg: []string{"load SVID: ", `unexpected PEM block "RSA PRIVATE KEY"`}},
		{name: "SVID file is a directory", files: map[string][]byte{svidFile + "/": nil, bundleFile: rootPEM},
			wantMsg: []string{"load SVID: ", "is a directory"}},
		{name: "SVID for another connector", files: map[string][]byte{svidFile: svidPEM(t, otherSVID), bundleFile: rootPEM},
			wantMsg: []string{"is for " + otherID + ", but the config names " + connID}},
		{name: "no bundle", files: map[string][]byte{svidFile: svidPEM(t, svid)},
			wantMsg: []string{"load bundle: ", bundleFile, "no such file"}},
		{name: "bundle not PEM", files: map[string][]byte{svidFile: svidPEM(t, svid), bundleFile: []byte("hello\n")},
			wantMsg: []string{"load bundle: no certificate found"}},
		{name: "bundle holds a key", files: map[string][]byte{svidFile: svidPEM(t, svid), bundleFile: keyPEM},
			wantMsg: []string{"load bundle: ", `unexpected PEM block "PRIVATE KEY"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "identity")
			if !tt.noDir {
				if err := os.Mkdir(dir, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			filetest.WriteTree(t, dir, tt.files)
			l, err := LoadLocal(dir, conn, discard())
			if err == nil {
				t.Fatalf("LoadLocal loaded %v", l.Leaf().URIs)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
			for _, s := range tt.wantMsg {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("err = %q, want it to contain %q", err, s)
				}
			}
		})
	}
}

func svidPEM(t *testing.T, svid *x509svid.SVID) []byte {
	t.Helper()
	k, err := pemfile.EncodeKey(svid.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return append(k, pemfile.EncodeCertificates(svid.Certificates)...)
}

// An expired SVID still loads: the connector must start to report it (`status`, /readyz failing,
// mydata_connector_svid_expiry_seconds at 0) and Run tries to renew it at once.
func TestLoadLocalExpired(t *testing.T) {
	ca := spiffetest.New(t, td)
	dir := t.TempDir()
	saveSVID(t, dir, ca.SVID(t, connID, -time.Second), ca.Root)
	l, err := LoadLocal(dir, conn, discard())
	if err != nil {
		t.Fatalf("LoadLocal of an expired SVID: %v", err)
	}
	now := time.Now()
	if !l.Leaf().NotAfter.Before(now) {
		t.Errorf("NotAfter %s is not past", l.Leaf().NotAfter)
	}
	if !renewAt(l.Leaf()).Before(now) {
		t.Errorf("renewAt %s is not past: renewal would wait", renewAt(l.Leaf()))
	}
}

func TestCheckResponse(t *testing.T) {
	ca := spiffetest.New(t, td)
	foreign := spiffetest.New(t, td)
	svid := ca.SVID(t, connID, time.Hour)
	key := svid.PrivateKey.(*ecdsa.PrivateKey)
	der := func(certs ...*x509.Certificate) [][]byte {
		var out [][]byte
		for _, c := range certs {
			out = append(out, c.Raw)
		}
		return out
	}
	tests := []struct {
		name    string
		resp    hubapi.SVIDResponse
		wantMsg string // empty: good
	}{
		{name: "good", resp: hubapi.SVIDResponse{Chain: der(svid.Certificates...), Bundle: der(ca.Root)}},
		{name: "no chain", resp: hubapi.SVIDResponse{Bundle: der(ca.Root)}, wantMsg: "hub answer lacks the SVID or the bundle"},
		{name: "no bundle", resp: hubapi.SVIDResponse{Chain: der(svid.Certificates...)}, wantMsg: "hub answer lacks the SVID or the bundle"},
		{name: "chain not DER", resp: hubapi.SVIDResponse{Chain: [][]byte{[]byte("x")}, Bundle: der(ca.Root)}, wantMsg: "SVID from hub: "},
		{name: "bundle not DER", resp: hubapi.SVIDResponse{Chain: der(svid.Certificates...), Bundle: [][]byte{[]byte("x")}}, wantMsg: "bundle from hub: "},
		{name: "SVID for another key", resp: hubapi.SVIDResponse{Chain: der(ca.SVID(t, connID, time.Hour).Certificates...), Bundle: der(ca.Root)},
			wantMsg: "hub issued an SVID for another key"},
		{name: "SVID under another root", resp: hubapi.SVIDResponse{Chain: der(svid.Certificates...), Bundle: der(foreign.Root)},
			wantMsg: "SVID from hub does not verify: "},
		{name: "SVID for another ID", resp: hubapi.SVIDResponse{Chain: der(svid.Certificates...), Bundle: der(ca.Root)},
			wantMsg: "hub issued " + connID + ", want " + otherID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := conn
			if tt.name == "SVID for another ID" {
				want = other
			}
			got, roots, err := checkResponse(&tt.resp, key, want)
			if tt.wantMsg == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got.ID != conn || got.PrivateKey != key || len(roots) != 1 || !roots[0].Equal(ca.Root) {
					t.Errorf("checkResponse = %s, %d roots", got.ID, len(roots))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("err = %v, want %q", err, tt.wantMsg)
			}
		})
	}
}

func TestIsRefusal(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&hubapi.Error{Status: http.StatusBadRequest}, true},
		{&hubapi.Error{Status: http.StatusForbidden}, true},
		{fmt.Errorf("renew: %w", &hubapi.Error{Status: http.StatusNotFound}), true},
		{&hubapi.Error{Status: http.StatusTooManyRequests}, false}, // slow down, not no
		{&hubapi.Error{Status: http.StatusServiceUnavailable}, false},
		{errors.New("connection refused"), false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := IsRefusal(tt.err); got != tt.want {
			t.Errorf("IsRefusal(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestSetHubRegistersMetrics(t *testing.T) {
	ca := spiffetest.New(t, td)
	dir := t.TempDir()
	saveSVID(t, dir, ca.SVID(t, connID, time.Hour), ca.Root)
	l, err := LoadLocal(dir, conn, discard())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SetHub(nil, nil); err != nil {
		t.Errorf("SetHub without a registry: %v", err)
	}
	reg := prometheus.NewRegistry()
	if err := l.SetHub(nil, reg); err != nil {
		t.Fatal(err)
	}
	l2, err := LoadLocal(dir, conn, discard())
	if err != nil {
		t.Fatal(err)
	}
	if err := l2.SetHub(nil, reg); err == nil {
		t.Error("two sources registered their metrics on one registry")
	}
}

// fakeHub answers enroll and renew as the hub's API does, or as answer says. It serves a hub node SVID
// with the root in the chain, so both the pinned first contact and the bundle-verified renewal accept it.
type fakeHub struct {
	ca    *spiffetest.CA
	srv   *httptest.Server
	calls atomic.Int64
	// answer makes the response to a CSR for id; nil issues the SVID for an hour.
	answer func(t *testing.T, csr *x509.CertificateRequest) (int, any)
}

func newFakeHub(t *testing.T, ca *spiffetest.CA) *fakeHub {
	t.Helper()
	h := &fakeHub{ca: ca}
	hub := ca.SVID(t, hubNodeID, time.Hour)
	cert := tls.Certificate{Certificate: [][]byte{hub.Certificates[0].Raw, ca.Root.Raw}, PrivateKey: hub.PrivateKey, Leaf: hub.Certificates[0]}
	mux := http.NewServeMux()
	handle := func(w http.ResponseWriter, r *http.Request, csrDER []byte) {
		h.calls.Add(1)
		csr, err := x509.ParseCertificateRequest(csrDER)
		if err != nil || csr.CheckSignature() != nil || len(csr.URIs) != 1 {
			http.Error(w, `{"error":"bad csr"}`, http.StatusBadRequest)
			return
		}
		status, body := http.StatusOK, any(hubapi.SVIDResponse{SPIFFEID: csr.URIs[0].String(),
			Chain: [][]byte{ca.Issue(t, csr.PublicKey, csr.URIs[0].String(), time.Hour).Raw}, Bundle: [][]byte{ca.Root.Raw}, TrustDomain: td})
		if h.answer != nil {
			status, body = h.answer(t, csr)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(body)
	}
	mux.HandleFunc("POST "+hubapi.PathRenew, func(w http.ResponseWriter, r *http.Request) {
		// Renewal is over mutual TLS with the current SVID: the fake checks that much.
		if len(r.TLS.PeerCertificates) == 0 || len(r.TLS.PeerCertificates[0].URIs) != 1 || r.TLS.PeerCertificates[0].URIs[0].String() != connID {
			http.Error(w, `{"error":"no client SVID"}`, http.StatusUnauthorized)
			return
		}
		var req hubapi.RenewRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, `{"error":"bad body"}`, http.StatusBadRequest)
			return
		}
		handle(w, r, req.CSR)
	})
	mux.HandleFunc("POST "+hubapi.PathEnroll, func(w http.ResponseWriter, r *http.Request) {
		var req hubapi.EnrollRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, `{"error":"bad body"}`, http.StatusBadRequest)
			return
		}
		handle(w, r, req.CSR)
	})
	h.srv = httptest.NewUnstartedServer(mux)
	// Handshakes that tests make fail on purpose would otherwise print to stderr.
	h.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	h.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS13}
	h.srv.StartTLS()
	t.Cleanup(h.srv.Close)
	return h
}

// enrolled is a connector whose identity directory holds an SVID from ca, with a hub client for h.
func enrolled(t *testing.T, ca *spiffetest.CA, h *fakeHub, life time.Duration) (*Local, *prometheus.Registry) {
	t.Helper()
	var urls []string
	if h != nil {
		urls = []string{h.srv.URL}
	}
	return enrolledAt(t, ca, urls, life)
}

// enrolledAt is enrolled with a hub client of the nodes at urls, none if there are none.
func enrolledAt(t *testing.T, ca *spiffetest.CA, urls []string, life time.Duration) (*Local, *prometheus.Registry) {
	t.Helper()
	dir := t.TempDir()
	saveSVID(t, dir, ca.SVID(t, connID, life), ca.Root)
	l, err := LoadLocal(dir, conn, discard())
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	var client *hubapi.Client
	if len(urls) > 0 {
		client, err = HubClient(urls, l, conn.TrustDomain(), discard(), reg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(client.CloseIdle)
	}
	if err := l.SetHub(client, reg); err != nil {
		t.Fatal(err)
	}
	return l, reg
}

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestRenewFailsOver renews with the second hub node while the first is down or failing, counts the move, and
// renews with the second again next time.
func TestRenewFailsOver(t *testing.T) {
	ca := spiffetest.New(t, td)
	tests := []struct {
		name  string
		first func(t *testing.T) (url string, calls func() int64)
	}{
		{name: "first node down", first: func(t *testing.T) (string, func() int64) {
			return hubapitest.DeadURL(t), func() int64 { return 0 }
		}},
		{name: "first node without a leader", first: func(t *testing.T) (string, func() int64) {
			h := newFakeHub(t, ca)
			h.answer = func(*testing.T, *x509.CertificateRequest) (int, any) {
				return http.StatusServiceUnavailable, map[string]string{"error": "no raft leader"}
			}
			return h.srv.URL, h.calls.Load
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first, firstCalls := tt.first(t)
			second := newFakeHub(t, ca)
			l, reg := enrolledAt(t, ca, []string{first, second.srv.URL}, time.Hour)
			for i := range 2 {
				if err := l.Renew(context.Background()); err != nil {
					t.Fatalf("renewal %d: %v", i, err)
				}
			}
			if n := second.calls.Load(); n != 2 {
				t.Errorf("the second node saw %d renewals, want 2", n)
			}
			if n := firstCalls(); n > 1 {
				t.Errorf("the first node saw %d renewals, want at most 1: the client sticks to the node that answered", n)
			}
			if got := counter(t, reg, "mydata_connector_hub_failovers_total"); got != 1 {
				t.Errorf("failovers = %v, want 1", got)
			}
		})
	}
}

func renewals(t *testing.T, reg *prometheus.Registry, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "mydata_connector_svid_renewals_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func readFiles(t *testing.T, dir string) (svid, bundle []byte) {
	t.Helper()
	sp, bp := Paths(dir)
	svid, err := os.ReadFile(sp)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err = os.ReadFile(bp)
	if err != nil {
		t.Fatal(err)
	}
	return svid, bundle
}

func TestRenew(t *testing.T) {
	ca := spiffetest.New(t, td)
	tests := []struct {
		name    string
		noHub   bool
		down    bool
		answer  func(t *testing.T, csr *x509.CertificateRequest) (int, any)
		wantMsg string // empty: renewed
		refusal bool
		outcome string // counted by Renew itself; failures are counted by Run
	}{
		{name: "renewed", outcome: "ok"},
		{name: "no hub client", noHub: true, wantMsg: "no hub client for renewal"},
		{name: "hub down", down: true, wantMsg: "connect"},
		{name: "refused", answer: func(*testing.T, *x509.CertificateRequest) (int, any) {
			return http.StatusForbidden, map[string]string{"error": "connector is suspended"}
		}, wantMsg: "connector is suspended", refusal: true},
		{name: "hub failing", answer: func(*testing.T, *x509.CertificateRequest) (int, any) {
			return http.StatusServiceUnavailable, map[string]string{"error": "no raft leader"}
		}, wantMsg: "no raft leader"},
		{name: "SVID for another key", answer: func(t *testing.T, _ *x509.CertificateRequest) (int, any) {
			return http.StatusOK, hubapi.SVIDResponse{Chain: [][]byte{ca.SVID(t, connID, time.Hour).Certificates[0].Raw}, Bundle: [][]byte{ca.Root.Raw}}
		}, wantMsg: "hub issued an SVID for another key"},
		{name: "SVID for another connector", answer: func(t *testing.T, csr *x509.CertificateRequest) (int, any) {
			return http.StatusOK, hubapi.SVIDResponse{Chain: [][]byte{ca.Issue(t, csr.PublicKey, otherID, time.Hour).Raw}, Bundle: [][]byte{ca.Root.Raw}}
		}, wantMsg: "hub issued " + otherID + ", want " + connID},
		{name: "SVID under another root", answer: func(t *testing.T, csr *x509.CertificateRequest) (int, any) {
			return http.StatusOK, hubapi.SVIDResponse{Chain: [][]byte{spiffetest.New(t, td).Issue(t, csr.PublicKey, connID, time.Hour).Raw}, Bundle: [][]byte{ca.Root.Raw}}
		}, wantMsg: "SVID from hub does not verify"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h *fakeHub
			if !tt.noHub {
				h = newFakeHub(t, ca)
				h.answer = tt.answer
			}
			l, reg := enrolled(t, ca, h, time.Hour)
			if tt.down {
				h.srv.Close()
			}
			before := l.Leaf()
			svidBefore, bundleBefore := readFiles(t, l.dir)

			err := l.Renew(context.Background())
			if tt.wantMsg != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Fatalf("Renew: %v, want %q", err, tt.wantMsg)
				}
				if IsRefusal(err) != tt.refusal {
					t.Errorf("IsRefusal(%v) = %v, want %v", err, !tt.refusal, tt.refusal)
				}
				// Nothing is kept unless the hub issued a good SVID.
				if s, b := readFiles(t, l.dir); string(s) != string(svidBefore) || string(b) != string(bundleBefore) {
					t.Error("a failed renewal changed the identity files")
				}
				if !l.Leaf().Equal(before) {
					t.Error("a failed renewal changed the SVID in use")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			now, _ := l.GetX509SVID()
			if now.Certificates[0].Equal(before) || now.ID != conn {
				t.Fatalf("SVID in use is %s, the old one: %v", now.ID, now.Certificates[0].Equal(before))
			}
			// A renewal makes a new key, so a stolen old key dies with the old certificate.
			if now.PrivateKey.Public().(*ecdsa.PublicKey).Equal(before.PublicKey) {
				t.Error("renewal kept the old key")
			}
			// What was saved is what is in use: a restart picks up the renewed SVID.
			again, err := LoadLocal(l.dir, conn, discard())
			if err != nil {
				t.Fatal(err)
			}
			if !again.Leaf().Equal(now.Certificates[0]) {
				t.Error("the identity directory does not hold the renewed SVID")
			}
			if got := renewals(t, reg, tt.outcome); got != 1 {
				t.Errorf("renewals{outcome=%q} = %v, want 1", tt.outcome, got)
			}
		})
	}
}

// Run renews once the SVID is past half its life. The wait is at least a second, so this takes one.
func TestRunRenewsPastHalfLife(t *testing.T) {
	ca := spiffetest.New(t, td)
	h := newFakeHub(t, ca)
	// Issued a minute ago for 61 s: past half-life at once.
	l, reg := enrolled(t, ca, h, time.Second)
	before := l.Leaf()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	deadline := time.After(8 * time.Second)
	for l.Leaf().Equal(before) {
		select {
		case <-deadline:
			cancel()
			t.Fatal("Run did not renew an SVID past half-life within 8 s")
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if got := renewals(t, reg, "ok"); got != 1 {
		t.Errorf("renewals{ok} = %v, want 1", got)
	}
	if n := h.calls.Load(); n != 1 {
		// The renewed SVID lives an hour: the next renewal is half an hour away.
		t.Errorf("hub saw %d renewals, want 1", n)
	}
}

func TestRunStopsWhenCancelled(t *testing.T) {
	ca := spiffetest.New(t, td)
	for _, life := range []time.Duration{time.Hour, time.Second} {
		t.Run(fmt.Sprint(life), func(t *testing.T) {
			l, _ := enrolled(t, ca, nil, life)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := l.Run(ctx); err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
}

func TestEnroll(t *testing.T) {
	ca := spiffetest.New(t, td)
	pin := sha256.Sum256(ca.Root.Raw)
	tests := []struct {
		name    string
		pin     [32]byte // zero: the token's
		token   [32]byte // the CA fingerprint in the token
		answer  func(t *testing.T, csr *x509.CertificateRequest) (int, any)
		wantMsg string
		calls   int64 // requests the hub must have seen
		// deadFirst lists a hub node that is down before the one that answers.
		deadFirst bool
		// existing is what the identity directory holds before: nothing, an SVID ("svid", issued for other,
		// valid for a day), or a file that is no SVID ("garbage").
		existing string
		force    bool
	}{
		{name: "enrolled", token: pin, calls: 1},
		{name: "enrolled with the second hub node", token: pin, calls: 1, deadFirst: true},
		{name: "enrolled with an explicit pin", pin: pin, token: pin, calls: 1},
		{name: "token from another hub", pin: pin, token: [32]byte{1},
			wantMsg: "the join token was made by a hub with CA sha256:0100", calls: 0},
		{name: "hub is not the pinned one", token: [32]byte{1},
			wantMsg: "does not contain the pinned CA", calls: 0},
		{name: "token refused", token: pin, answer: func(*testing.T, *x509.CertificateRequest) (int, any) {
			return http.StatusForbidden, map[string]string{"error": "join token unknown or used"}
		}, wantMsg: "enroll: hub: join token unknown or used (HTTP 403)", calls: 1},
		{name: "bundle without the pinned CA", token: pin, answer: func(t *testing.T, csr *x509.CertificateRequest) (int, any) {
			other := spiffetest.New(t, td)
			return http.StatusOK, hubapi.SVIDResponse{Chain: [][]byte{other.Issue(t, csr.PublicKey, connID, time.Hour).Raw}, Bundle: [][]byte{other.Root.Raw}}
		}, wantMsg: "hub's bundle does not hold the pinned CA", calls: 1},
		// A join token is spent on first use: enrolling again must say what is there, not pass the hub's
		// "unknown or already used" on.
		{name: "already enrolled", token: pin, existing: "svid",
			wantMsg: "this connector is already enrolled as " + otherID + ", with an SVID valid until " + time.Now().Add(24*time.Hour).UTC().Format("2006-01-02T"), calls: 0},
		{name: "already enrolled, says how to enroll again", token: pin, existing: "svid",
			wantMsg: "To enroll again, with a new join token: stop the connector, then run enroll with --force", calls: 0},
		{name: "unreadable identity", token: pin, existing: "garbage",
			wantMsg: "identity directory holds an SVID that cannot be read", calls: 0},
		{name: "forced over an identity", token: pin, existing: "svid", force: true, calls: 1},
		{name: "forced over an unreadable identity", token: pin, existing: "garbage", force: true, calls: 1},
		{name: "forced, refused: the old identity stays", token: pin, existing: "svid", force: true,
			answer: func(*testing.T, *x509.CertificateRequest) (int, any) {
				return http.StatusForbidden, map[string]string{"error": "join token unknown or used"}
			}, wantMsg: "join token unknown or used", calls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newFakeHub(t, ca)
			h.answer = tt.answer
			dir := filepath.Join(t.TempDir(), "identity")
			var before []byte
			switch tt.existing {
			case "svid":
				if err := os.MkdirAll(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				saveSVID(t, dir, ca.SVID(t, otherID, 24*time.Hour), ca.Root)
				before, _ = readFiles(t, dir)
			case "garbage":
				if err := os.MkdirAll(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				sp, _ := Paths(dir)
				before = []byte("not a PEM file\n")
				if err := os.WriteFile(sp, before, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			tok := jointoken.New(tt.token)
			urls := []string{h.srv.URL}
			if tt.deadFirst {
				urls = []string{hubapitest.DeadURL(t), h.srv.URL}
			}
			svid, err := Enroll(context.Background(), EnrollRequest{Dir: dir, HubURLs: urls, Token: tok, Pin: tt.pin,
				Org: "moi", Name: "moi-dp", ID: conn, Force: tt.force})
			if n := h.calls.Load(); n != tt.calls {
				t.Errorf("hub saw %d enrollments, want %d", n, tt.calls)
			}
			if tt.wantMsg != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Fatalf("Enroll: %v, want %q", err, tt.wantMsg)
				}
				// Nothing is written unless the hub issued a good SVID.
				if before != nil {
					sp, _ := Paths(dir)
					if after, err := os.ReadFile(sp); err != nil || string(after) != string(before) {
						t.Errorf("a failed enrollment changed the identity that was there: %v", err)
					}
				} else if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("a failed enrollment left %s: %v", dir, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			l, err := LoadLocal(dir, conn, discard())
			if err != nil {
				t.Fatal(err)
			}
			if !l.Leaf().Equal(svid.Certificates[0]) {
				t.Error("the identity directory does not hold the enrolled SVID")
			}
			if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("identity directory: %v, mode %v, want 0700", err, fi.Mode().Perm())
			}
		})
	}
}

func TestNewSPIREUnreachable(t *testing.T) {
	tests := []struct {
		name string
		addr string
	}{
		{"no agent at the socket", "unix://" + filepath.Join(t.TempDir(), "agent.sock")},
		{"not a Workload API address", "http://localhost:8081"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The source retries until ctx ends; a short deadline bounds the test, not the outcome.
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			s, err := NewSPIRE(ctx, tt.addr, conn)
			if err == nil {
				s.Close()
				t.Fatal("NewSPIRE without an agent: no error")
			}
			if !strings.Contains(err.Error(), "SPIRE Workload API "+tt.addr) {
				t.Errorf("err = %q, want it to name the address", err)
			}
		})
	}
}

func TestSPIRERunStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := (&SPIRE{}).Run(ctx); err != nil {
		t.Errorf("Run: %v", err)
	}
}
