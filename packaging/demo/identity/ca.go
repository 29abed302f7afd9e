package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mydatafed/mydata/pkg/nationalid"
)

// demoCitizens are the five fictional citizens of packaging/demo/data.
var demoCitizens = []string{"A123456789", "B220713459", "F132604985", "E225810349", "H120945179"}

const (
	// cardLifetime: long enough that a demo directory kept for months still works.
	cardLifetime = 2 * 365 * 24 * time.Hour
	// crlLifetime is the CRL's nextUpdate after its thisUpdate. The hub refuses a login when the CRL is
	// past it (require_crl), so it is generous; each run of "identity ca" makes a fresh CRL.
	crlLifetime = 30 * 24 * time.Hour
	// revokedSuffix names the revoked card's files: <ID>-revoked.pem, a card its holder reported lost.
	revokedSuffix = "-revoked"
)

// authority is the demo's card issuer: a root and the issuing CA under it, as the natural-person
// certificate has (GRCA above MOICA).
type authority struct {
	Root            *x509.Certificate
	RootKey         crypto.Signer
	Intermediate    *x509.Certificate
	IntermediateKey crypto.Signer
}

// caDir names the files "identity ca" writes into its directory.
type caDir string

func (d caDir) path(name string) string     { return filepath.Join(string(d), name) }
func (d caDir) rootCert() string            { return d.path("root.pem") }
func (d caDir) rootKey() string             { return d.path("root.key") }
func (d caDir) interCert() string           { return d.path("intermediate.pem") }
func (d caDir) interKey() string            { return d.path("intermediate.key") }
func (d caDir) crlPEM() string              { return d.path("crl.pem") }
func (d caDir) crlDER() string              { return d.path("crl.der") }
func (d caDir) cardCert(name string) string { return d.path(filepath.Join("cards", name+".pem")) }
func (d caDir) cardKey(name string) string  { return d.path(filepath.Join("cards", name+".key")) }

func runCA(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ca", stderr)
	dir := fs.String("dir", "", "directory for the CA, the cards and the CRL (made if missing; an existing CA in it is kept)")
	citizens := fs.String("citizens", strings.Join(demoCitizens, ","), "national IDs to issue a natural-person card to, comma separated")
	revoked := fs.String("revoked", demoCitizens[0], "national ID whose extra card <ID>"+revokedSuffix+".pem is revoked in the CRL (reported lost)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("--dir: required")
	}
	var ids []string
	for _, id := range strings.Split(*citizens, ",") {
		if id = strings.ToUpper(strings.TrimSpace(id)); id != "" {
			ids = append(ids, id)
		}
	}
	return makeCA(caDir(*dir), ids, strings.ToUpper(strings.TrimSpace(*revoked)), time.Now(), stdout)
}

// makeCA makes or keeps the CA in dir, makes or keeps a card for each of citizens and the revoked card,
// and writes a fresh CRL. The national ID rule is subject_attribute: a card's subject serialNumber
// (2.5.4.5) is the whole ID.
func makeCA(dir caDir, citizens []string, revoked string, now time.Time, out io.Writer) error {
	if len(citizens) == 0 {
		return errors.New("--citizens: at least one national ID is required")
	}
	for _, id := range append(append([]string(nil), citizens...), revoked) {
		if err := nationalid.Valid(id); err != nil {
			return fmt.Errorf("%q: %w", id, err)
		}
	}
	if err := os.MkdirAll(dir.path("cards"), 0o700); err != nil {
		return err
	}
	ca, kept, err := loadOrMakeCA(dir, now)
	if err != nil {
		return err
	}
	state := "made"
	if kept {
		state = "kept"
	}
	fmt.Fprintf(out, "CA (%s): root %s, issuing CA %s (%s)\n", state, dir.rootCert(), dir.interCert(), ca.Intermediate.Subject.CommonName)

	for _, id := range citizens {
		_, state, err := ensureCard(dir, ca, id, id, now)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "card of %s (%s): %s %s\n", id, state, dir.cardCert(id), dir.cardKey(id))
	}
	lost, state, err := ensureCard(dir, ca, revoked, revoked+revokedSuffix, now)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "revoked card of %s (%s): %s %s\n", revoked, state, dir.cardCert(revoked+revokedSuffix), dir.cardKey(revoked+revokedSuffix))

	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		// Numbers grow from one run to the next, as a relying party expects of a CA's CRLs.
		Number:     big.NewInt(now.UnixNano()),
		ThisUpdate: now.Add(-time.Minute),
		NextUpdate: now.Add(crlLifetime),
		RevokedCertificateEntries: []x509.RevocationListEntry{{
			SerialNumber:   lost.SerialNumber,
			RevocationTime: lost.NotBefore.Add(time.Minute),
			ReasonCode:     1, // keyCompromise: the card was lost
		}},
	}, ca.Intermediate, ca.IntermediateKey)
	if err != nil {
		return fmt.Errorf("make the CRL: %w", err)
	}
	if err := writeFile(dir.crlPEM(), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl}), 0o644); err != nil {
		return err
	}
	if err := writeFile(dir.crlDER(), crl, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(out, "CRL: %s (and .der), revokes the card %s, next update %s\n", dir.crlPEM(), lost.SerialNumber.Text(16), now.Add(crlLifetime).Format(time.DateOnly))
	return nil
}

