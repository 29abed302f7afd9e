// Package certlogin is the smart-card certificate login: the natural-person certificate (自然人憑證),
// the business certificate (工商憑證) and the health-professional certificate, one configured method
// each. The portal gives the browser a fresh challenge; the browser hands it to the signing component on
// the citizen's computer (a localhost port), which has the card sign it and returns a CMS SignedData;
// the portal passes that here with the ID number the citizen typed.
//
// Threat model, briefly. A valid signature proves only that whoever is at the browser can make the card
// sign, now: the private key never leaves the card and the card wants its PIN. The challenge is fresh
// and single use (the portal's job), and the signed content must equal it byte for byte, so a signature
// captured from another login, another site or an earlier session cannot be replayed. The certificate
// then says whose card it is, but only if it chains to the roots configured for that card type (a
// certificate from any other CA, however valid, proves nothing), is within its validity, is meant for
// signing (the card's encryption certificate is not), and names the ID number the citizen typed, so
// someone holding another person's card and PIN cannot log in as a third person. The extension_last4
// rule is weaker than subject_attribute: the natural-person certificate carries only the last four
// digits, so it binds the typed ID to the card only together with the signature. A lost or stolen card
// is revoked, and that is the only way the holder can stop its use; so when the revocation status cannot
// be learnt (no fresh CRL, no OCSP answer) the login fails rather than trusting a card that may be
// stolen. The hub keeps no national ID: Proof.Evidence names the issuer and serial only.
package certlogin

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/smallstep/pkcs7"
)

// MaxSignedData bounds what Verify parses: a SignedData with a 2048-bit signature and a chain of three
// certificates is under 8 KiB.
const MaxSignedData = 64 << 10

// Config is one certificate login method. It sits in the portal's hub.yaml under the method's entry:
//
//	id: moica
//	roots: [/etc/mydata-hub/moica/grca.pem]
//	intermediates: [/etc/mydata-hub/moica/moica.pem]
//	crls: [http://crl.example.gov.tw/moica/complete.crl, /var/lib/mydata-hub/moica-arl.crl]
//	crl_refresh: 1h
//	ocsp: false
//	subject_rule: {kind: extension_last4, oid: 1.2.3.4, source: subject_directory_attributes}
//	require_crl: true
type Config struct {
	// ID is the method's id ("moica", "gca", "hca"), as identity.Result.Method.
	ID string `yaml:"id"`
	// Roots are PEM files holding the only roots a certificate of this type may chain to.
	Roots []string `yaml:"roots"`
	// Intermediates are PEM files of issuing CAs, for signers that send their certificate alone.
	Intermediates []string `yaml:"intermediates"`
	// CRLs are files or http(s) URLs, DER or PEM. Each is re-read at its nextUpdate, or every
	// CRLRefresh if that is sooner.
	CRLs []string `yaml:"crls"`
	// CRLRefresh re-reads each CRL at least this often; 0 waits for the CRL's own nextUpdate.
	CRLRefresh time.Duration `yaml:"crl_refresh"`
	// OCSP asks the responder the certificate names in its Authority Information Access.
	OCSP bool `yaml:"ocsp"`
	// SubjectRule says how the certificate names the ID number the citizen typed.
	SubjectRule SubjectRule `yaml:"subject_rule"`
	// RequireCRL fails the login when the revocation status cannot be learnt: no fresh CRL from the
	// certificate's issuer, and no good OCSP answer. Unset means true: a pointer so that an entry
	// decoded from YAML without the key, or a Config{} literal, does not fail open.
	RequireCRL *bool `yaml:"require_crl"`
}

