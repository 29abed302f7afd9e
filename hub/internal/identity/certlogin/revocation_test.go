package certlogin_test

import (
	"context"
	"crypto"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/mydatafed/mydata/hub/internal/identity/certlogin"
	"github.com/mydatafed/mydata/pkg/cardca"
)

// crlServer serves whatever CRL it was last given and counts requests.
type crlServer struct {
	mu      sync.Mutex
	der     []byte
	fail    bool
	fetches atomic.Int32
}

func (s *crlServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.fetches.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	_, _ = w.Write(s.der)
}

func (s *crlServer) set(der []byte, fail bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.der, s.fail = der, fail
}

func TestCRLOverHTTP(t *testing.T) {
	f := newFixture(t, false)
	leaf := f.citizen(t, cardca.CitizenOptions{})
	now := f.ca.Now()
	crl, err := f.ca.CRL(now, now.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	srv := &crlServer{der: crl}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	v := f.verifier(t, func(c *certlogin.Config) {
		c.CRLs = []string{hs.URL + "/citizen.crl"}
		c.CRLRefresh = 10 * time.Minute
	})
	challenge := certlogin.NewChallenge()
	der := sign(t, leaf, challenge, false)
	verify := func() error {
		_, err := v.Verify(context.Background(), der, challenge, citizenID)
		return err
	}
	steps := []struct {
		name        string
		before      func()
		want        error
		wantFetches int32
	}{
		{"first login fetches", nil, nil, 1},
		{"second login uses the cache", nil, nil, 1},
		{"after crl_refresh it fetches again", func() { f.clock.Advance(11 * time.Minute) }, nil, 2},
		{"a revocation shows after the next refresh", func() {
			f.ca.Revoke(leaf.Cert)
			crl, err := f.ca.CRL(f.clock.Now(), f.clock.Now().Add(24*time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			srv.set(crl, false)
			if err := verify(); err != nil || srv.fetches.Load() != 2 {
				t.Fatalf("before the refresh: %v, %d fetches", err, srv.fetches.Load())
			}
			f.clock.Advance(11 * time.Minute)
		}, certlogin.ErrRevoked, 3},
	}
	for _, s := range steps {
		if s.before != nil {
			s.before()
		}
		if err := verify(); !errors.Is(err, s.want) || (s.want == nil && err != nil) {
			t.Fatalf("%s: got %v, want %v", s.name, err, s.want)
		}
		if got := srv.fetches.Load(); got != s.wantFetches {
			t.Fatalf("%s: %d fetches, want %d", s.name, got, s.wantFetches)
		}
	}
}

func TestCRLServerDown(t *testing.T) {
	f := newFixture(t, false)
	leaf := f.citizen(t, cardca.CitizenOptions{})
	now := f.ca.Now()
	crl, err := f.ca.CRL(now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	srv := &crlServer{der: crl}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	v := f.verifier(t, func(c *certlogin.Config) { c.CRLs = []string{hs.URL} })
	challenge := certlogin.NewChallenge()
	der := sign(t, leaf, challenge, false)
	verify := func() error {
		_, err := v.Verify(context.Background(), der, challenge, citizenID)
		return err
	}
	if err := verify(); err != nil {
		t.Fatal(err)
	}
	srv.set(nil, true)
	// Within nextUpdate the cached copy serves and nothing is fetched.
	f.clock.Advance(30 * time.Minute)
	if err := verify(); err != nil || srv.fetches.Load() != 1 {
		t.Fatalf("within nextUpdate: %v, %d fetches", err, srv.fetches.Load())
	}
	// Past nextUpdate the refresh fails and the stale copy is not enough.
	f.clock.Advance(31 * time.Minute)
	if err := verify(); !errors.Is(err, certlogin.ErrRevocationUnknown) {
		t.Fatalf("past nextUpdate with the server down: %v", err)
	}
	// A failed server is not asked again at every login.
	if err := verify(); !errors.Is(err, certlogin.ErrRevocationUnknown) || srv.fetches.Load() != 2 {
		t.Fatalf("right after a failure: %v, %d fetches", err, srv.fetches.Load())
	}
	// An older CRL, correctly signed, replayed by someone in between, is refused.
	old, err := f.ca.CRL(now.Add(-time.Hour), now.Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	srv.set(old, false)
	f.clock.Advance(time.Minute)
	if err := verify(); !errors.Is(err, certlogin.ErrRevocationUnknown) || srv.fetches.Load() != 3 {
		t.Fatalf("replayed CRL: %v, %d fetches", err, srv.fetches.Load())
	}
	fresh, err := f.ca.CRL(f.clock.Now(), f.clock.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	srv.set(fresh, false)
	f.clock.Advance(time.Minute)
	if err := verify(); err != nil {
		t.Fatalf("server back: %v", err)
	}
	// A login whose context has ended gives up.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f.clock.Advance(2 * time.Hour)
	if _, err := v.Verify(ctx, der, challenge, citizenID); !errors.Is(err, certlogin.ErrRevocationUnknown) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestRunPrefetches(t *testing.T) {
	f := newFixture(t, false)
	crl, err := f.ca.CRL(time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	srv := &crlServer{der: crl}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	v := f.verifier(t, func(c *certlogin.Config) { c.CRLs = []string{hs.URL} })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	for deadline := time.Now().Add(10 * time.Second); srv.fetches.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("Run fetched nothing")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	challenge := certlogin.NewChallenge()
	leaf := f.citizen(t, cardca.CitizenOptions{})
	if _, err := v.Verify(context.Background(), sign(t, leaf, challenge, false), challenge, citizenID); err != nil {
		t.Fatal(err)
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches, want the one Run made", n)
	}
}

// ocspResponder answers for the CA's issuing CA with the status it is set to.
type ocspResponder struct {
	t      *testing.T
	ca     *cardca.CA
	status int
	// signer, when set, signs instead of the issuing CA (a wrong key).
	signer *cardca.CA
	stale  bool
	fail   bool
}

func (o *ocspResponder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if o.fail {
		http.Error(w, "down", http.StatusInternalServerError)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req, err := ocsp.ParseRequest(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	now := o.ca.Now()
	tmpl := ocsp.Response{
		Status:       o.status,
		SerialNumber: req.SerialNumber,
		ThisUpdate:   now.Add(-time.Minute),
		NextUpdate:   now.Add(time.Hour),
		IssuerHash:   req.HashAlgorithm,
	}
	if o.status == ocsp.Revoked {
		tmpl.RevokedAt = now.Add(-time.Hour)
		tmpl.RevocationReason = ocsp.KeyCompromise
	}
	if o.stale {
		tmpl.ThisUpdate, tmpl.NextUpdate = now.Add(-3*time.Hour), now.Add(-2*time.Hour)
	}
	issuer, key := o.ca.Intermediate, crypto.Signer(o.ca.IntermediateKey)
	if o.signer != nil {
		key = o.signer.IntermediateKey
	}
	resp, err := ocsp.CreateResponse(issuer, issuer, tmpl, key)
	if err != nil {
		o.t.Error(err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/ocsp-response")
	_, _ = w.Write(resp)
}

func TestOCSP(t *testing.T) {
	other := newFixture(t, false)
	cases := []struct {
		name    string
		resp    ocspResponder
		withCRL bool
		revoke  bool // in the CRL
		want    error
		wantRev string
	}{
		{name: "good", resp: ocspResponder{status: ocsp.Good}, wantRev: "ocsp"},
		{name: "revoked", resp: ocspResponder{status: ocsp.Revoked}, want: certlogin.ErrRevoked},
		{name: "unknown", resp: ocspResponder{status: ocsp.Unknown}, want: certlogin.ErrRevocationUnknown},
		{name: "stale answer", resp: ocspResponder{status: ocsp.Good, stale: true}, want: certlogin.ErrRevocationUnknown},
		{name: "signed by another CA", resp: ocspResponder{status: ocsp.Good, signer: other.ca}, want: certlogin.ErrRevocationUnknown},
		{name: "responder down", resp: ocspResponder{fail: true}, want: certlogin.ErrRevocationUnknown},
		{name: "responder down, CRL good", resp: ocspResponder{fail: true}, withCRL: true, wantRev: "crl"},
		{name: "good and CRL good", resp: ocspResponder{status: ocsp.Good}, withCRL: true, wantRev: "crl+ocsp"},
		{name: "good but revoked in the CRL", resp: ocspResponder{status: ocsp.Good}, withCRL: true, revoke: true, want: certlogin.ErrRevoked},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, false)
			resp := tc.resp
			resp.t, resp.ca = t, f.ca
			hs := httptest.NewServer(&resp)
			defer hs.Close()
			leaf := f.citizen(t, cardca.CitizenOptions{OCSPServer: []string{hs.URL}})
			if tc.revoke {
				f.ca.Revoke(leaf.Cert)
				f.rewriteCRL(t, time.Time{}, time.Time{})
			}
			v := f.verifier(t, func(c *certlogin.Config) {
				c.OCSP = true
				if !tc.withCRL {
					c.CRLs = nil
				}
			})
			challenge := certlogin.NewChallenge()
			proof, err := v.Verify(context.Background(), sign(t, leaf, challenge, true), challenge, citizenID)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("got %v, want %v", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if proof.Revocation != tc.wantRev {
				t.Fatalf("revocation %q, want %q", proof.Revocation, tc.wantRev)
			}
		})
	}
	t.Run("certificate without a responder", func(t *testing.T) {
		f := newFixture(t, false)
		v := f.verifier(t, func(c *certlogin.Config) { c.OCSP, c.CRLs = true, nil })
		challenge := certlogin.NewChallenge()
		leaf := f.citizen(t, cardca.CitizenOptions{})
		if _, err := v.Verify(context.Background(), sign(t, leaf, challenge, false), challenge, citizenID); !errors.Is(err, certlogin.ErrRevocationUnknown) {
			t.Fatalf("got %v", err)
		}
	})
}
