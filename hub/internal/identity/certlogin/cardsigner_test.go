package certlogin_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mydatafed/mydata/hub/internal/identity/certlogin"
	"github.com/mydatafed/mydata/pkg/cardca"
	"github.com/mydatafed/mydata/pkg/cardsigner"
)

// TestCardSignerRoundTrip has pkg/cardsigner, the demo's and the browser tests' signing component, sign
// a challenge over HTTP as the portal's page asks, with an RSA card as real ones are, and verifies the
// answer as the login does. The other key types and detached signatures are tested in certlogin_test.go with
// cardsigner.Sign.
func TestCardSignerRoundTrip(t *testing.T) {
	const portal, citizenID = "https://portal.mydata.test:8443", "A123456789"
	ca, err := cardca.New(cardca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files, err := ca.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.IssueCitizen(cardca.CitizenOptions{NationalID: citizenID, RSA: true})
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath, err := leaf.WriteFiles(dir, "card")
	if err != nil {
		t.Fatal(err)
	}
	s, err := cardsigner.New(certPath, keyPath, portal)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	v, err := certlogin.New(certlogin.Config{
		ID:          "moica",
		Roots:       []string{files.Root},
		CRLs:        []string{files.CRLPEM},
		SubjectRule: certlogin.SubjectRule{Kind: certlogin.SubjectAttribute},
	}, nil, ca.Now)
	if err != nil {
		t.Fatal(err)
	}

	challenge := certlogin.NewChallenge()
	body, _ := json.Marshal(cardsigner.SignRequest{Challenge: base64.StdEncoding.EncodeToString(challenge)})
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/sign", bytes.NewReader(body))
	req.Header.Set("Origin", portal)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s", resp.Status)
	}
	var out cardsigner.SignResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	der, err := base64.StdEncoding.DecodeString(out.SignedData)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := v.Verify(context.Background(), der, challenge, citizenID)
	if err != nil {
		t.Fatal(err)
	}
	if got := base64.StdEncoding.EncodeToString(proof.Certificate.Raw); got != out.Certificate {
		t.Fatal("the returned certificate is not the signer's")
	}
	// The same signature does not log in with another challenge.
	if _, err := v.Verify(context.Background(), der, certlogin.NewChallenge(), citizenID); !errors.Is(err, certlogin.ErrChallenge) {
		t.Fatalf("replay with a new challenge: %v", err)
	}
}
