package directory

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

var td = spiffeid.RequireTrustDomainFromString("mydata.test")

// testCA makes a root and an SVID for id valid from notBefore for ttl.
func testCA(t testing.TB, id string, notBefore time.Time, ttl time.Duration) (*x509bundle.Bundle, *x509svid.SVID) {
	t.Helper()
	rk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rt := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root"}, NotBefore: notBefore.Add(-time.Hour), NotAfter: notBefore.Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	rder, _ := x509.CreateCertificate(rand.Reader, rt, rt, rk.Public(), rk)
	root, _ := x509.ParseCertificate(rder)
	lk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(id)
	lt := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: notBefore, NotAfter: notBefore.Add(ttl), URIs: []*url.URL{u},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	lder, _ := x509.CreateCertificate(rand.Reader, lt, root, lk.Public(), rk)
	leaf, _ := x509.ParseCertificate(lder)
	return x509bundle.FromX509Authorities(td, []*x509.Certificate{root}), &x509svid.SVID{ID: spiffeid.RequireFromString(id), Certificates: []*x509.Certificate{leaf}, PrivateKey: lk}
}

func TestSignVerify(t *testing.T) {
	now := time.Now()
	bundle, hub := testCA(t, "spiffe://mydata.test/hub/h1", now.Add(-time.Minute), time.Hour)
	_, conn := testCA(t, "spiffe://mydata.test/org/moi/connector/dp1", now.Add(-time.Minute), time.Hour)
	otherBundle, _ := testCA(t, "spiffe://mydata.test/hub/h1", now, time.Hour)
	doc := &Document{Version: 3, TrustDomain: "mydata.test", IssuedAt: now, ExpiresAt: now.Add(time.Hour),
		Connectors: []hubapi.Connector{{Org: "moi", Name: "dp1", Status: "active"}}}

	signed, err := Sign(doc, hub)
	if err != nil {
		t.Fatal(err)
	}
	got, err := signed.Verify(bundle, td, now)
	if err != nil || got.Version != 3 {
		t.Fatalf("verify: %v %v", got, err)
	}
	if c, ok := got.Lookup(spiffeid.RequireFromString("spiffe://mydata.test/org/moi/connector/dp1")); !ok || c.Status != "active" {
		t.Fatal("lookup failed")
	}

	// Still verifiable after the signer's SVID has expired, until the directory itself expires.
	if _, err := signed.Verify(bundle, td, now.Add(50*time.Minute)); err != nil {
		t.Fatalf("verify later: %v", err)
	}
	if _, err := signed.Verify(bundle, td, now.Add(2*time.Hour)); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired: %v", err)
	}

	tampered := *signed
	tampered.Payload = []byte(strings.Replace(string(signed.Payload), `"active"`, `"revoked"`, 1))
	bySomeoneElse, _ := Sign(doc, conn)
	wrongTD := *doc
	wrongTD.TrustDomain = "other.test"
	signedWrongTD, _ := Sign(&wrongTD, hub)
	tests := []struct {
		name string
		s    *Signed
		b    x509bundle.Source
		want string
	}{
		{"tampered", &tampered, bundle, "signature does not verify"},
		{"foreign root", signed, otherBundle, "signer"},
		{"signed by a connector", bySomeoneElse, bundle, "signer"},
		{"wrong trust domain", signedWrongTD, bundle, "trust domain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.s.Verify(tt.b, td, now); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	now := time.Now()
	_, hub := testCA(f, "spiffe://mydata.test/hub/h1", now, time.Hour)
	signed, _ := Sign(&Document{Version: 1, TrustDomain: "mydata.test", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}, hub)
	b, _ := json.Marshal(signed)
	f.Add(b)
	f.Add([]byte(`{"payload":"","signature":"","chain":[]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			return
		}
		// Whatever parses must never verify against a bundle that did not sign it.
		other, _ := testCA(t, "spiffe://mydata.test/hub/h1", now, time.Hour)
		if _, err := s.Verify(other, td, now); err == nil {
			t.Fatal("verified against a foreign bundle")
		}
	})
}
