package fsm

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConsentLifecycle(t *testing.T) {
	a := &applier{t: t, f: open(t, filepath.Join(t.TempDir(), "state.db"))}
	now := time.Now().UTC().Truncate(time.Millisecond)
	mk := func(id string) *ConsentCreate {
		return &ConsentCreate{Consent: Consent{ID: id, Service: "bank.card", Subject: "A123456789", Datasets: []string{"moi.household"},
			TermsVersion: "1", AAL: 2, LoginMethod: "dev", RedirectURI: "https://b/cb", CodeChallenge: "x", CreatedAt: now, ExpiresAt: now.Add(10 * time.Minute)}}
	}
	grant := func(id string, at time.Time) *ConsentDecide {
		return &ConsentDecide{ID: id, Subject: "A123456789", Approve: true, CodeHash: "h-" + id, CodeExpiresAt: at.Add(time.Minute), Now: at}
	}
	steps := []struct {
		name string
		cmd  Command
		want Code
		msg  string
	}{
		{"create", mk("c1"), OK, ""},
		{"decided by another citizen", &ConsentDecide{ID: "c1", Subject: "B1", Approve: true, CodeHash: "h", CodeExpiresAt: now.Add(time.Minute), Now: now}, Forbidden, "another citizen"},
		{"grant", grant("c1", now), OK, ""},
		{"grant again", grant("c1", now), Conflict, "granted, not pending"},
		{"use", &ConsentUse{ID: "c1", Now: now.Add(time.Second)}, OK, ""},
		{"use again", &ConsentUse{ID: "c1", Now: now.Add(2 * time.Second)}, Gone, "used"},
		{"revoke used", &ConsentRevoke{ID: "c1", Subject: "A123456789", Now: now}, Conflict, "no longer"},
		{"create 2", mk("c2"), OK, ""},
		{"deny", &ConsentDecide{ID: "c2", Subject: "A123456789", Approve: false, Now: now}, OK, ""},
		{"use denied", &ConsentUse{ID: "c2", Now: now}, Gone, "denied"},
		{"create 3", mk("c3"), OK, ""},
		{"grant 3", grant("c3", now), OK, ""},
		{"use after code expiry", &ConsentUse{ID: "c3", Now: now.Add(61 * time.Second)}, Gone, "expired"},
		{"create 4", mk("c4"), OK, ""},
		{"decide after expiry", grant("c4", now.Add(11*time.Minute)), Conflict, "expired"},
		{"create 5", mk("c5"), OK, ""},
		{"grant 5", grant("c5", now), OK, ""},
		{"revoke 5", &ConsentRevoke{ID: "c5", Subject: "A123456789", Now: now}, OK, ""},
		{"use revoked", &ConsentUse{ID: "c5", Now: now}, Gone, "revoked"},
		{"receipt", &ReceiptAdd{Receipt: Receipt{TicketID: "t1", Role: "dp", ConsentID: "c1", Dataset: "moi.household", Outcome: "delivered", Bytes: 10, At: now}}, OK, ""},
		{"receipt retried", &ReceiptAdd{Receipt: Receipt{TicketID: "t1", Role: "dp", ConsentID: "c1", Dataset: "moi.household", Outcome: "delivered", Bytes: 10, At: now}}, OK, ""},
		{"late pending after delivered", &ReceiptAdd{Receipt: Receipt{TicketID: "t1", Role: "dp", ConsentID: "c1", Dataset: "moi.household", Outcome: "pending", At: now.Add(-time.Second)}}, OK, ""},
		// Another of the dataset's connectors failed before this one served, by a clock ahead of its.
		{"a failure after the delivery", &ReceiptAdd{Receipt: Receipt{TicketID: "t1", Role: "dp", ConsentID: "c1", Dataset: "moi.household", Reporter: "moi/dp2", Outcome: "failed", At: now.Add(20 * time.Second)}}, OK, ""},
		{"receipt of nothing", &ReceiptAdd{Receipt: Receipt{TicketID: "t2", Role: "sp", ConsentID: "nope", Dataset: "d", Outcome: "delivered"}}, NotFound, "nope"},
	}
	for _, s := range steps {
		r := a.apply(s.cmd)
		if r.Code != s.want || !strings.Contains(r.Message, s.msg) {
			t.Fatalf("%s: got %+v, want code %d with %q", s.name, r, s.want, s.msg)
		}
	}
	if k, _ := a.f.ConsentByCode("h-c1"); k == nil || k.State != ConsentUsed || k.UsedAt.IsZero() {
		t.Fatalf("consent by code: %+v", k)
	}
	if rs, _ := a.f.Receipts("c1"); len(rs) != 1 || rs[0].Outcome != "delivered" {
		t.Fatalf("receipts %+v", rs)
	}
	if cs, _ := a.f.ConsentsOf([]string{"A123456789"}, 10); len(cs) != 5 {
		t.Fatalf("history has %d consents", len(cs))
	}
}

