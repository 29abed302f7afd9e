package cardca_test

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/cardca"
)

// verify checks that leaf chains to ca's root through its own chain, at the CA's clock.
func verify(t *testing.T, ca *cardca.CA, leaf *cardca.Leaf) {
	t.Helper()
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(ca.Root)
	for _, c := range leaf.Chain {
		inters.AddCert(c)
	}
	if _, err := leaf.Cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: ca.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("the card does not chain to the root: %v", err)
	}
}

func TestIssueCitizen(t *testing.T) {
	ca, err := cardca.New(cardca.Options{Name: "Demo"})
	if err != nil {
		t.Fatal(err)
	}
	if got := ca.Root.Subject.CommonName; got != "MyData Demo Root CA" {
		t.Errorf("root CN %q", got)
	}
	a, err := ca.IssueCitizen(cardca.CitizenOptions{NationalID: "A123456789"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := ca.IssueCitizen(cardca.CitizenOptions{NationalID: "B220713459", RSA: true})
	if err != nil {
		t.Fatal(err)
	}
	verify(t, ca, a)
	verify(t, ca, b)
	if a.Cert.SerialNumber.Cmp(b.Cert.SerialNumber) == 0 {
		t.Error("two cards with one serial number")
	}
	if a.Cert.Subject.SerialNumber != "A123456789" {
		t.Errorf("subject serialNumber %q", a.Cert.Subject.SerialNumber)
	}
	if _, err := ca.IssueCitizen(cardca.CitizenOptions{NationalID: "123"}); err == nil {
		t.Error("a three-character ID accepted")
	}
}

// TestSaveLoad keeps a CA across runs: the loaded one is the same CA, its cards chain to the saved root,
// and its serial numbers do not repeat those of the first run.
func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	ca, err := cardca.New(cardca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := ca.IssueCitizen(cardca.CitizenOptions{NationalID: "A123456789"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{cardca.RootKeyFile, cardca.IntermediateKeyFile} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, want mode 0600", name, err)
		}
	}
	later := ca.Now().Add(time.Hour)
	loaded, err := cardca.Load(dir, later)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Root.Equal(ca.Root) || !loaded.Intermediate.Equal(ca.Intermediate) {
		t.Fatal("the loaded CA is not the saved one")
	}
	if !loaded.Now().Equal(later) {
		t.Errorf("clock %v, want %v", loaded.Now(), later)
	}
	serials := map[string]bool{first.Cert.SerialNumber.String(): true}
	for range 3 {
		leaf, err := loaded.IssueCitizen(cardca.CitizenOptions{NationalID: "A123456789"})
		if err != nil {
			t.Fatal(err)
		}
		verify(t, ca, leaf)
		if s := leaf.Cert.SerialNumber.String(); serials[s] {
			t.Errorf("serial %s issued twice", s)
		} else {
			serials[s] = true
		}
	}
}

func TestLoadRefuses(t *testing.T) {
	saved := func(t *testing.T) (string, *cardca.CA) {
		dir := t.TempDir()
		ca, err := cardca.New(cardca.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := ca.Save(dir); err != nil {
			t.Fatal(err)
		}
		return dir, ca
	}
	copyFile := func(t *testing.T, from, to string) {
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, dir, other string)
	}{
		{"empty directory", func(t *testing.T, dir, _ string) {
			for _, n := range []string{cardca.RootFile, cardca.RootKeyFile, cardca.IntermediateFile, cardca.IntermediateKeyFile} {
				os.Remove(filepath.Join(dir, n))
			}
		}},
		{"no issuing CA key", func(t *testing.T, dir, _ string) { os.Remove(filepath.Join(dir, cardca.IntermediateKeyFile)) }},
		{"another CA's issuing CA", func(t *testing.T, dir, other string) {
			copyFile(t, filepath.Join(other, cardca.IntermediateFile), filepath.Join(dir, cardca.IntermediateFile))
			copyFile(t, filepath.Join(other, cardca.IntermediateKeyFile), filepath.Join(dir, cardca.IntermediateKeyFile))
		}},
		{"another CA's root key", func(t *testing.T, dir, other string) {
			copyFile(t, filepath.Join(other, cardca.RootKeyFile), filepath.Join(dir, cardca.RootKeyFile))
		}},
		{"another CA's issuing key", func(t *testing.T, dir, other string) {
			copyFile(t, filepath.Join(other, cardca.IntermediateKeyFile), filepath.Join(dir, cardca.IntermediateKeyFile))
		}},
		{"a key where the root should be", func(t *testing.T, dir, _ string) {
			copyFile(t, filepath.Join(dir, cardca.RootKeyFile), filepath.Join(dir, cardca.RootFile))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := saved(t)
			other, _ := saved(t)
			tc.spoil(t, dir, other)
			if _, err := cardca.Load(dir, time.Time{}); err == nil {
				t.Fatal("Load accepted it")
			}
		})
	}
}

func TestWriteCRL(t *testing.T) {
	dir := t.TempDir()
	ca, err := cardca.New(cardca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	lost, err := ca.IssueCitizen(cardca.CitizenOptions{NationalID: "A123456789"})
	if err != nil {
		t.Fatal(err)
	}
	ca.Revoke(lost.Cert)
	this, next := ca.Now().Add(-time.Minute), ca.Now().Add(30*24*time.Hour)
	pemPath, derPath, err := ca.WriteCRL(dir, this, next)
	if err != nil {
		t.Fatal(err)
	}
	pemData, err := os.ReadFile(pemPath)
	if err != nil {
		t.Fatal(err)
	}
	der, err := os.ReadFile(derPath)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(pemData)
	if b == nil || b.Type != "X509 CRL" || !bytes.Equal(b.Bytes, der) {
		t.Fatal("crl.pem is not crl.der in PEM")
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(ca.Intermediate); err != nil {
		t.Fatal(err)
	}
	if !crl.ThisUpdate.Equal(this) || !crl.NextUpdate.Equal(next) {
		t.Errorf("updates %v..%v, want %v..%v", crl.ThisUpdate, crl.NextUpdate, this, next)
	}
	if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(lost.Cert.SerialNumber) != 0 {
		t.Errorf("revoked %v, want the lost card", crl.RevokedCertificateEntries)
	}
}

func TestLoadLeaf(t *testing.T) {
	dir := t.TempDir()
	ca, err := cardca.New(cardca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := ca.IssueCitizen(cardca.CitizenOptions{NationalID: "A123456789", RSA: true})
	b, _ := ca.IssueCitizen(cardca.CitizenOptions{NationalID: "B220713459"})
	aCert, aKey, err := a.WriteFiles(dir, "a")
	if err != nil {
		t.Fatal(err)
	}
	_, bKey, err := b.WriteFiles(dir, "b")
	if err != nil {
		t.Fatal(err)
	}
	got, err := cardca.LoadLeaf(aCert, aKey)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Cert.Equal(a.Cert) || len(got.Chain) != 1 || !got.Chain[0].Equal(ca.Intermediate) {
		t.Fatal("LoadLeaf did not read back what WriteFiles wrote")
	}
	if _, err := cardca.LoadLeaf(aCert, bKey); err == nil {
		t.Error("another card's key accepted")
	}
	if _, err := cardca.LoadLeaf(aKey, aKey); err == nil {
		t.Error("a key file accepted as the certificate")
	}
}
