package consent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/hub/internal/keyring"
	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/seal"
	"github.com/mydatafed/mydata/pkg/ticket"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

const (
	alice = "A123456789"
	bob   = "B223456787"
)

// world is a state machine fed its log directly, a keyring over it, and the consent service.
type world struct {
	t     *testing.T
	f     *fsm.FSM
	dir   string
	index uint64
	svc   *Service
	dpKey []byte
}

func (w *world) apply(cmd fsm.Command) error {
	if err := fsm.Validate(cmd); err != nil {
		return err
	}
	data, err := fsm.Encode(cmd)
	if err != nil {
		return err
	}
	w.index++
	return w.f.Apply(&raft.Log{Index: w.index, Type: raft.LogCommand, Data: data}).(fsm.Result).Err()
}

func newWorld(t *testing.T) *world {
	t.Helper()
	dir := t.TempDir()
	f, err := fsm.Open(filepath.Join(dir, "state.db"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	w := &world{t: t, f: f, dir: dir}
	kek, _, err := keyring.LoadOrCreateKEK(filepath.Join(dir, "kek"))
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := keyring.New(kek, f)
	if err := keys.Ensure(w.apply); err != nil {
		t.Fatal(err)
	}
	tk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signer, err := ticket.NewSigner(tk)
	if err != nil {
		t.Fatal(err)
	}
	w.svc = New(Config{TrustDomain: spiffeid.RequireTrustDomainFromString("mydata.test"), NodeID: "hub-1", State: f, Keys: keys,
		Apply: w.apply, Tickets: signer, CodeTTL: time.Minute, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	dp, _ := seal.GenerateKey(seal.KEMHybrid)
	w.dpKey = dp.PublicKey().Bytes()
	now := time.Now()
	for _, cmd := range []fsm.Command{
		&fsm.OrgAdd{Code: "moi", NameZh: "內政部", NameEn: "MOI", Type: "central-agency", Now: now},
		&fsm.OrgAdd{Code: "bank", NameZh: "銀行", NameEn: "Bank", Type: "financial-institution", Now: now},
		&fsm.ConnectorAdd{Org: "moi", Name: "dp1", Roles: []string{"dp"}, Address: "127.0.0.1:7001", Now: now},
		&fsm.ConnectorAdd{Org: "bank", Name: "sp1", Roles: []string{"sp"}, Address: "127.0.0.1:7002", Now: now},
		&fsm.ConnectorKey{Org: "moi", Name: "dp1", KEM: seal.KEMHybrid, Key: w.dpKey, Now: now},
		&fsm.DatasetAdd{Dataset: fsm.Dataset{ID: "moi.household", NameZh: "戶籍", NameEn: "Household", DPOrg: "moi", DPConnector: "dp1", MinAAL: 1}, Now: now},
		&fsm.ServiceAdd{Service: fsm.Service{ID: "bank.loan", NameZh: "貸款", NameEn: "Loan", SPOrg: "bank", SPConnector: "sp1", Modes: []string{"online"},
			Datasets: []string{"moi.household"}, Purpose: "p", Terms: "t", TermsVersion: "1", RedirectURIs: []string{"https://bank.example/cb"}}, Now: now},
	} {
		if err := w.apply(cmd); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

const verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-verifier"

func request(id, subject string) fsm.Consent {
	sum := sha256.Sum256([]byte(verifier))
	now := time.Now()
	return fsm.Consent{ID: id, Service: "bank.loan", Subject: subject, Datasets: []string{"moi.household"}, TermsVersion: "1", AAL: 2,
		LoginMethod: "dev", RedirectURI: "https://bank.example/cb", CodeChallenge: base64.RawURLEncoding.EncodeToString(sum[:]),
		CreatedAt: now, ExpiresAt: now.Add(10 * time.Minute)}
}

func (w *world) redeem(code string, caller fedid.Parsed) (*hubapi.RedeemResponse, error) {
	rk, _ := seal.GenerateKey(seal.KEMHybrid)
	return w.svc.Redeem(context.Background(), caller, hubapi.RedeemRequest{ClientID: "bank.loan", Code: code, CodeVerifier: verifier,
		RedirectURI: "https://bank.example/cb", RecipientKEM: seal.KEMHybrid, RecipientKey: rk.PublicKey().Bytes()}, time.Now())
}

var sp = fedid.Parsed{Kind: fedid.KindConnector, Org: "bank", Name: "sp1"}

func TestDecideRedeemAndTheNationalID(t *testing.T) {
	w := newWorld(t)
	code, err := w.svc.Decide(request("c1", alice), true, time.Now())
	if err != nil || code == "" {
		t.Fatalf("decide: %q %v", code, err)
	}
	k, _ := w.f.Consent("c1")
	if k.Subject == alice || !strings.Contains(k.Subject, ":") || len(k.SubjectSealed) == 0 || bytes.Contains(k.SubjectSealed, []byte(alice)) {
		t.Fatalf("stored consent: subject %q, sealed %d bytes: want a keyed hash and the ID sealed", k.Subject, len(k.SubjectSealed))
	}
	// The history is found by the citizen's ID, and only by it.
	if h, _ := w.svc.History(alice, 10); len(h) != 1 || h[0].ID != "c1" {
		t.Fatalf("alice's history: %+v", h)
	}
	if h, _ := w.svc.History(bob, 10); len(h) != 0 {
		t.Fatalf("bob sees %+v", h)
	}
	refusals := []struct {
		name   string
		code   string
		caller fedid.Parsed
		want   string
	}{
		{"unknown code", "nope", sp, "invalid_grant"},
		{"another connector", code, fedid.Parsed{Kind: fedid.KindConnector, Org: "moi", Name: "dp1"}, "invalid_client"},
	}
	for _, r := range refusals {
		_, err := w.redeem(r.code, r.caller)
		var ge *GrantError
		if !errors.As(err, &ge) || ge.Code != r.want {
			t.Errorf("%s: %v, want %s", r.name, err, r.want)
		}
	}
	resp, err := w.redeem(code, sp)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Subject != alice || len(resp.Tickets) != 1 {
		t.Fatalf("redemption %+v", resp)
	}
	// Once used, the sealed ID is gone: only the hash remains.
	if k, _ := w.f.Consent("c1"); len(k.SubjectSealed) != 0 || k.State != fsm.ConsentUsed {
		t.Fatalf("after use: %+v", k)
	}
	var ge *GrantError
	if _, err := w.redeem(code, sp); !errors.As(err, &ge) || ge.Code != "invalid_grant" {
		t.Fatalf("second redemption: %v", err)
	}
	if p, ok, _ := w.svc.PartiesOf(context.Background(), "c1"); !ok || p.Service != "bank.loan" {
		t.Fatalf("parties %+v %v", p, ok)
	}
}

func TestRevokeAndForget(t *testing.T) {
	w := newWorld(t)
	if _, err := w.svc.Decide(request("c1", alice), true, time.Now()); err != nil {
		t.Fatal(err)
	}
	var fe *fsm.Error
	if err := w.svc.Revoke("c1", bob, time.Now()); !errors.As(err, &fe) || fe.Code != fsm.NotFound {
		t.Fatalf("bob revokes alice's consent: %v", err)
	}
	if err := w.svc.Revoke("c1", alice, time.Now()); err != nil {
		t.Fatal(err)
	}
	if k, _ := w.f.Consent("c1"); k.State != fsm.ConsentRevoked || len(k.SubjectSealed) != 0 {
		t.Fatalf("after revocation: %+v", k)
	}
	// A granted consent whose code expired unused loses its sealed ID at the next upkeep.
	if _, err := w.svc.Decide(request("c2", alice), true, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := w.apply(&fsm.ConsentForget{Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if k, _ := w.f.Consent("c2"); len(k.SubjectSealed) == 0 {
		t.Fatal("a redeemable consent lost its sealed ID")
	}
	if err := w.apply(&fsm.ConsentForget{Now: time.Now().Add(2 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if k, _ := w.f.Consent("c2"); len(k.SubjectSealed) != 0 {
		t.Fatal("an expired consent kept its sealed ID")
	}
	// A denial records no sealed ID at all.
	if _, err := w.svc.Decide(request("c3", alice), false, time.Now()); err != nil {
		t.Fatal(err)
	}
	if k, _ := w.f.Consent("c3"); k.State != fsm.ConsentDenied || len(k.SubjectSealed) != 0 {
		t.Fatalf("denied: %+v", k)
	}
}

func TestRedactsConsentsOfEarlierReleases(t *testing.T) {
	w := newWorld(t)
	// As an earlier release recorded it: the ID in clear.
	legacy := request("old", alice)
	if err := w.apply(&fsm.ConsentRecord{Consent: legacy, Approve: false, Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if h, _ := w.svc.History(alice, 10); len(h) != 1 {
		t.Fatal("a legacy consent is not in the history")
	}
	if err := w.svc.redact(); err != nil {
		t.Fatal(err)
	}
	k, _ := w.f.Consent("old")
	if k.Subject == alice {
		t.Fatal("not redacted")
	}
	if h, _ := w.svc.History(alice, 10); len(h) != 1 {
		t.Fatal("a redacted consent left the history")
	}
	// Nothing is stored under the ID itself any more: only its keyed hash finds the consent.
	if cs, _ := w.f.ConsentsOf([]string{alice}, 10); len(cs) != 0 {
		t.Fatalf("still stored under the clear ID: %+v", cs)
	}
}
