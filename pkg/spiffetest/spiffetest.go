// Package spiffetest is a throwaway certificate authority for tests: it issues X.509-SVIDs for any SPIFFE ID
// under a fresh root, so tests of TLS, QUIC and signatures need no hub.
package spiffetest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// CA is a test root.
type CA struct {
	TD     spiffeid.TrustDomain
	Root   *x509.Certificate
	key    *ecdsa.PrivateKey
	serial atomic.Int64
}

// New makes a CA for the trust domain td (e.g. "mydata.test").
func New(t testing.TB, td string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c := &CA{TD: spiffeid.RequireTrustDomainFromString(td), key: key}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root " + td},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, URIs: []*url.URL{c.TD.ID().URL()}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c.Root, _ = x509.ParseCertificate(der)
	c.serial.Store(1)
	return c
}

// Bundle is the CA's trust bundle.
func (c *CA) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(c.TD, []*x509.Certificate{c.Root})
}

// SVID issues an SVID for id (a full spiffe:// URI), valid from now for ttl.
func (c *CA) SVID(t testing.TB, id string, ttl time.Duration) *x509svid.SVID {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := c.Issue(t, key.Public(), id, ttl)
	return &x509svid.SVID{ID: spiffeid.RequireFromString(id), Certificates: []*x509.Certificate{leaf}, PrivateKey: key}
}

// Issue certifies pub as id (a full spiffe:// URI), valid from a minute ago for ttl: what a hub does with
// a CSR.
func (c *CA) Issue(t testing.TB, pub crypto.PublicKey, id string, ttl time.Duration) *x509.Certificate {
	t.Helper()
	sid := spiffeid.RequireFromString(id)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(c.serial.Add(1)), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(ttl),
		URIs: []*url.URL{sid.URL()}, KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.Root, pub, c.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// TLSCertificate turns an SVID into a tls.Certificate.
func TLSCertificate(svid *x509svid.SVID) tls.Certificate {
	cert := tls.Certificate{PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0]}
	for _, c := range svid.Certificates {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return cert
}

// Source is a mutable x509svid.Source and x509bundle.Source, for tests that rotate an SVID.
type Source struct {
	svid   atomic.Pointer[x509svid.SVID]
	bundle *x509bundle.Bundle
}

// NewSource serves svid and the CA's bundle.
func (c *CA) NewSource(svid *x509svid.SVID) *Source {
	s := &Source{bundle: c.Bundle()}
	s.svid.Store(svid)
	return s
}

// Set replaces the SVID.
func (s *Source) Set(svid *x509svid.SVID) { s.svid.Store(svid) }

// GetX509SVID implements x509svid.Source.
func (s *Source) GetX509SVID() (*x509svid.SVID, error) { return s.svid.Load(), nil }

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (s *Source) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.bundle.GetX509BundleForTrustDomain(td)
}