// TestConsentRecord covers the one-entry decision the portal writes: the request comes from the signed
// consent page, so the state machine sees a consent only once it is decided.
func TestConsentRecord(t *testing.T) {
	a := &applier{t: t, f: open(t, filepath.Join(t.TempDir(), "state.db"))}
	now := time.Now().UTC().Truncate(time.Millisecond)
	req := func(id string) Consent {
		return Consent{ID: id, Service: "bank.card", Subject: "A123456789", Datasets: []string{"moi.household", "fia.income"},
			TermsVersion: "1", AAL: 2, LoginMethod: "dev", RedirectURI: "https://b/cb", CodeChallenge: "x", CreatedAt: now, ExpiresAt: now.Add(10 * time.Minute)}
	}
	approve := func(id string, at time.Time) *ConsentRecord {
		return &ConsentRecord{Consent: req(id), Approve: true, CodeHash: "h-" + id, CodeExpiresAt: at.Add(time.Minute), Now: at}
	}
	deny := func(id string) *ConsentRecord { return &ConsentRecord{Consent: req(id), Now: now} }
	noService := approve("c9", now)
	noService.Consent.Service = ""
	steps := []struct {
		name string
		cmd  Command
		want Code
		msg  string
	}{
		{"approve", approve("c1", now), OK, ""},
		{"approve the same page again", approve("c1", now), Conflict, "already decided (granted)"},
		{"deny after approving", deny("c1"), Conflict, "already decided"},
		{"use", &ConsentUse{ID: "c1", Now: now.Add(time.Second)}, OK, ""},
		{"use again", &ConsentUse{ID: "c1", Now: now.Add(2 * time.Second)}, Gone, "used"},
		{"deny", deny("c2"), OK, ""},
		{"deny another", deny("c3"), OK, ""}, // two denials: neither holds a code
		{"use denied", &ConsentUse{ID: "c2", Now: now}, Gone, "denied"},
		{"decide after the request expired", approve("c4", now.Add(10*time.Minute)), Gone, "expired"},
		{"approve without a code", &ConsentRecord{Consent: req("c5"), Approve: true, Now: now}, Invalid, "needs a code"},
		{"missing field", noService, Invalid, "required"},
		{"approve 6", approve("c6", now), OK, ""},
		{"revoke 6", &ConsentRevoke{ID: "c6", Subject: "A123456789", Now: now}, OK, ""},
		{"use revoked", &ConsentUse{ID: "c6", Now: now}, Gone, "revoked"},
	}
	for _, s := range steps {
		r := a.apply(s.cmd)
		if r.Code != s.want || !strings.Contains(r.Message, s.msg) {
			t.Fatalf("%s: got %+v, want code %d with %q", s.name, r, s.want, s.msg)
		}
	}
	k, _ := a.f.ConsentByCode("h-c1")
	if k == nil || k.State != ConsentUsed || k.DecidedAt.IsZero() || len(k.Datasets) != 2 || k.AAL != 2 {
		t.Fatalf("consent by code: %+v", k)
	}
	cs, _ := a.f.ConsentsOf([]string{"A123456789"}, 10)
	if len(cs) != 4 { // c1, c2, c3, c6: refused decisions left nothing
		t.Fatalf("history has %d consents: %+v", len(cs), cs)
	}
}
