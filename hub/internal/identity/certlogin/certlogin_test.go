package certlogin_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
	"gopkg.in/yaml.v3"

	"github.com/mydatafed/mydata/hub/internal/identity/certlogin"
	"github.com/mydatafed/mydata/pkg/cardca"
	"github.com/mydatafed/mydata/pkg/cardsigner"
)

const citizenID = "A123456789"

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	ca    *cardca.CA
	files cardca.Files
	dir   string
	clock *clock
}

func newFixture(t testing.TB, rsa bool) *fixture {
	t.Helper()
	ca, err := cardca.New(cardca.Options{RSA: rsa})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files, err := ca.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{ca: ca, files: files, dir: dir, clock: &clock{t: ca.Now()}}
}

func (f *fixture) config(mut func(*certlogin.Config)) certlogin.Config {
	cfg := certlogin.Config{
		ID:          "moica",
		Roots:       []string{f.files.Root},
		CRLs:        []string{f.files.CRLDER},
		SubjectRule: certlogin.SubjectRule{Kind: certlogin.SubjectAttribute},
	}
	if mut != nil {
		mut(&cfg)
	}
	return cfg
}

func (f *fixture) verifier(t testing.TB, mut func(*certlogin.Config)) *certlogin.Verifier {
	t.Helper()
	v, err := certlogin.New(f.config(mut), nil, f.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (f *fixture) citizen(t testing.TB, o cardca.CitizenOptions) *cardca.Leaf {
	t.Helper()
	if o.NationalID == "" {
		o.NationalID = citizenID
	}
	l, err := f.ca.IssueCitizen(o)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// rewriteCRL replaces the CRL files after a revocation.
func (f *fixture) rewriteCRL(t testing.TB, thisUpdate, nextUpdate time.Time) {
	t.Helper()
	der, err := f.ca.CRL(thisUpdate, nextUpdate)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.files.CRLDER, der, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.files.CRLPEM, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

func sign(t testing.TB, l *cardca.Leaf, content []byte, detached bool) []byte {
	t.Helper()
	der, err := cardsigner.Sign(content, l.Cert, l.Chain, l.Key, detached)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestVerify(t *testing.T) {
	challenge := certlogin.NewChallenge()
	type env struct {
		f    *fixture
		leaf *cardca.Leaf
	}
	cases := []struct {
		name      string
		caRSA     bool
		leaf      cardca.CitizenOptions
		cfg       func(*testing.T, *certlogin.Config)
		prepare   func(t *testing.T, e env) // before New: revoke, rewrite files
		signed    func(t *testing.T, e env) []byte
		challenge []byte
		id        string
		want      error
		wantRev   string
	}{
		{name: "attached ECDSA", wantRev: "crl"},
		{name: "detached ECDSA", signed: func(t *testing.T, e env) []byte { return sign(t, e.leaf, challenge, true) }},
		{name: "attached RSA", leaf: cardca.CitizenOptions{RSA: true}},
		{name: "detached RSA", leaf: cardca.CitizenOptions{RSA: true},
			signed: func(t *testing.T, e env) []byte { return sign(t, e.leaf, challenge, true) }},
		{name: "RSA CA and RSA card", caRSA: true, leaf: cardca.CitizenOptions{RSA: true}},
		{name: "PEM CRL", cfg: func(t *testing.T, c *certlogin.Config) {
			c.CRLs = []string{filepath.Join(filepath.Dir(c.Roots[0]), "crl.pem")}
		}},
		{name: "ID typed in lower case", id: strings.ToLower(citizenID)},
		{name: "intermediate from config, signer sends its certificate alone",
			cfg: func(t *testing.T, c *certlogin.Config) {
				c.Intermediates = []string{filepath.Join(filepath.Dir(c.Roots[0]), "intermediate.pem")}
			},
			signed: func(t *testing.T, e env) []byte {
				der, err := cardsigner.Sign(challenge, e.leaf.Cert, nil, e.leaf.Key, false)
				if err != nil {
					t.Fatal(err)
				}
				return der
			}},
		{name: "signer sends its certificate alone and no intermediate is configured", want: certlogin.ErrUntrusted,
			signed: func(t *testing.T, e env) []byte {
				der, err := cardsigner.Sign(challenge, e.leaf.Cert, nil, e.leaf.Key, false)
				if err != nil {
					t.Fatal(err)
				}
				return der
			}},

		{name: "attached, other challenge", want: certlogin.ErrChallenge, challenge: []byte("another login's challenge")},
		{name: "detached, other challenge", want: certlogin.ErrChallenge, challenge: []byte("another login's challenge"),
			signed: func(t *testing.T, e env) []byte { return sign(t, e.leaf, challenge, true) }},
		{name: "empty challenge", want: certlogin.ErrChallenge, challenge: []byte{}},
		{name: "tampered signature", want: certlogin.ErrBadSignature,
			signed: func(t *testing.T, e env) []byte {
				der := sign(t, e.leaf, challenge, false)
				der[len(der)-2] ^= 0x01
				return der
			}},
		{name: "tampered content with matching challenge", want: certlogin.ErrBadSignature,
			challenge: append([]byte{challenge[0] ^ 0x01}, challenge[1:]...),
			signed: func(t *testing.T, e env) []byte {
				der := sign(t, e.leaf, challenge, false)
				i := bytes.Index(der, challenge)
				der[i] ^= 0x01
				return der
			}},
		{name: "someone else's certificate with my key", want: certlogin.ErrBadSignature,
			signed: func(t *testing.T, e env) []byte {
				mine := e.f.citizen(t, cardca.CitizenOptions{NationalID: "B987654321"})
				der, err := cardsigner.Sign(challenge, e.leaf.Cert, e.leaf.Chain, mine.Key, false)
				if err != nil {
					t.Fatal(err)
				}
				return der
			}},
		{name: "SHA-1 digest", want: certlogin.ErrBadSignature,
			signed: func(t *testing.T, e env) []byte {
				sd, err := pkcs7.NewSignedData(challenge)
				if err != nil {
					t.Fatal(err)
				}
				sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA1)
				if err := sd.AddSignerChain(e.leaf.Cert, e.leaf.Key, e.leaf.Chain, pkcs7.SignerInfoConfig{}); err != nil {
					t.Fatal(err)
				}
				der, err := sd.Finish()
				if err != nil {
					t.Fatal(err)
				}
				return der
			}},
		{name: "two signers", want: certlogin.ErrMalformed,
			signed: func(t *testing.T, e env) []byte {
				other := e.f.citizen(t, cardca.CitizenOptions{})
				sd, err := pkcs7.NewSignedData(challenge)
				if err != nil {
					t.Fatal(err)
				}
				sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
				for _, l := range []*cardca.Leaf{e.leaf, other} {
					if err := sd.AddSigner(l.Cert, l.Key, pkcs7.SignerInfoConfig{}); err != nil {
						t.Fatal(err)
					}
				}
				der, err := sd.Finish()
				if err != nil {
					t.Fatal(err)
				}
				return der
			}},
		{name: "truncated", want: certlogin.ErrMalformed,
			signed: func(t *testing.T, e env) []byte { der := sign(t, e.leaf, challenge, false); return der[:len(der)/2] }},
		{name: "empty", want: certlogin.ErrMalformed, signed: func(*testing.T, env) []byte { return nil }},
		{name: "not ASN.1", want: certlogin.ErrMalformed, signed: func(*testing.T, env) []byte { return []byte("hello") }},
		{name: "oversized", want: certlogin.ErrMalformed,
			signed: func(t *testing.T, e env) []byte {
				return append(sign(t, e.leaf, challenge, false), make([]byte, certlogin.MaxSignedData)...)
			}},

		{name: "certificate from another root", want: certlogin.ErrUntrusted,
			signed: func(t *testing.T, e env) []byte {
				other := newFixture(t, false)
				return sign(t, other.citizen(t, cardca.CitizenOptions{}), challenge, false)
			}},
		{name: "expired", want: certlogin.ErrExpired,
			leaf: cardca.CitizenOptions{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}},
		{name: "not yet valid", want: certlogin.ErrNotYetValid,
			leaf: cardca.CitizenOptions{NotBefore: time.Now().Add(time.Hour), NotAfter: time.Now().Add(48 * time.Hour)}},
		{name: "encryption certificate", want: certlogin.ErrKeyUsage,
			leaf: cardca.CitizenOptions{KeyUsage: x509.KeyUsageKeyEncipherment}},

		{name: "signed by the issuing CA itself", want: certlogin.ErrKeyUsage,
			signed: func(t *testing.T, e env) []byte {
				der, err := cardsigner.Sign(challenge, e.f.ca.Intermediate, nil, e.f.ca.IntermediateKey, false)
				if err != nil {
					t.Fatal(err)
				}
				return der
			}},
		{name: "ID mismatch, serialNumber", want: certlogin.ErrNotYours, id: "B223456789"},
		{name: "no ID typed", want: certlogin.ErrNotYours, id: " "},
		{name: "last 4 in an extension", leaf: cardca.CitizenOptions{Rule: cardca.Last4Extension},
			cfg: func(t *testing.T, c *certlogin.Config) {
				c.SubjectRule = certlogin.SubjectRule{Kind: certlogin.ExtensionLast4, OID: cardca.OIDLast4Extension.String()}
			}},
		{name: "last 4 in an extension, mismatch", want: certlogin.ErrNotYours, id: "A123450000",
			leaf: cardca.CitizenOptions{Rule: cardca.Last4Extension},
			cfg: func(t *testing.T, c *certlogin.Config) {
				c.SubjectRule = certlogin.SubjectRule{Kind: certlogin.ExtensionLast4, OID: cardca.OIDLast4Extension.String()}
			}},
		{name: "last 4 in SubjectDirectoryAttributes", leaf: cardca.CitizenOptions{Rule: cardca.Last4SubjectDirectory},
			cfg: func(t *testing.T, c *certlogin.Config) {
				c.SubjectRule = certlogin.SubjectRule{Kind: certlogin.ExtensionLast4, OID: cardca.OIDLast4Attribute.String(),
					Source: certlogin.SourceSubjectDirectoryAttributes}
			}},
		{name: "last 4 in SubjectDirectoryAttributes, mismatch", want: certlogin.ErrNotYours, id: "A123450000",
			leaf: cardca.CitizenOptions{Rule: cardca.Last4SubjectDirectory},
			cfg: func(t *testing.T, c *certlogin.Config) {
				c.SubjectRule = certlogin.SubjectRule{Kind: certlogin.ExtensionLast4, OID: cardca.OIDLast4Attribute.String(),
					Source: certlogin.SourceSubjectDirectoryAttributes}
			}},
		{name: "extension rule, certificate without the extension", want: certlogin.ErrNotYours,
			cfg: func(t *testing.T, c *certlogin.Config) {
				c.SubjectRule = certlogin.SubjectRule{Kind: certlogin.ExtensionLast4, OID: cardca.OIDLast4Extension.String()}
			}},
		{name: "subject rule on another attribute", want: certlogin.ErrNotYours,
			cfg: func(t *testing.T, c *certlogin.Config) {
				c.SubjectRule = certlogin.SubjectRule{Kind: certlogin.SubjectAttribute, OID: "2.5.4.3"}
			}},

		{name: "revoked, DER CRL file", want: certlogin.ErrRevoked,
			prepare: func(t *testing.T, e env) {
				e.f.ca.Revoke(e.leaf.Cert)
				e.f.rewriteCRL(t, time.Time{}, time.Time{})
			}},
		{name: "revoked, PEM CRL file", want: certlogin.ErrRevoked,
			cfg: func(t *testing.T, c *certlogin.Config) {
				c.CRLs = []string{filepath.Join(filepath.Dir(c.Roots[0]), "crl.pem")}
			},
			prepare: func(t *testing.T, e env) {
				e.f.ca.Revoke(e.leaf.Cert)
				e.f.rewriteCRL(t, time.Time{}, time.Time{})
			}},
		{name: "another certificate revoked", wantRev: "crl",
			prepare: func(t *testing.T, e env) {
				e.f.ca.Revoke(e.f.citizen(t, cardca.CitizenOptions{}).Cert)
				e.f.rewriteCRL(t, time.Time{}, time.Time{})
			}},
		{name: "stale CRL", want: certlogin.ErrRevocationUnknown,
			prepare: func(t *testing.T, e env) {
				e.f.rewriteCRL(t, e.f.ca.Now().Add(-48*time.Hour), e.f.ca.Now().Add(-time.Hour))
			}},
		{name: "stale CRL, require_crl false", wantRev: "unchecked",
			cfg: func(t *testing.T, c *certlogin.Config) { c.RequireCRL = new(false) },
			prepare: func(t *testing.T, e env) {
				e.f.rewriteCRL(t, e.f.ca.Now().Add(-48*time.Hour), e.f.ca.Now().Add(-time.Hour))
			}},
		{name: "stale CRL still proves a revocation", want: certlogin.ErrRevoked,
			prepare: func(t *testing.T, e env) {
				e.f.ca.Revoke(e.leaf.Cert)
				e.f.rewriteCRL(t, e.f.ca.Now().Add(-48*time.Hour), e.f.ca.Now().Add(-time.Hour))
			}},
		{name: "only the CRL of another CA with the same name", want: certlogin.ErrRevocationUnknown,
			cfg: func(t *testing.T, c *certlogin.Config) {
				other := newFixture(t, false)
				c.CRLs = []string{other.files.CRLDER}
			}},
		{name: "only another CA's CRL", want: certlogin.ErrRevocationUnknown,
			cfg: func(t *testing.T, c *certlogin.Config) {
				ca, err := cardca.New(cardca.Options{Name: "Other"})
				if err != nil {
					t.Fatal(err)
				}
				files, err := ca.WriteFiles(t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				c.CRLs = []string{files.CRLDER}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.caRSA)
			e := env{f: f, leaf: f.citizen(t, tc.leaf)}
			if tc.prepare != nil {
				tc.prepare(t, e)
			}
			v := f.verifier(t, func(c *certlogin.Config) {
				if tc.cfg != nil {
					tc.cfg(t, c)
				}
			})
			der := sign(t, e.leaf, challenge, false)
			if tc.signed != nil {
				der = tc.signed(t, e)
			}
			ch := challenge
			if tc.challenge != nil {
				ch = tc.challenge
			}
			id := citizenID
			if tc.id != "" {
				id = tc.id
			}
			proof, err := v.Verify(context.Background(), der, ch, id)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("Verify: got %v, want %v", err, tc.want)
				}
				t.Logf("refused: %v", err)
				if certlogin.Reason(err) != tc.want {
					t.Fatalf("Reason: got %v, want %v", certlogin.Reason(err), tc.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if !proof.Certificate.Equal(e.leaf.Cert) || proof.Method != "moica" || proof.Serial == "" || proof.Issuer == "" {
				t.Fatalf("proof: %+v", proof)
			}
			if tc.wantRev != "" && proof.Revocation != tc.wantRev {
				t.Fatalf("revocation: got %q, want %q", proof.Revocation, tc.wantRev)
			}
			if ev := proof.Evidence(); strings.Contains(ev, citizenID) || !strings.Contains(ev, proof.Serial) {
				t.Fatalf("evidence %q", ev)
			}
		})
	}
}

func TestNewConfigErrors(t *testing.T) {
	f := newFixture(t, false)
	leaf := f.citizen(t, cardca.CitizenOptions{})
	leafPath, _, err := leaf.WriteFiles(f.dir, "leaf")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		mut  func(*certlogin.Config)
		want string
	}{
		{"no id", func(c *certlogin.Config) { c.ID = "" }, "id:"},
		{"bad id", func(c *certlogin.Config) { c.ID = "MOICA card" }, "id:"},
		{"no roots", func(c *certlogin.Config) { c.Roots = nil }, "roots:"},
		{"missing root file", func(c *certlogin.Config) { c.Roots = []string{filepath.Join(f.dir, "nope.pem")} }, "roots[0]:"},
		{"root not a CA", func(c *certlogin.Config) { c.Roots = []string{leafPath} }, "roots[0]:"},
		{"root not PEM", func(c *certlogin.Config) { c.Roots = []string{f.files.CRLDER} }, "roots[0]:"},
		{"intermediate missing", func(c *certlogin.Config) { c.Intermediates = []string{"/nonexistent"} }, "intermediates[0]:"},
		{"CRL file missing", func(c *certlogin.Config) { c.CRLs = []string{f.files.CRLDER, "/nonexistent.crl"} }, "crls[1]:"},
		{"CRL file not a CRL", func(c *certlogin.Config) { c.CRLs = []string{f.files.Root} }, "crls[0]:"},
		{"CRL URL scheme", func(c *certlogin.Config) { c.CRLs = []string{"ftp://example.org/x.crl"} }, "crls[0]:"},
		{"CRL URL without host", func(c *certlogin.Config) { c.CRLs = []string{"http:///x.crl"} }, "crls[0]:"},
		{"negative refresh", func(c *certlogin.Config) { c.CRLRefresh = -time.Second }, "crl_refresh:"},
		{"no rule", func(c *certlogin.Config) { c.SubjectRule = certlogin.SubjectRule{} }, "subject_rule.kind:"},
		{"unknown rule", func(c *certlogin.Config) { c.SubjectRule.Kind = "cn" }, "subject_rule.kind:"},
		{"bad OID", func(c *certlogin.Config) { c.SubjectRule.OID = "2.5.x" }, "subject_rule.oid:"},
		{"extension rule without OID", func(c *certlogin.Config) {
			c.SubjectRule = certlogin.SubjectRule{Kind: certlogin.ExtensionLast4}
		}, "subject_rule.oid:"},
		{"unknown source", func(c *certlogin.Config) {
			c.SubjectRule = certlogin.SubjectRule{Kind: certlogin.ExtensionLast4, OID: "1.2.3", Source: "san"}
		}, "subject_rule.source:"},
		{"source with subject attribute", func(c *certlogin.Config) {
			c.SubjectRule.Source = certlogin.SourceExtension
		}, "subject_rule.source:"},
		{"revocation required but not configured", func(c *certlogin.Config) { c.CRLs = nil }, "require_crl:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := certlogin.New(f.config(tc.mut), nil, nil)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("New: got %v, want an error starting %q", err, tc.want)
			}
		})
	}
	t.Run("sandbox without revocation", func(t *testing.T) {
		if _, err := certlogin.New(f.config(func(c *certlogin.Config) {
			c.CRLs, c.RequireCRL = nil, new(false)
		}), nil, nil); err != nil {
			t.Fatal(err)
		}
	})
}

func TestConfigYAML(t *testing.T) {
	const doc = `
id: moica
roots: [/etc/mydata/moica/grca.pem]
intermediates: [/etc/mydata/moica/moica.pem]
crls: [http://moica.nat.gov.tw/repository/MOICA/CRL/CRL.crl]
crl_refresh: 30m
ocsp: true
subject_rule:
  kind: extension_last4
  oid: 1.3.6.1.4.1.32473.1.2
  source: subject_directory_attributes
`
	var c certlogin.Config
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	if c.ID != "moica" || c.CRLRefresh != 30*time.Minute || !c.OCSP || c.RequireCRL != nil ||
		c.SubjectRule.Source != certlogin.SourceSubjectDirectoryAttributes || len(c.CRLs) != 1 {
		t.Fatalf("decoded %+v", c)
	}
	dec = yaml.NewDecoder(strings.NewReader("id: x\nrequire_crls: false\n"))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err == nil {
		t.Fatal("a misspelt key was accepted")
	}
}

func TestReasons(t *testing.T) {
	codes := map[string]bool{}
	for _, r := range certlogin.Reasons() {
		if r.Code == "" || r.Zh == "" || r.En == "" || codes[r.Code] {
			t.Errorf("reason %+v: empty field or repeated code", r)
		}
		codes[r.Code] = true
	}
	if certlogin.Reason(context.Canceled) != nil {
		t.Error("Reason of an unrelated error is not nil")
	}
}

func TestNewChallenge(t *testing.T) {
	a, b := certlogin.NewChallenge(), certlogin.NewChallenge()
	if len(a) != 43 || bytes.Equal(a, b) {
		t.Fatalf("challenges %q %q", a, b)
	}
}