// SubjectRule is how the certificate names its holder.
type SubjectRule struct {
	// Kind is SubjectAttribute or ExtensionLast4.
	Kind string `yaml:"kind"`
	// OID is the subject attribute (default 2.5.4.5, serialNumber) for SubjectAttribute; for
	// ExtensionLast4, the extension, or the attribute type inside a SubjectDirectoryAttributes extension.
	OID string `yaml:"oid"`
	// Source, for ExtensionLast4 only: SourceExtension (default; the extension's value is a string) or
	// SourceSubjectDirectoryAttributes (the value is an attribute inside extension 2.5.29.9).
	Source string `yaml:"source"`
}

// SubjectRule kinds and sources.
const (
	SubjectAttribute                 = "subject_attribute"
	ExtensionLast4                   = "extension_last4"
	SourceExtension                  = "extension"
	SourceSubjectDirectoryAttributes = "subject_directory_attributes"
)

// Verifier checks certificate logins for one configured method. It is safe for concurrent use.
type Verifier struct {
	id            string
	roots         *x509.CertPool
	intermediates []*x509.Certificate
	rule          subjectRule
	crls          []*crlSource
	crlRefresh    time.Duration
	ocsp          bool
	requireStatus bool
	client        *http.Client
	now           func() time.Time
}

var methodID = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

// New checks cfg and loads its roots, intermediates and CRL files. client fetches CRLs and asks OCSP
// responders (nil: a client with a 15 s timeout); now is the clock (nil: time.Now).
func New(cfg Config, client *http.Client, now func() time.Time) (*Verifier, error) {
	if client == nil {
		client = &http.Client{Timeout: 15 * time.Second}
	}
	if now == nil {
		now = time.Now
	}
	if !methodID.MatchString(cfg.ID) {
		return nil, fmt.Errorf("id: %q is not a method id (lower-case letters, digits, - and _, starting with a letter)", cfg.ID)
	}
	v := &Verifier{
		id:            cfg.ID,
		roots:         x509.NewCertPool(),
		crlRefresh:    cfg.CRLRefresh,
		ocsp:          cfg.OCSP,
		requireStatus: cfg.RequireCRL == nil || *cfg.RequireCRL,
		client:        client,
		now:           now,
	}
	if len(cfg.Roots) == 0 {
		return nil, errors.New("roots: at least one root certificate file is required")
	}
	for i, path := range cfg.Roots {
		certs, err := loadCAs(path)
		if err != nil {
			return nil, fmt.Errorf("roots[%d]: %w", i, err)
		}
		for _, c := range certs {
			v.roots.AddCert(c)
		}
	}
	for i, path := range cfg.Intermediates {
		certs, err := loadCAs(path)
		if err != nil {
			return nil, fmt.Errorf("intermediates[%d]: %w", i, err)
		}
		v.intermediates = append(v.intermediates, certs...)
	}
	if cfg.CRLRefresh < 0 {
		return nil, fmt.Errorf("crl_refresh: %s is negative", cfg.CRLRefresh)
	}
	for i, loc := range cfg.CRLs {
		src, err := newCRLSource(loc)
		if err != nil {
			return nil, fmt.Errorf("crls[%d]: %w", i, err)
		}
		if !src.remote {
			// A file is read now so that a wrong path stops the hub at start, not at the first login.
			if err := src.refresh(context.Background(), v, now()); err != nil {
				return nil, fmt.Errorf("crls[%d]: %w", i, err)
			}
		}
		v.crls = append(v.crls, src)
	}
	if v.requireStatus && len(v.crls) == 0 && !v.ocsp {
		return nil, errors.New("require_crl: revocation must be checked, but neither crls nor ocsp is configured (set require_crl: false only for a sandbox)")
	}
	rule, err := parseSubjectRule(cfg.SubjectRule)
	if err != nil {
		return nil, fmt.Errorf("subject_rule.%w", err)
	}
	v.rule = rule
	return v, nil
}

