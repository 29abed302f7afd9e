package main

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/cardsigner"
	"github.com/mydatafed/mydata/pkg/pemfile"
	"github.com/smallstep/pkcs7"
)

// verifyCard checks a card as the hub's certlogin does (which this package cannot import): it chains to
// the root through the issuing CA, is meant for signing, names the ID in its subject serialNumber, and
// the CRL from its issuer is fresh and does or does not list it.
func verifyCard(t *testing.T, dir caDir, name, id string, now time.Time) (revoked bool) {
	t.Helper()
	certs, err := pemfile.ReadCertificates(dir.cardCert(name))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(readRoot(t, dir))
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	chains, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		t.Fatalf("card %s does not chain to %s: %v", name, dir.rootCert(), err)
	}
	if ku := certs[0].KeyUsage; ku&x509.KeyUsageDigitalSignature == 0 || ku&x509.KeyUsageContentCommitment == 0 {
		t.Errorf("card %s: key usage %b, want digitalSignature and nonRepudiation", name, ku)
	}
	if got := certs[0].Subject.SerialNumber; got != id {
		t.Errorf("card %s: subject serialNumber %q, want %q", name, got, id)
	}
	data, err := os.ReadFile(dir.crlPEM())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "X509 CRL" {
		t.Fatalf("%s: no X509 CRL block", dir.crlPEM())
	}
	crl, err := x509.ParseRevocationList(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	der, err := os.ReadFile(dir.crlDER())
	if err != nil || !bytes.Equal(der, b.Bytes) {
		t.Errorf("crl.der differs from crl.pem (%v)", err)
	}
	issuer := chains[0][1]
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		t.Fatalf("CRL not signed by the card's issuer: %v", err)
	}
	if now.Before(crl.ThisUpdate) || now.After(crl.NextUpdate) {
		t.Errorf("CRL not fresh at %v: %v..%v", now, crl.ThisUpdate, crl.NextUpdate)
	}
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(certs[0].SerialNumber) == 0 {
			return true
		}
	}
	return false
}

func readRoot(t *testing.T, dir caDir) *x509.Certificate {
	t.Helper()
	certs, err := pemfile.ReadCertificates(dir.rootCert())
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

func TestCA(t *testing.T) {
	dir := caDir(t.TempDir())
	now := time.Now()
	citizens := []string{"A123456789", "B220713459"}
	var out bytes.Buffer
	if err := makeCA(dir, citizens, "A123456789", now, &out); err != nil {
		t.Fatal(err)
	}
	t.Logf("first run:\n%s", out.String())
	for _, id := range citizens {
		if verifyCard(t, dir, id, id, now) {
			t.Errorf("card %s is revoked", id)
		}
	}
	if !verifyCard(t, dir, "A123456789"+revokedSuffix, "A123456789", now) {
		t.Error("the revoked card is not in the CRL")
	}
	if fi, err := os.Stat(dir.interKey()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("intermediate key: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}

	// A second run keeps the CA and the cards, adds a card, and makes a fresh CRL that still revokes.
	rootBefore, _ := os.ReadFile(dir.rootCert())
	cardBefore, _ := os.ReadFile(dir.cardCert("B220713459"))
	out.Reset()
	later := now.Add(time.Hour)
	if err := makeCA(dir, append(citizens, "F132604985"), "A123456789", later, &out); err != nil {
		t.Fatal(err)
	}
	t.Logf("second run:\n%s", out.String())
	if !strings.Contains(out.String(), "CA (kept)") || !strings.Contains(out.String(), "card of F132604985 (issued)") {
		t.Errorf("second run said:\n%s", out.String())
	}
	if rootAfter, _ := os.ReadFile(dir.rootCert()); !bytes.Equal(rootBefore, rootAfter) {
		t.Error("the root changed")
	}
	if cardAfter, _ := os.ReadFile(dir.cardCert("B220713459")); !bytes.Equal(cardBefore, cardAfter) {
		t.Error("an existing card was reissued")
	}
	if verifyCard(t, dir, "F132604985", "F132604985", later) {
		t.Error("the new card is revoked")
	}
	if !verifyCard(t, dir, "A123456789"+revokedSuffix, "A123456789", later) {
		t.Error("the fresh CRL no longer revokes the lost card")
	}
}

func TestCARefusesBadIDs(t *testing.T) {
	for _, ids := range [][]string{{"A123456780"}, {}, {"hello"}} {
		if err := makeCA(caDir(t.TempDir()), ids, "A123456789", time.Now(), new(bytes.Buffer)); err == nil {
			t.Errorf("makeCA(%q) succeeded", ids)
		}
	}
}

// TestSignerSignsWithCard signs a challenge with a card from makeCA, as the portal's page asks, and
// checks the SignedData as the hub would: the challenge inside, signed by the card that chains to the root.
func TestSignerSignsWithCard(t *testing.T) {
	dir := caDir(t.TempDir())
	if err := makeCA(dir, []string{"B220713459"}, "B220713459", time.Now(), new(bytes.Buffer)); err != nil {
		t.Fatal(err)
	}
	const portal, other = "http://localhost:8080", "http://localhost:8081"
	s, err := cardsigner.New(dir.cardCert("B220713459"), dir.cardKey("B220713459"), portal, other)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	challenge := []byte("portal-challenge-0123456789")
	post := func(origin string) *http.Response {
		req, _ := http.NewRequest("POST", srv.URL+"/sign", strings.NewReader(`{"challenge":"`+base64.StdEncoding.EncodeToString(challenge)+`"}`))
		req.Header.Set("Content-Type", "application/json")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for _, origin := range []string{"", "http://evil.example", "http://127.0.0.1:8080"} {
		if res := post(origin); res.StatusCode != http.StatusForbidden {
			t.Errorf("Origin %q: status %d, want 403", origin, res.StatusCode)
		}
	}
	for _, origin := range []string{portal, other} {
		res := post(origin)
		if res.StatusCode != http.StatusOK || res.Header.Get("Access-Control-Allow-Origin") != origin {
			t.Fatalf("Origin %s: status %d, allow-origin %q", origin, res.StatusCode, res.Header.Get("Access-Control-Allow-Origin"))
		}
		var out struct {
			SignedData string `json:"signed_data"`
		}
		if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		der, _ := base64.StdEncoding.DecodeString(out.SignedData)
		p7, err := pkcs7.Parse(der)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(p7.Content, challenge) {
			t.Errorf("signed content %q, want the challenge", p7.Content)
		}
		roots := x509.NewCertPool()
		roots.AddCert(readRoot(t, dir))
		if err := p7.VerifyWithChain(roots); err != nil {
			t.Errorf("SignedData does not verify to the root: %v", err)
		}
	}
	req, _ := http.NewRequest("OPTIONS", srv.URL+"/sign", nil)
	req.Header.Set("Origin", portal)
	req.Header.Set("Access-Control-Request-Private-Network", "true")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusNoContent || res.Header.Get("Access-Control-Allow-Private-Network") != "true" {
		t.Errorf("preflight: %d %v", res.StatusCode, res.Header)
	}
}
