package fedid

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func cert(t *testing.T, uri string, ca bool) *x509.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: ca, BasicConstraintsValid: true}
	if uri != "" {
		u, _ := url.Parse(uri)
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func TestCheckChain(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("mydata.test")
	root := cert(t, "spiffe://mydata.test", true)
	bankCA := cert(t, "spiffe://mydata.test/org/bank", true)
	anyCA := cert(t, "spiffe://mydata.test", true)
	spireCA := cert(t, "spiffe://mydata.test", true)
	leaf := cert(t, "", false)
	id := spiffeid.RequireFromString
	tests := []struct {
		name  string
		id    string
		chain []*x509.Certificate
		want  string
	}{
		{"connector under root", "spiffe://mydata.test/org/bank/connector/c", []*x509.Certificate{leaf, root}, ""},
		{"hub under root", "spiffe://mydata.test/hub/h", []*x509.Certificate{leaf, root}, ""},
		{"connector under its org's CA", "spiffe://mydata.test/org/bank/connector/c", []*x509.Certificate{leaf, spireCA, bankCA, root}, ""},
		{"connector under another org's CA", "spiffe://mydata.test/org/moi/connector/c", []*x509.Certificate{leaf, spireCA, bankCA, root}, "not bound to organisation moi"},
		{"connector under an unbound CA", "spiffe://mydata.test/org/bank/connector/c", []*x509.Certificate{leaf, anyCA, root}, "not bound"},
		{"hub under an intermediate", "spiffe://mydata.test/hub/h", []*x509.Certificate{leaf, bankCA, root}, "must be issued by the federation root"},
		{"operator under an intermediate", "spiffe://mydata.test/operator/o", []*x509.Certificate{leaf, bankCA, root}, "must be issued by the federation root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckChain(td, id(tt.id), [][]*x509.Certificate{tt.chain})
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	a := Authorizer(td, KindHub, nil)
	if err := a(id("spiffe://other.test/hub/h"), [][]*x509.Certificate{{leaf, root}}); err == nil {
		t.Fatal("foreign trust domain authorised")
	}
	if err := a(id("spiffe://mydata.test/org/bank/connector/c"), [][]*x509.Certificate{{leaf, root}}); err == nil {
		t.Fatal("connector authorised as hub")
	}
}