// Run keeps the CRLs fresh in the background, so that a login seldom waits for a download; without
// it Verify fetches a due CRL itself. It returns nil when ctx ends.
func (v *Verifier) Run(ctx context.Context) error {
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		for _, src := range v.crls {
			// A failure is kept in the source and reported by the next login that needs it.
			_, _ = src.current(ctx, v, v.now(), nil)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// ID is the method's configured id.
func (v *Verifier) ID() string { return v.id }

func loadCAs(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if !c.BasicConstraintsValid || !c.IsCA {
			return nil, fmt.Errorf("%s: %q is not a CA certificate", path, c.Subject)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no PEM CERTIFICATE block", path)
	}
	return certs, nil
}

// Proof is what a successful Verify learnt. It holds no national ID except inside Certificate.
type Proof struct {
	// Method is the Verifier's id.
	Method string
	// Certificate is the signer's; Chain runs from it to the configured root.
	Certificate *x509.Certificate
	Chain       []*x509.Certificate
	// Issuer is the issuer's distinguished name; Serial the certificate's serial number in hex.
	Issuer string
	Serial string
	// Revocation says how the certificate was found unrevoked: "crl", "ocsp", "crl+ocsp", or "unchecked"
	// when require_crl is false and nothing could be learnt.
	Revocation string
}

// Evidence is the line for the consent record and logs: the method, issuer and serial, never the ID.
func (p *Proof) Evidence() string {
	return fmt.Sprintf("%s issuer=%q serial=%s revocation=%s", p.Method, p.Issuer, p.Serial, p.Revocation)
}

// NewChallenge returns a fresh challenge: 32 random bytes as base64url text, so that it travels in
// JSON and signing components that expect text unchanged.
func NewChallenge() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails since Go 1.24
	return []byte(base64.RawURLEncoding.EncodeToString(b))
}

// Digest and signature algorithms accepted in the SignerInfo. SHA-1 is not: x509's CheckSignature,
// which the CMS library calls, still accepts it.
var (
	okDigests = []asn1.ObjectIdentifier{
		pkcs7.OIDDigestAlgorithmSHA256, pkcs7.OIDDigestAlgorithmSHA384, pkcs7.OIDDigestAlgorithmSHA512,
	}
	okSignatures = []asn1.ObjectIdentifier{
		pkcs7.OIDEncryptionAlgorithmRSA,
		pkcs7.OIDEncryptionAlgorithmRSASHA256, pkcs7.OIDEncryptionAlgorithmRSASHA384, pkcs7.OIDEncryptionAlgorithmRSASHA512,
		pkcs7.OIDDigestAlgorithmECDSASHA256, pkcs7.OIDDigestAlgorithmECDSASHA384, pkcs7.OIDDigestAlgorithmECDSASHA512,
		pkcs7.OIDEncryptionAlgorithmECDSAP256, pkcs7.OIDEncryptionAlgorithmECDSAP384, pkcs7.OIDEncryptionAlgorithmECDSAP521,
	}
)

func oidIn(o asn1.ObjectIdentifier, list []asn1.ObjectIdentifier) bool {
	for _, l := range list {
		if o.Equal(l) {
			return true
		}
	}
	return false
}

// Verify checks that signedData (a DER or BER CMS SignedData, content attached or detached) is a
// signature over exactly challenge by a certificate of this method that belongs to nationalID and is
// not revoked. Every failure wraps one of the Err* reasons; ctx bounds CRL and OCSP fetches.
func (v *Verifier) Verify(ctx context.Context, signedData, challenge []byte, nationalID string) (*Proof, error) {
	if len(challenge) == 0 {
		return nil, fmt.Errorf("%w: empty challenge", ErrChallenge)
	}
	if len(signedData) > MaxSignedData {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(signedData), MaxSignedData)
	}
	p7, err := parse(signedData)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if len(p7.Signers) != 1 {
		return nil, fmt.Errorf("%w: %d signers, want exactly one", ErrMalformed, len(p7.Signers))
	}
	leaf := p7.GetOnlySigner()
	if leaf == nil {
		return nil, fmt.Errorf("%w: the signer's certificate is not in the SignedData", ErrMalformed)
	}
	si := p7.Signers[0]
	if !oidIn(si.DigestAlgorithm.Algorithm, okDigests) || !oidIn(si.DigestEncryptionAlgorithm.Algorithm, okSignatures) {
		return nil, fmt.Errorf("%w: digest %s with signature algorithm %s is not accepted", ErrBadSignature,
			si.DigestAlgorithm.Algorithm, si.DigestEncryptionAlgorithm.Algorithm)
	}
	detached := len(p7.Content) == 0
	if detached {
		p7.Content = challenge
	} else if !bytes.Equal(p7.Content, challenge) {
		return nil, fmt.Errorf("%w: the signed content differs from the challenge", ErrChallenge)
	}

	// The certificate's own validity is checked before the signature so that a citizen with an expired
	// card hears that, and not "bad signature" from the library's signing-time check.
	now := v.now()
	if now.Before(leaf.NotBefore) {
		return nil, fmt.Errorf("%w: valid from %s", ErrNotYetValid, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("%w: valid until %s", ErrExpired, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if err := p7.Verify(); err != nil {
		var mismatch *pkcs7.MessageDigestMismatchError
		if detached && errors.As(err, &mismatch) {
			return nil, fmt.Errorf("%w: the detached signature is over other content", ErrChallenge)
		}
		return nil, fmt.Errorf("%w: %w", ErrBadSignature, err)
	}

	chain, err := v.chain(leaf, p7.Certificates, now)
	if err != nil {
		return nil, err
	}
	// A card holds a signing and an encryption certificate; only the first may log in. A certificate
	// without the extension is refused too: every card certificate has one.
	if leaf.IsCA {
		return nil, fmt.Errorf("%w: a CA certificate", ErrKeyUsage)
	}
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return nil, fmt.Errorf("%w: key usage %#x lacks digitalSignature", ErrKeyUsage, int(leaf.KeyUsage))
	}
	if err := v.rule.match(leaf, nationalID); err != nil {
		return nil, err
	}
	how, err := v.revocation(ctx, chain, now)
	if err != nil {
		return nil, err
	}
	return &Proof{
		Method:      v.id,
		Certificate: leaf,
		Chain:       chain,
		Issuer:      leaf.Issuer.String(),
		Serial:      hex.EncodeToString(leaf.SerialNumber.Bytes()),
		Revocation:  how,
	}, nil
}

// parse is the CMS library's Parse behind a recover: its input comes from the citizen's browser, and a
// panic in a dependency must become a refused login, not a crashed handler.
func parse(der []byte) (p7 *pkcs7.PKCS7, err error) {
	defer func() {
		if r := recover(); r != nil {
			p7, err = nil, fmt.Errorf("cms parser panicked: %v", r)
		}
	}()
	p7, err = pkcs7.Parse(der)
	if err == nil && p7 == nil {
		err = errors.New("not a SignedData")
	}
	return p7, err
}

func (v *Verifier) chain(leaf *x509.Certificate, sent []*x509.Certificate, now time.Time) ([]*x509.Certificate, error) {
	inter := x509.NewCertPool()
	for _, c := range v.intermediates {
		inter.AddCert(c)
	}
	for _, c := range sent {
		if c != leaf {
			inter.AddCert(c)
		}
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         v.roots,
		Intermediates: inter,
		CurrentTime:   now,
		// Card certificates carry no or assorted extended key usages; the key usage is checked instead.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUntrusted, err)
	}
	if len(chains[0]) < 2 {
		return nil, fmt.Errorf("%w: the signer's certificate is itself a root", ErrUntrusted)
	}
	return chains[0], nil
}

func isURL(loc string) bool {
	return strings.HasPrefix(loc, "http://") || strings.HasPrefix(loc, "https://")
}

func checkURL(loc string) error {
	u, err := url.Parse(loc)
	if err != nil {
		return err
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host", loc)
	}
	return nil
}
