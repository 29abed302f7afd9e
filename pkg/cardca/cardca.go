// Package testca is a two-level certificate authority for certlogin's tests and the demo: a root, an
// issuing CA under it, citizen certificates that name a national ID either way certlogin reads one,
// revocation and CRLs, and PEM files for the configuration. Serial numbers and times come from the
// options, so only the keys differ between runs. Nothing here is fit for real use.
package testca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// OIDs the test certificates use for the last four digits of the ID. They sit under IANA's example
// enterprise number (RFC 5612), so no real certificate carries them.
var (
	// OIDLast4Extension is an extension whose value is a PrintableString.
	OIDLast4Extension = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 1, 1}
	// OIDLast4Attribute is an attribute inside a SubjectDirectoryAttributes extension.
	OIDLast4Attribute = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 1, 2}

	oidSubjectDirectoryAttributes = asn1.ObjectIdentifier{2, 5, 29, 9}
)

// Options shape a CA.
type Options struct {
	// Name goes into the CAs' common names, so that two test CAs differ ("Test", "Other").
	Name string
	// Now is the CA's clock: certificates are valid from an hour before it. Zero: time.Now().
	Now time.Time
	// RSA makes RSA-2048 CA keys instead of ECDSA P-256.
	RSA bool
}

// CA is a root and an issuing CA. Its methods are safe for concurrent use.
type CA struct {
	Root            *x509.Certificate
	RootKey         crypto.Signer
	Intermediate    *x509.Certificate
	IntermediateKey crypto.Signer

	now time.Time

	mu      sync.Mutex
	serial  int64
	crlNum  int64
	revoked []x509.RevocationListEntry
}

// Rule is how a citizen certificate names the ID.
type Rule int

const (
	// SerialNumber puts the full ID in the subject's serialNumber (2.5.4.5).
	SerialNumber Rule = iota
	// Last4Extension puts the last four characters in extension OIDLast4Extension.
	Last4Extension
	// Last4SubjectDirectory puts them in attribute OIDLast4Attribute of a SubjectDirectoryAttributes
	// extension.
	Last4SubjectDirectory
)

// CitizenOptions shape a citizen certificate. Zero values give a valid signing certificate.
type CitizenOptions struct {
	NationalID string
	Rule       Rule
	// Name is the common name; default "Test Citizen".
	Name string
	// RSA makes an RSA-2048 key, as on the real cards; default ECDSA P-256.
	RSA bool
	// NotBefore and NotAfter default to an hour before the CA's Now and a year after it.
	NotBefore, NotAfter time.Time
	// KeyUsage defaults to digitalSignature|nonRepudiation, as on a card's signing certificate.
	KeyUsage x509.KeyUsage
	// OCSPServer goes into the Authority Information Access extension.
	OCSPServer []string
}

// Leaf is an issued certificate and its key.
type Leaf struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// Chain is the issuing CA, for the SignedData's certificate set.
	Chain []*x509.Certificate
}

// New makes the root and the issuing CA.
func New(opts Options) (*CA, error) {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.Name == "" {
		opts.Name = "Test"
	}
	ca := &CA{now: opts.Now.UTC().Truncate(time.Second), serial: 0x1000}
	var err error
	if ca.RootKey, err = newKey(opts.RSA); err != nil {
		return nil, err
	}
	if ca.IntermediateKey, err = newKey(opts.RSA); err != nil {
		return nil, err
	}
	rootTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Country: []string{"TW"}, Organization: []string{"MyData " + opts.Name}, CommonName: "MyData " + opts.Name + " Root CA"},
		NotBefore:             ca.now.Add(-24 * time.Hour),
		NotAfter:              ca.now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if ca.Root, err = issue(rootTmpl, rootTmpl, ca.RootKey.Public(), ca.RootKey); err != nil {
		return nil, err
	}
	interTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(2),
		Subject:               pkix.Name{Country: []string{"TW"}, Organization: []string{"MyData " + opts.Name}, CommonName: "MyData " + opts.Name + " Citizen CA"},
		NotBefore:             ca.now.Add(-24 * time.Hour),
		NotAfter:              ca.now.Add(5 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	if ca.Intermediate, err = issue(interTmpl, ca.Root, ca.IntermediateKey.Public(), ca.RootKey); err != nil {
		return nil, err
	}
	return ca, nil
}

