package fsm

import (
	"path/filepath"
	"testing"
	"time"
)

// TestReportsOfAScriptedMonth: November 2026's receipts, one transfer on each side of the month's end in
// Taipei, counted by month, service and dataset; the bank's yearly review material lists each transfer
// with the subject's keyed hash.
func TestReportsOfAScriptedMonth(t *testing.T) {
	a := &applier{t: t, f: open(t, filepath.Join(t.TempDir(), "state.db"))}
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, cmd := range []Command{
		&OrgAdd{Code: "moi", NameZh: "內政部", NameEn: "MOI", Type: "central-agency", Now: now},
		&OrgAdd{Code: "bank", NameZh: "銀行", NameEn: "Bank", Type: "financial-institution", Now: now},
		&ConnectorAdd{Org: "moi", Name: "dp1", Roles: []string{"dp"}, Address: "a:1", Now: now},
		&ConnectorAdd{Org: "bank", Name: "sp1", Roles: []string{"sp"}, Address: "a:2", Now: now},
		&DatasetAdd{Dataset: Dataset{ID: "moi.household", NameZh: "戶籍", NameEn: "Household", DPOrg: "moi", DPConnector: "dp1", MinAAL: 2, ContentType: "application/json"}, Now: now},
		&DatasetAdd{Dataset: Dataset{ID: "moi.income", NameZh: "所得", NameEn: "Income", DPOrg: "moi", DPConnector: "dp1", MinAAL: 2, ContentType: "application/json"}, Now: now},
		&ServiceAdd{Service: Service{ID: "bank.card", NameZh: "卡", NameEn: "Card", SPOrg: "bank", SPConnector: "sp1", Modes: []string{"online"},
			Datasets: []string{"moi.household", "moi.income"}, Purpose: "p", Terms: "t", TermsVersion: "1", RedirectURIs: []string{"https://b.example/cb"}}, Now: now},
	} {
		if r := a.apply(cmd); r.Code != OK {
			t.Fatal(r)
		}
	}
	for _, id := range []string{"c1", "c2", "c3"} {
		c := Consent{ID: id, Service: "bank.card", Subject: "k1:hash-" + id, Datasets: []string{"moi.household", "moi.income"}, TermsVersion: "1", AAL: 2,
			LoginMethod: "dev", RedirectURI: "https://b.example/cb", CodeChallenge: "x", CreatedAt: now, ExpiresAt: now.Add(10 * time.Minute)}
		if r := a.apply(&ConsentRecord{Consent: c, Approve: true, CodeHash: "h-" + id, CodeExpiresAt: now.Add(time.Minute), Now: now}); r.Code != OK {
			t.Fatal(r)
		}
	}
	nov3 := time.Date(2026, 11, 3, 2, 0, 0, 0, time.UTC)
	receipt := func(ticket, role, consent, dataset, outcome string, at time.Time) Receipt {
		return Receipt{TicketID: ticket, Role: role, ConsentID: consent, Dataset: dataset, Reporter: "spiffe://t/x", Counterpart: "spiffe://t/y", Outcome: outcome, At: at, RecordedAt: at}
	}
	a.apply(&ReceiptsAdd{Receipts: []Receipt{
		receipt("t1", "dp", "c1", "moi.household", "delivered", nov3),
		receipt("t1", "sp", "c1", "moi.household", "delivered", nov3.Add(time.Second)),
		receipt("t2", "dp", "c1", "moi.income", "failed", nov3),
		receipt("t3", "sp", "c2", "moi.household", "refused", time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)),
		// 23:30 and 00:30 in Taipei on either side of 1 December.
		receipt("t4", "dp", "c3", "moi.household", "delivered", time.Date(2026, 11, 30, 15, 30, 0, 0, time.UTC)),
		receipt("t5", "dp", "c3", "moi.income", "delivered", time.Date(2026, 11, 30, 16, 30, 0, 0, time.UTC)),
		// Another year: in neither report.
		receipt("t6", "dp", "c3", "moi.income", "delivered", time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC)),
	}})
	rows, err := a.f.TransferReport(time.Date(2026, 1, 1, 0, 0, 0, 0, Taipei), time.Date(2027, 1, 1, 0, 0, 0, 0, Taipei))
	if err != nil {
		t.Fatal(err)
	}
	want := []TransferRow{
		{Month: "2026-11", Service: "bank.card", Dataset: "moi.household", Transfers: 3, Delivered: 2, Refused: 1, FailureRate: 1.0 / 3},
		{Month: "2026-11", Service: "bank.card", Dataset: "moi.income", Transfers: 1, Failed: 1, FailureRate: 1},
		{Month: "2026-12", Service: "bank.card", Dataset: "moi.income", Transfers: 1, Delivered: 1},
	}
	if len(rows) != len(want) {
		t.Fatalf("rows %+v", rows)
	}
	for i := range want {
		if rows[i] != want[i] {
			t.Errorf("row %d: %+v, want %+v", i, rows[i], want[i])
		}
	}
	review, err := a.f.ReviewReport("bank", 2026)
	if err != nil || len(review) != 5 {
		t.Fatalf("review %+v %v", review, err)
	}
	if r := review[0]; r.Ticket != "t1" && r.Ticket != "t2" || r.Subject != "k1:hash-c1" || r.Service != "bank.card" {
		t.Fatalf("review row %+v", r)
	}
	if other, _ := a.f.ReviewReport("moi", 2026); len(other) != 0 {
		t.Fatalf("a DP's review material: %+v", other)
	}
}
