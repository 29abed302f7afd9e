package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

var td = spiffeid.RequireTrustDomainFromString("mydata.test")

func csrFor(t *testing.T, uris ...string) *x509.CertificateRequest {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.CertificateRequest{}
	for _, u := range uris {
		pu, _ := url.Parse(u)
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := x509.ParseCertificateRequest(der)
	return csr
}

func TestLoadOrCreate(t *testing.T) {
	dir := t.TempDir()
	c1, created, err := LoadOrCreate(dir, td, time.Hour)
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	fi, err := os.Stat(filepath.Join(dir, rootKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v %v", fi.Mode(), err)
	}
	c2, created, err := LoadOrCreate(dir, td, time.Hour)
	if err != nil || created {
		t.Fatalf("reload: %v %v", created, err)
	}
	if c1.Fingerprint() != c2.Fingerprint() {
		t.Fatal("reload gave another root")
	}
	if !c2.Root().IsCA || c2.Root().URIs[0].String() != "spiffe://mydata.test" {
		t.Fatal("root lacks CA flag or trust domain URI")
	}
}

func TestSignCSR(t *testing.T) {
	c, _, err := LoadOrCreate(t.TempDir(), td, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	want := spiffeid.RequireFromString("spiffe://mydata.test/org/moi/connector/dp1")
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	weakDER, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{want.URL()}}, rsaKey)
	weak, _ := x509.ParseCertificateRequest(weakDER)
	dnsCSR := csrFor(t, want.String())
	dnsCSR.DNSNames = []string{"x"}

	tests := []struct {
		name    string
		csr     *x509.CertificateRequest
		wantErr string
	}{
		{"ok", csrFor(t, want.String()), ""},
		{"other id", csrFor(t, "spiffe://mydata.test/org/moi/connector/dp2"), "allows only"},
		{"two ids", csrFor(t, want.String(), "spiffe://mydata.test/x"), "exactly one"},
		{"no id", csrFor(t), "exactly one"},
		{"weak rsa", weak, "2048"},
		{"dns name", dnsCSR, "only a SPIFFE ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := c.SignCSR(tt.csr, want, time.Hour)
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, ErrCSR) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			id, err := x509svid.IDFromCert(cert)
			if err != nil || id != want {
				t.Fatalf("issued %v %v", id, err)
			}
			if _, _, err := x509svid.Verify([]*x509.Certificate{cert}, c.Bundle()); err != nil {
				t.Fatalf("verify: %v", err)
			}
			if time.Until(cert.NotAfter) > time.Hour {
				t.Fatal("TTL not applied")
			}
		})
	}
}

func TestIssueIntermediate(t *testing.T) {
	c, _, _ := LoadOrCreate(t.TempDir(), td, time.Hour)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	inter, err := c.IssueIntermediate(key.Public(), "bank", 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !inter.IsCA || !inter.NotAfter.Equal(c.Root().NotAfter) {
		t.Fatalf("intermediate IsCA=%v notAfter=%v root=%v", inter.IsCA, inter.NotAfter, c.Root().NotAfter)
	}
	if err := inter.CheckSignatureFrom(c.Root()); err != nil {
		t.Fatal(err)
	}
}