func newKey(useRSA bool) (crypto.Signer, error) {
	if useRSA {
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func issue(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// Now is the CA's clock, for the verifier's in tests.
func (ca *CA) Now() time.Time { return ca.now }

func (ca *CA) nextSerial() *big.Int {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.serial++
	return big.NewInt(ca.serial)
}

// IssueCitizen makes a key and a certificate for o.NationalID, signed by the issuing CA.
func (ca *CA) IssueCitizen(o CitizenOptions) (*Leaf, error) {
	if len(o.NationalID) < 4 {
		return nil, errors.New("testca: a national ID of at least four characters is required")
	}
	key, err := newKey(o.RSA)
	if err != nil {
		return nil, err
	}
	if o.Name == "" {
		o.Name = "Test Citizen"
	}
	if o.NotBefore.IsZero() {
		o.NotBefore = ca.now.Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = ca.now.Add(365 * 24 * time.Hour)
	}
	if o.KeyUsage == 0 {
		o.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment
	}
	tmpl := &x509.Certificate{
		SerialNumber: ca.nextSerial(),
		Subject:      pkix.Name{Country: []string{"TW"}, CommonName: o.Name},
		NotBefore:    o.NotBefore,
		NotAfter:     o.NotAfter,
		KeyUsage:     o.KeyUsage,
		OCSPServer:   o.OCSPServer,
	}
	last4 := o.NationalID[len(o.NationalID)-4:]
	switch o.Rule {
	case SerialNumber:
		tmpl.Subject.SerialNumber = o.NationalID
	case Last4Extension:
		v, err := asn1.MarshalWithParams(last4, "printable")
		if err != nil {
			return nil, err
		}
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: OIDLast4Extension, Value: v})
	case Last4SubjectDirectory:
		type attribute struct {
			Type   asn1.ObjectIdentifier
			Values []asn1.RawValue `asn1:"set"`
		}
		val, err := asn1.MarshalWithParams(last4, "utf8")
		if err != nil {
			return nil, err
		}
		v, err := asn1.Marshal([]attribute{{Type: OIDLast4Attribute, Values: []asn1.RawValue{{FullBytes: val}}}})
		if err != nil {
			return nil, err
		}
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: oidSubjectDirectoryAttributes, Value: v})
	default:
		return nil, fmt.Errorf("testca: unknown rule %d", o.Rule)
	}
	cert, err := issue(tmpl, ca.Intermediate, key.Public(), ca.IntermediateKey)
	if err != nil {
		return nil, err
	}
	return &Leaf{Cert: cert, Key: key, Chain: []*x509.Certificate{ca.Intermediate}}, nil
}

// Revoke lists cert in the CRLs made from now on.
func (ca *CA) Revoke(cert *x509.Certificate) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.revoked = append(ca.revoked, x509.RevocationListEntry{
		SerialNumber:   cert.SerialNumber,
		RevocationTime: ca.now.Add(-time.Minute),
		ReasonCode:     1, // keyCompromise
	})
}

// CRL returns a DER CRL from the issuing CA with the given update times (zero: the CA's Now and a
// day after it).
func (ca *CA) CRL(thisUpdate, nextUpdate time.Time) ([]byte, error) {
	if thisUpdate.IsZero() {
		thisUpdate = ca.now
	}
	if nextUpdate.IsZero() {
		nextUpdate = thisUpdate.Add(24 * time.Hour)
	}
	ca.mu.Lock()
	ca.crlNum++
	tmpl := &x509.RevocationList{
		Number:                    big.NewInt(ca.crlNum),
		ThisUpdate:                thisUpdate,
		NextUpdate:                nextUpdate,
		RevokedCertificateEntries: append([]x509.RevocationListEntry(nil), ca.revoked...),
	}
	ca.mu.Unlock()
	return x509.CreateRevocationList(rand.Reader, tmpl, ca.Intermediate, ca.IntermediateKey)
}

// Files are the paths WriteFiles wrote.
type Files struct {
	Root, Intermediate string
	CRLPEM, CRLDER     string
}

// WriteFiles writes root.pem, intermediate.pem and a current CRL as crl.pem and crl.der into dir.
func (ca *CA) WriteFiles(dir string) (Files, error) {
	f := Files{
		Root:         filepath.Join(dir, "root.pem"),
		Intermediate: filepath.Join(dir, "intermediate.pem"),
		CRLPEM:       filepath.Join(dir, "crl.pem"),
		CRLDER:       filepath.Join(dir, "crl.der"),
	}
	crl, err := ca.CRL(time.Time{}, time.Time{})
	if err != nil {
		return f, err
	}
	for _, w := range []struct {
		path string
		data []byte
	}{
		{f.Root, certPEM(ca.Root)},
		{f.Intermediate, certPEM(ca.Intermediate)},
		{f.CRLPEM, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl})},
		{f.CRLDER, crl},
	} {
		if err := os.WriteFile(w.path, w.data, 0o644); err != nil {
			return f, err
		}
	}
	return f, nil
}

// WriteFiles writes name.pem (the certificate, then its chain) and name.key (PKCS #8) into dir, as
// the local signer reads them.
func (l *Leaf) WriteFiles(dir, name string) (certPath, keyPath string, err error) {
	certPath = filepath.Join(dir, name+".pem")
	keyPath = filepath.Join(dir, name+".key")
	var chain []byte
	chain = append(chain, certPEM(l.Cert)...)
	for _, c := range l.Chain {
		chain = append(chain, certPEM(c)...)
	}
	der, err := x509.MarshalPKCS8PrivateKey(l.Key)
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(certPath, chain, 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
