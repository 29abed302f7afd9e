package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mydatafed/mydata/pkg/cardca"
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

// caDir names the files "identity ca" writes into its directory.
type caDir string

func (d caDir) path(name string) string     { return filepath.Join(string(d), name) }
func (d caDir) rootCert() string            { return d.path(cardca.RootFile) }
func (d caDir) interCert() string           { return d.path(cardca.IntermediateFile) }
func (d caDir) interKey() string            { return d.path(cardca.IntermediateKeyFile) }
func (d caDir) crlPEM() string              { return d.path(cardca.CRLPEMFile) }
func (d caDir) crlDER() string              { return d.path(cardca.CRLDERFile) }
func (d caDir) cards() string               { return d.path("cards") }
func (d caDir) cardCert(name string) string { return filepath.Join(d.cards(), name+".pem") }
func (d caDir) cardKey(name string) string  { return filepath.Join(d.cards(), name+".key") }

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
	if err := os.MkdirAll(dir.cards(), 0o700); err != nil {
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

	// The card was lost. Each run writes a fresh CRL, as the hub refuses one past its next update.
	ca.Revoke(lost)
	if _, _, err := ca.WriteCRL(string(dir), now.Add(-time.Minute), now.Add(crlLifetime)); err != nil {
		return fmt.Errorf("make the CRL: %w", err)
	}
	fmt.Fprintf(out, "CRL: %s (and .der), revokes the card %s, next update %s\n", dir.crlPEM(), lost.SerialNumber.Text(16), now.Add(crlLifetime).Format(time.DateOnly))
	return nil
}

// loadOrMakeCA reads the CA from dir, or makes one and saves it (keys included, so that a later run can
// issue more cards) when dir has none.
func loadOrMakeCA(dir caDir, now time.Time) (ca *cardca.CA, kept bool, err error) {
	_, err = os.Stat(dir.rootCert())
	switch {
	case err == nil:
		if ca, err = cardca.Load(string(dir), now); err != nil {
			return nil, false, fmt.Errorf("%w (delete %s to start afresh)", err, dir)
		}
		return ca, true, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, false, err
	}
	if ca, err = cardca.New(cardca.Options{Name: "Demo", Now: now}); err != nil {
		return nil, false, fmt.Errorf("make the CA: %w", err)
	}
	if err := ca.Save(string(dir)); err != nil {
		return nil, false, err
	}
	return ca, false, nil
}

// ensureCard keeps the card in files name.pem and name.key when it is the citizen's, from this CA and
// valid now, and issues a new one otherwise: RSA-2048 as on the real cards, a signing certificate (the
// encryption certificate, which the login refuses, is not made) naming the whole ID in its subject.
func ensureCard(dir caDir, ca *cardca.CA, id, name string, now time.Time) (*x509.Certificate, string, error) {
	if card, err := cardca.LoadLeaf(dir.cardCert(name), dir.cardKey(name)); err == nil {
		cert := card.Cert
		if cert.Subject.SerialNumber == id && cert.CheckSignatureFrom(ca.Intermediate) == nil &&
			now.After(cert.NotBefore) && now.Before(cert.NotAfter) {
			return cert, "kept", nil
		}
	}
	notAfter := now.Add(cardLifetime)
	if notAfter.After(ca.Intermediate.NotAfter) {
		notAfter = ca.Intermediate.NotAfter
	}
	card, err := ca.IssueCitizen(cardca.CitizenOptions{NationalID: id, Rule: cardca.SerialNumber, Name: "Demo citizen " + id, RSA: true, NotAfter: notAfter})
	if err != nil {
		return nil, "", fmt.Errorf("issue a card for %s: %w", id, err)
	}
	// The certificate, then the issuing CA, as the signing component sends them; the key as PKCS #8.
	if _, _, err := card.WriteFiles(dir.cards(), name); err != nil {
		return nil, "", err
	}
	return card.Cert, "issued", nil
}
