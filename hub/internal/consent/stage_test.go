package consent

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/seal"
	"github.com/mydatafed/mydata/pkg/ticket"
)

// stageClaim reads a ticket's stage claim without verifying it (the signer is the test's own).
func stageClaim(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c ticket.Claims
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c.Stage
}

// TestStagesOfAService takes a service through approved applications: in its sandbox its tickets carry
// the sandbox stage (the DP answers them from synthetic data); in its pilot only the listed citizen may
// consent, and its tickets are for real data.
func TestStagesOfAService(t *testing.T) {
	w := newWorld(t)
	admin := fsm.Actor{SPIFFEID: "spiffe://mydata.test/operator/admin", Roles: []string{fsm.RoleFederationAdmin}}
	svc := fsm.Service{ID: "bank.card", NameZh: "信用卡", NameEn: "Card", SPOrg: "bank", SPConnector: "sp1", Modes: []string{"online"},
		Datasets: []string{"moi.household"}, Purpose: "p", Terms: "t", TermsVersion: "1", RedirectURIs: []string{"https://bank.example/cb"}}
	aliceHash, err := w.svc.cfg.Keys.LookupHash(alice)
	if err != nil {
		t.Fatal(err)
	}
	step := func(id, stage string, subjects ...string) {
		t.Helper()
		now := time.Now()
		for _, cmd := range []fsm.Command{
			&fsm.ApplicationSubmit{Application: fsm.Application{ID: id, Kind: fsm.ApplyService, Stage: stage, Service: &svc, TestSubjects: subjects}, Actor: admin, Now: now},
			&fsm.ApplicationReview{ID: id, Actor: fsm.Actor{SPIFFEID: "spiffe://mydata.test/operator/fsc", Roles: []string{"reviewer:financial"}}, Approve: true, Reason: "ok", Now: now},
			&fsm.ApplicationDecide{ID: id, Actor: admin, Approve: true, Reason: "ok", Now: now},
		} {
			if err := w.apply(cmd); err != nil {
				t.Fatalf("%s: %v", id, err)
			}
		}
	}
	consent := func(id, subject string) fsm.Consent {
		c := request(id, subject)
		c.Service = "bank.card"
		return c
	}
	step("app-1", "sandbox")
	code, err := w.svc.Decide(consent("c-sandbox", bob), true, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if s := redeemCard(t, w, code); s != ticket.StageSandbox {
		t.Fatalf("sandbox ticket stage %q", s)
	}

	step("app-2", "pilot", aliceHash)
	if _, err := w.svc.Decide(consent("c-bob", bob), true, time.Now()); !errors.Is(err, ErrNotPilotSubject) {
		t.Fatalf("bob consents to a pilot he is not listed on: %v", err)
	}
	// Refusing is every citizen's right, listed or not.
	if _, err := w.svc.Decide(consent("c-bob-no", bob), false, time.Now()); err != nil {
		t.Fatalf("bob refuses: %v", err)
	}
	code, err = w.svc.Decide(consent("c-alice", alice), true, time.Now())
	if err != nil {
		t.Fatalf("alice, listed, consents: %v", err)
	}
	if s := redeemCard(t, w, code); s != "" {
		t.Fatalf("pilot ticket stage %q", s)
	}
	// A service in production is open to everyone again.
	step("app-3", "production")
	code, err = w.svc.Decide(consent("c-bob-2", bob), true, time.Now())
	if err != nil {
		t.Fatalf("bob in production: %v", err)
	}
	// Suspended after the citizen agreed: the hub issues no ticket for it.
	if err := w.apply(&fsm.Suspend{On: fsm.OnService, Target: "bank.card", Reason: "incident", Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	rk, _ := seal.GenerateKey(seal.KEMHybrid)
	if _, err := w.svc.Redeem(context.Background(), sp, hubapi.RedeemRequest{ClientID: "bank.card", Code: code, CodeVerifier: verifier,
		RedirectURI: "https://bank.example/cb", RecipientKEM: seal.KEMHybrid, RecipientKey: rk.PublicKey().Bytes()}, time.Now()); err == nil || !strings.Contains(err.Error(), "suspended") {
		t.Fatalf("redeem for a suspended service: %v", err)
	}
}

// redeemCard redeems a bank.card code as its SP connector and returns its one ticket's stage claim.
func redeemCard(t *testing.T, w *world, code string) string {
	t.Helper()
	rk, _ := seal.GenerateKey(seal.KEMHybrid)
	resp, err := w.svc.Redeem(context.Background(), sp, hubapi.RedeemRequest{ClientID: "bank.card", Code: code, CodeVerifier: verifier,
		RedirectURI: "https://bank.example/cb", RecipientKEM: seal.KEMHybrid, RecipientKey: rk.PublicKey().Bytes()}, time.Now())
	if err != nil || len(resp.Tickets) != 1 {
		t.Fatalf("redeem: %+v %v", resp, err)
	}
	return stageClaim(t, resp.Tickets[0].Ticket)
}

// TestPilotDatasetDownload: a dataset in its pilot is downloaded only by its test subjects; another citizen
// is told it is unavailable, and gets no ticket.
func TestPilotDatasetDownload(t *testing.T) {
	w := newWorld(t)
	admin := fsm.Actor{SPIFFEID: "spiffe://mydata.test/operator/admin", Roles: []string{fsm.RoleFederationAdmin}}
	aliceHash, err := w.svc.cfg.Keys.LookupHash(alice)
	if err != nil {
		t.Fatal(err)
	}
	ds := fsm.Dataset{ID: "moi.vehicles", NameZh: "車籍", NameEn: "Vehicles", DPOrg: "moi", DPConnector: "dp1", MinAAL: 1, ContentType: "application/json", Download: true}
	for i, stage := range []string{"sandbox", "pilot"} {
		var subjects []string
		if stage == "pilot" {
			subjects = []string{aliceHash}
		}
		id := fmt.Sprintf("app-v%d", i)
		for _, cmd := range []fsm.Command{
			&fsm.ApplicationSubmit{Application: fsm.Application{ID: id, Kind: fsm.ApplyDataset, Stage: stage, Dataset: &ds, TestSubjects: subjects}, Actor: admin, Now: time.Now()},
			&fsm.ApplicationDecide{ID: id, Actor: admin, Approve: true, Reason: "ok", Now: time.Now()},
		} {
			if err := w.apply(cmd); err != nil {
				t.Fatal(err)
			}
		}
	}
	browser, _ := seal.GenerateKey(seal.KEMX25519)
	for _, tc := range []struct {
		id, subject string
		tickets     int
	}{{"dl-alice", alice, 1}, {"dl-bob", bob, 0}} {
		resp, err := w.svc.IssueDownload(fsm.Consent{ID: tc.id, Subject: tc.subject, Datasets: []string{"moi.vehicles"}, AAL: 2, LoginMethod: "dev"},
			browser.PublicKey().Bytes(), time.Now())
		if err != nil || len(resp.Tickets) != tc.tickets || len(resp.Unavailable) != 1-tc.tickets {
			t.Fatalf("%s: %+v %v", tc.id, resp, err)
		}
	}
}