// loadOrMakeCA reads the CA from dir, or makes one and writes it (keys included, so that a
// later run can issue more cards) when dir has none.
func loadOrMakeCA(dir caDir, now time.Time) (ca *authority, kept bool, err error) {
	_, err = os.Stat(dir.rootCert())
	switch {
	case err == nil:
		ca = &authority{}
		if ca.Root, err = readCert(dir.rootCert()); err != nil {
			return nil, false, err
		}
		if ca.RootKey, err = readKey(dir.rootKey()); err != nil {
			return nil, false, err
		}
		if ca.Intermediate, err = readCert(dir.interCert()); err != nil {
			return nil, false, err
		}
		if ca.IntermediateKey, err = readKey(dir.interKey()); err != nil {
			return nil, false, err
		}
		if err := ca.Intermediate.CheckSignatureFrom(ca.Root); err != nil {
			return nil, false, fmt.Errorf("%s is not issued by %s: %w (delete %s to start afresh)", dir.interCert(), dir.rootCert(), err, dir)
		}
		return ca, true, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, false, err
	}
	if ca, err = newAuthority(now); err != nil {
		return nil, false, fmt.Errorf("make the CA: %w", err)
	}
	// The root last: its presence is what says a CA is complete.
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{dir.rootKey(), keyPEM(ca.RootKey), 0o600},
		{dir.interKey(), keyPEM(ca.IntermediateKey), 0o600},
		{dir.interCert(), certPEM(ca.Intermediate), 0o644},
		{dir.rootCert(), certPEM(ca.Root), 0o644},
	} {
		if f.data == nil {
			return nil, false, errors.New("encode a CA key")
		}
		if err := writeFile(f.path, f.data, f.mode); err != nil {
			return nil, false, err
		}
	}
	return ca, false, nil
}

// ensureCard keeps the card in files name.pem and name.key when it is the citizen's, from this CA and
// valid now, and issues a new one otherwise.
func ensureCard(dir caDir, ca *authority, id, name string, now time.Time) (*x509.Certificate, string, error) {
	if cert, err := readCert(dir.cardCert(name)); err == nil {
		key, kerr := readKey(dir.cardKey(name))
		if kerr == nil && cert.Subject.SerialNumber == id && cert.CheckSignatureFrom(ca.Intermediate) == nil &&
			now.After(cert.NotBefore) && now.Before(cert.NotAfter) && publicKeyEqual(cert.PublicKey, key.Public()) {
			return cert, "kept", nil
		}
	}
	cert, key, err := issueCard(ca, id, now)
	if err != nil {
		return nil, "", fmt.Errorf("issue a card for %s: %w", id, err)
	}
	// The certificate, then the issuing CA, as the signing component sends them; the key as PKCS #8.
	if err := writeFile(dir.cardKey(name), keyPEM(key), 0o600); err != nil {
		return nil, "", err
	}
	if err := writeFile(dir.cardCert(name), append(certPEM(cert), certPEM(ca.Intermediate)...), 0o644); err != nil {
		return nil, "", err
	}
	return cert, "issued", nil
}

// newAuthority makes the root and the issuing CA, ECDSA P-256 keys.
func newAuthority(now time.Time) (*authority, error) {
	ca := &authority{}
	var err error
	if ca.RootKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	if ca.IntermediateKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	org := []string{"MyData Demo (not a real CA)"}
	root := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Country: []string{"TW"}, Organization: org, CommonName: "MyData Demo Root CA"},
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if ca.Root, err = createCert(root, root, ca.RootKey.Public(), ca.RootKey); err != nil {
		return nil, err
	}
	inter := &x509.Certificate{
		SerialNumber:          big.NewInt(2),
		Subject:               pkix.Name{Country: []string{"TW"}, Organization: org, CommonName: "MyData Demo Citizen CA"},
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.Add(5 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	if ca.Intermediate, err = createCert(inter, ca.Root, ca.IntermediateKey.Public(), ca.RootKey); err != nil {
		return nil, err
	}
	return ca, nil
}

func createCert(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// issueCard makes a card's signing certificate and key, with a random serial as real CAs use: a counter
// would restart with a CA loaded from files, and two cards of one issuer with one serial are revoked
// together.
func issueCard(ca *authority, id string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	// RSA-2048, as on the real cards.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	notAfter := now.Add(cardLifetime)
	if notAfter.After(ca.Intermediate.NotAfter) {
		notAfter = ca.Intermediate.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial.Add(serial, big.NewInt(1)),
		Subject:      pkix.Name{Country: []string{"TW"}, CommonName: "Demo citizen " + id, SerialNumber: id},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		// A card's signing certificate; its encryption certificate, which the login refuses, is not made.
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
	}
	cert, err := createCert(tmpl, ca.Intermediate, key.Public(), ca.IntermediateKey)
	return cert, key, err
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// keyPEM encodes key as PKCS #8, or returns nil if it cannot.
func keyPEM(key crypto.Signer) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// readCert reads the first certificate of a PEM file.
func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			return nil, fmt.Errorf("%s: no PEM CERTIFICATE block", path)
		}
		if b.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			return c, nil
		}
	}
}

// readKey reads a PKCS #8 PEM private key.
func readKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: no PEM PRIVATE KEY block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: a %T cannot sign", path, k)
	}
	return s, nil
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// writeFile replaces path atomically, so that the hub re-reading the CRL never sees half a file.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
