package federationtest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

func TestStartSPIRE(t *testing.T) {
	if _, _, ok := SPIREBinaries(); !ok {
		t.Skip("spire-server/spire-agent not built: run .ci/spire/build.sh")
	}
	if testing.Short() {
		t.Skip("starts a SPIRE server and agent; skipped with -short")
	}

	// The hub's PKI: a root, and an intermediate CA it issued for SPIRE.
	// The intermediate needs no SPIFFE ID and no extended key usage.
	dir := t.TempDir()
	root, rootKey := newCA(t, "MyData test hub root", nil, nil)
	inter, interKey := newCA(t, "MyData test SPIRE upstream", root, rootKey)
	certFile := filepath.Join(dir, "upstream.crt")
	keyFile := filepath.Join(dir, "upstream.key")
	bundleFile := filepath.Join(dir, "root.crt")
	writePEM(t, certFile, "CERTIFICATE", inter.Raw)
	keyDER, err := x509.MarshalPKCS8PrivateKey(interKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	writePEM(t, bundleFile, "CERTIFICATE", root.Raw)

	const svidTTL = 30 * time.Minute
	start := time.Now()
	s := StartSPIRE(t, SPIREConfig{
		TrustDomain:    "mydata.test",
		UpstreamCert:   certFile,
		UpstreamKey:    keyFile,
		UpstreamBundle: bundleFile,
		SVIDTTL:        svidTTL,
	})
	t.Logf("SPIRE started in %v", time.Since(start).Round(time.Millisecond))

	want := spiffeid.RequireFromString("spiffe://mydata.test/org/acme/connector/c1")
	start = time.Now()
	s.Register(t, want.String())
	t.Logf("%s served after %v", want, time.Since(start).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	x509ctx, err := workloadapi.FetchX509Context(ctx, workloadapi.WithAddr(s.WorkloadAPIAddr()))
	if err != nil {
		t.Fatalf("FetchX509Context: %v", err)
	}
	var svid *x509svid.SVID
	for _, sv := range x509ctx.SVIDs {
		if sv.ID == want {
			svid = sv
		}
	}
	if svid == nil {
		t.Fatalf("no SVID for %s among %d", want, len(x509ctx.SVIDs))
	}

	// The SVID chains to the hub root, through SPIRE's CA and the
	// intermediate.
	hubBundle := x509bundle.FromX509Authorities(s.TrustDomain, []*x509.Certificate{root})
	gotID, chains, err := x509svid.Verify(svid.Certificates, hubBundle)
	if err != nil {
		t.Fatalf("SVID does not verify against the hub root: %v", err)
	}
	if gotID != want {
		t.Errorf("verified ID = %s, want %s", gotID, want)
	}
	for _, c := range chains[0] {
		t.Logf("chain: %s (issuer %s) %v", c.Subject, c.Issuer, c.URIs)
	}
	if n := len(chains[0]); n != 4 {
		t.Errorf("chain length = %d, want 4 (SVID, SPIRE CA, intermediate, root)", n)
	}
	if lifetime := svid.Certificates[0].NotAfter.Sub(svid.Certificates[0].NotBefore); lifetime < svidTTL-time.Minute || lifetime > svidTTL+time.Minute {
		t.Errorf("SVID lifetime = %v, want about %v", lifetime, svidTTL)
	}

	// SPIRE's own trust bundle is the hub root alone.
	bundle, err := x509ctx.Bundles.GetX509BundleForTrustDomain(s.TrustDomain)
	if err != nil {
		t.Fatal(err)
	}
	if auths := bundle.X509Authorities(); len(auths) != 1 || !auths[0].Equal(root) {
		t.Errorf("Workload API bundle has %d authorities, want just the hub root", len(auths))
	}

	// Registering the same ID again is harmless.
	s.Register(t, want.String())
}

// newCA makes an ECDSA P-256 CA certificate, self-signed when parent is nil.
func newCA(t *testing.T, cn string, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"MyData Federation test"}, CommonName: cn},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func writePEM(t *testing.T, path, blockType string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
