// Package cardca is a two-level certificate authority for citizens' smart cards, for the hub's certificate
// login tests, the browser tests and the demo: a root, an issuing CA under it, citizen certificates that
// name a national ID either way the hub's certlogin reads one, revocation and CRLs, and PEM files for the
// configuration. A new CA's serial numbers and times come from the options, so only the keys differ
// between runs; a CA can be saved with its keys and loaded again to issue more cards. Nothing here is fit
// for real use.
package cardca

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

	"github.com/mydatafed/mydata/pkg/pemfile"
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
	// randomSerials: a CA loaded from files issues random serial numbers, because a counter would
	// restart and give a new card the serial of one issued in an earlier run.
	randomSerials bool

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

func (ca *CA) nextSerial() (*big.Int, error) {
	if ca.randomSerials {
		// 127 random bits plus one: positive, never zero, at most 16 octets.
		n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
		if err != nil {
			return nil, err
		}
		return n.Add(n, big.NewInt(1)), nil
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.serial++
	return big.NewInt(ca.serial), nil
}

// IssueCitizen makes a key and a certificate for o.NationalID, signed by the issuing CA.
func (ca *CA) IssueCitizen(o CitizenOptions) (*Leaf, error) {
	if len(o.NationalID) < 4 {
		return nil, errors.New("cardca: a national ID of at least four characters is required")
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
	serial, err := ca.nextSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
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
		return nil, fmt.Errorf("cardca: unknown rule %d", o.Rule)
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

// File names in a CA's directory.
const (
	RootFile            = "root.pem"
	RootKeyFile         = "root.key"
	IntermediateFile    = "intermediate.pem"
	IntermediateKeyFile = "intermediate.key"
	CRLPEMFile          = "crl.pem"
	CRLDERFile          = "crl.der"
)

// Files are the paths WriteFiles wrote.
type Files struct {
	Root, Intermediate string
	CRLPEM, CRLDER     string
}

// WriteFiles writes root.pem, intermediate.pem and a current CRL as crl.pem and crl.der into dir.
func (ca *CA) WriteFiles(dir string) (Files, error) {
	f := Files{
		Root:         filepath.Join(dir, RootFile),
		Intermediate: filepath.Join(dir, IntermediateFile),
	}
	if err := pemfile.WriteAtomic(f.Intermediate, certPEM(ca.Intermediate), 0o644); err != nil {
		return f, err
	}
	if err := pemfile.WriteAtomic(f.Root, certPEM(ca.Root), 0o644); err != nil {
		return f, err
	}
	var err error
	f.CRLPEM, f.CRLDER, err = ca.WriteCRL(dir, time.Time{}, time.Time{})
	return f, err
}

// WriteCRL writes a CRL made as CRL makes it into dir as crl.pem and crl.der. Each file is replaced
// atomically, so a verifier re-reading it never sees half a CRL.
func (ca *CA) WriteCRL(dir string, thisUpdate, nextUpdate time.Time) (pemPath, derPath string, err error) {
	crl, err := ca.CRL(thisUpdate, nextUpdate)
	if err != nil {
		return "", "", err
	}
	pemPath, derPath = filepath.Join(dir, CRLPEMFile), filepath.Join(dir, CRLDERFile)
	if err := pemfile.WriteAtomic(pemPath, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl}), 0o644); err != nil {
		return "", "", err
	}
	if err := pemfile.WriteAtomic(derPath, crl, 0o644); err != nil {
		return "", "", err
	}
	return pemPath, derPath, nil
}

// Save writes the CA into dir so that Load can read it back: root.pem, intermediate.pem and their keys
// root.key and intermediate.key (PKCS #8, mode 0600). The root certificate is written last, so its
// presence says the directory holds a whole CA.
func (ca *CA) Save(dir string) error {
	rootKey, err := pemfile.EncodeKey(ca.RootKey)
	if err != nil {
		return fmt.Errorf("cardca: encode the root key: %w", err)
	}
	interKey, err := pemfile.EncodeKey(ca.IntermediateKey)
	if err != nil {
		return fmt.Errorf("cardca: encode the issuing CA's key: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{RootKeyFile, rootKey, 0o600},
		{IntermediateKeyFile, interKey, 0o600},
		{IntermediateFile, certPEM(ca.Intermediate), 0o644},
		{RootFile, certPEM(ca.Root), 0o644},
	} {
		if err := pemfile.WriteAtomic(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// Load reads a CA that Save wrote into dir, with now as its clock (zero: time.Now()). It checks that the
// issuing CA is the root's and that each key belongs to its certificate. A loaded CA issues random serial
// numbers, and numbers its CRLs from the clock, so that both keep growing from one run to the next.
func Load(dir string, now time.Time) (*CA, error) {
	if now.IsZero() {
		now = time.Now()
	}
	ca := &CA{now: now.UTC().Truncate(time.Second), randomSerials: true, crlNum: now.UnixNano()}
	var err error
	if ca.Root, err = readCert(filepath.Join(dir, RootFile)); err != nil {
		return nil, err
	}
	if ca.RootKey, err = pemfile.ReadKey(filepath.Join(dir, RootKeyFile)); err != nil {
		return nil, err
	}
	if ca.Intermediate, err = readCert(filepath.Join(dir, IntermediateFile)); err != nil {
		return nil, err
	}
	if ca.IntermediateKey, err = pemfile.ReadKey(filepath.Join(dir, IntermediateKeyFile)); err != nil {
		return nil, err
	}
	if err := ca.Intermediate.CheckSignatureFrom(ca.Root); err != nil {
		return nil, fmt.Errorf("cardca: %s is not issued by %s: %w", IntermediateFile, RootFile, err)
	}
	if !publicKeyEqual(ca.Root.PublicKey, ca.RootKey.Public()) {
		return nil, fmt.Errorf("cardca: %s is not the key of %s", RootKeyFile, RootFile)
	}
	if !publicKeyEqual(ca.Intermediate.PublicKey, ca.IntermediateKey.Public()) {
		return nil, fmt.Errorf("cardca: %s is not the key of %s", IntermediateKeyFile, IntermediateFile)
	}
	return ca, nil
}

// LoadLeaf reads a certificate, its chain and its key as Leaf.WriteFiles wrote them.
func LoadLeaf(certPath, keyPath string) (*Leaf, error) {
	certs, err := pemfile.ReadCertificates(certPath)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	key, err := pemfile.ReadKey(keyPath)
	if err != nil {
		return nil, err
	}
	if !publicKeyEqual(certs[0].PublicKey, key.Public()) {
		return nil, fmt.Errorf("cardca: %s is not the key of the certificate in %s", keyPath, certPath)
	}
	return &Leaf{Cert: certs[0], Key: key, Chain: certs[1:]}, nil
}

func readCert(path string) (*x509.Certificate, error) {
	certs, err := pemfile.ReadCertificates(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs[0], nil
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// WriteFiles writes name.pem (the certificate, then its chain) and name.key (PKCS #8, mode 0600) into dir,
// as the card-signing component and LoadLeaf read them. Each file is replaced atomically.
func (l *Leaf) WriteFiles(dir, name string) (certPath, keyPath string, err error) {
	certPath = filepath.Join(dir, name+".pem")
	keyPath = filepath.Join(dir, name+".key")
	key, err := pemfile.EncodeKey(l.Key)
	if err != nil {
		return "", "", err
	}
	if err := pemfile.WriteAtomic(keyPath, key, 0o600); err != nil {
		return "", "", err
	}
	if err := pemfile.WriteAtomic(certPath, pemfile.EncodeCertificates(append([]*x509.Certificate{l.Cert}, l.Chain...)), 0o644); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
