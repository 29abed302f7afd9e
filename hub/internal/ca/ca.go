// Package ca is the federation's embedded certificate authority: it keeps the root key on the hub's disk and
// issues X.509-SVIDs to connectors, hub nodes and operators, and intermediate CAs to agencies that run SPIRE.
package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/pemfile"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

const (
	rootCertFile = "root.crt"
	rootKeyFile  = "root.key"
	// backdate tolerates clocks of peers that run slightly behind ours.
	backdate = time.Minute
)

// CA issues certificates under the federation's root.
type CA struct {
	td   spiffeid.TrustDomain
	root *x509.Certificate
	key  crypto.Signer
	now  func() time.Time
}

// LoadOrCreate opens the CA kept in dir, or makes one there (ECDSA P-256, key file mode 0600) if dir holds
// none. created says which happened.
func LoadOrCreate(dir string, td spiffeid.TrustDomain, rootTTL time.Duration) (ca *CA, created bool, err error) {
	certPath, keyPath := filepath.Join(dir, rootCertFile), filepath.Join(dir, rootKeyFile)
	if _, err := os.Stat(keyPath); err == nil {
		ca, err := load(certPath, keyPath, td)
		return ca, false, err
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, false, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, false, err
	}
	now := time.Now()
	tdURI := td.ID().URL()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{Organization: []string{"MyData Federation"}, CommonName: "MyData Federation root CA " + td.Name()},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(rootTTL),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		URIs:                  []*url.URL{tdURI},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, false, err
	}
	keyPEM, err := pemfile.EncodeKey(key)
	if err != nil {
		return nil, false, err
	}
	// The key is written first and the certificate last, so a crash in between leaves no certificate without
	// its key; the next start then sees a key without certificate and reports it.
	if err := pemfile.WriteAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, false, err
	}
	if err := pemfile.WriteAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return nil, false, err
	}
	ca, err = load(certPath, keyPath, td)
	return ca, true, err
}

func load(certPath, keyPath string, td spiffeid.TrustDomain) (*CA, error) {
	certs, err := pemfile.ReadCertificates(certPath)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	key, err := pemfile.ReadKey(keyPath)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	root := certs[0]
	if !root.IsCA {
		return nil, fmt.Errorf("%s is not a CA certificate", certPath)
	}
	if !publicKeysEqual(root.PublicKey, key.Public()) {
		return nil, fmt.Errorf("%s does not belong to the key in %s", certPath, keyPath)
	}
	return &CA{td: td, root: root, key: key, now: time.Now}, nil
}

// TrustDomain is the CA's trust domain.
func (c *CA) TrustDomain() spiffeid.TrustDomain { return c.td }

// Root is the root certificate.
func (c *CA) Root() *x509.Certificate { return c.root }

// Bundle is the trust bundle to publish: the root alone.
func (c *CA) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(c.td, []*x509.Certificate{c.root})
}

// Fingerprint is the SHA-256 of the root certificate, which connectors pin on first contact.
func (c *CA) Fingerprint() [32]byte { return sha256.Sum256(c.root.Raw) }

// ErrCSR wraps every reason a certificate request is refused.
var ErrCSR = errors.New("certificate request refused")

// SignCSR issues an X.509-SVID for id to the key in the CSR, which must ask for exactly id and nothing else.
func (c *CA) SignCSR(csr *x509.CertificateRequest, id spiffeid.ID, ttl time.Duration) (*x509.Certificate, error) {
	if err := CheckCSR(csr, id); err != nil {
		return nil, err
	}
	return c.issue(csr.PublicKey, id, ttl)
}

// CheckCSR checks the CSR's signature, key and names: exactly one URI SAN equal to id.
func CheckCSR(csr *x509.CertificateRequest, id spiffeid.ID) error {
	if err := csr.CheckSignature(); err != nil {
		return fmt.Errorf("%w: signature: %v", ErrCSR, err)
	}
	if err := checkKey(csr.PublicKey); err != nil {
		return fmt.Errorf("%w: %v", ErrCSR, err)
	}
	if len(csr.DNSNames)+len(csr.EmailAddresses)+len(csr.IPAddresses) > 0 {
		return fmt.Errorf("%w: only a SPIFFE ID URI may be requested", ErrCSR)
	}
	if len(csr.URIs) != 1 {
		return fmt.Errorf("%w: want exactly one URI SAN (%s), got %d", ErrCSR, id, len(csr.URIs))
	}
	if got := csr.URIs[0].String(); got != id.String() {
		return fmt.Errorf("%w: asks for %s but this enrollment allows only %s", ErrCSR, got, id)
	}
	return nil
}

// Issue makes a key pair here and issues it an SVID; for the hub's own nodes and for operators.
func (c *CA) Issue(id spiffeid.ID, ttl time.Duration) ([]*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	cert, err := c.issue(key.Public(), id, ttl)
	if err != nil {
		return nil, nil, err
	}
	return []*x509.Certificate{cert}, key, nil
}

func (c *CA) issue(pub crypto.PublicKey, id spiffeid.ID, ttl time.Duration) (*x509.Certificate, error) {
	if id.TrustDomain() != c.td {
		return nil, fmt.Errorf("%w: %s is not in trust domain %s", ErrCSR, id, c.td)
	}
	now := c.now()
	notAfter := now.Add(ttl)
	if notAfter.After(c.root.NotAfter) {
		notAfter = c.root.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{Organization: []string{"MyData Federation"}},
		// The backdate stays small against the lifetime, so that "renew at half-life", counted from
		// NotBefore, falls well after the moment of issue even for short test lifetimes.
		NotBefore:             now.Add(-min(backdate, ttl/10)),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{id.URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.root, pub, c.key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// IssueIntermediate makes a CA certificate under the root for pub, for one organisation's SPIRE server to
// use as its upstream authority. Its SVIDs then verify against the federation bundle, and its URI SAN binds
// them to the organisation: peers accept only that organisation's connector IDs under it (fedid.CheckChain).
func (c *CA) IssueIntermediate(pub crypto.PublicKey, org string, ttl time.Duration) (*x509.Certificate, error) {
	orgURI, err := fedid.OrgCAURI(c.td, org)
	if err != nil {
		return nil, err
	}
	if err := checkKey(pub); err != nil {
		return nil, err
	}
	now := c.now()
	notAfter := now.Add(ttl)
	if notAfter.After(c.root.NotAfter) {
		notAfter = c.root.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{Organization: []string{"MyData Federation"}, CommonName: "MyData intermediate CA for " + org},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		URIs:                  []*url.URL{orgURI.URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.root, pub, c.key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func checkKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return errors.New("ECDSA keys must be on P-256 or P-384")
		}
	case ed25519.PublicKey:
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return errors.New("RSA keys must have at least 2048 bits")
		}
	default:
		return fmt.Errorf("unsupported key type %T", pub)
	}
	return nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

func randomSerial() *big.Int {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	b[0] &= 0x7f
	return new(big.Int).SetBytes(b)
}

// Key is the root's private key: handed, over mutual TLS, to a hub node that joins the cluster, so that
// every node issues SVIDs (docs/cluster.md says why the root is shared rather than an intermediate per node).
func (c *CA) Key() crypto.Signer { return c.key }
