package federationtest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/hubapi"
)

// TestReceiptsSurviveAHubOutage lets transfers finish while the hub is down: both connectors keep their
// receipts and deliver them once the hub is back, so the citizen's history misses nothing.
func TestReceiptsSurviveAHubOutage(t *testing.T) {
	t.Parallel()
	f := startOnline(t)
	citizen := f.h.NewCitizen()
	citizen.Login(citizenA, "nhi-card")
	p := NewPKCE()
	code := citizen.Approve(f.h.AuthorizeURL("bank.card", f.redirect, "fia.income", "r", p, nil))

	// The agency answers after 2 s; the hub goes down in between.
	retry := filepath.Join(f.fiaDir, citizenA+".json.retry")
	os.WriteFile(retry, []byte("2"), 0o644)
	res, status, body := f.bank.Exchange(code, p.Verifier, f.redirect)
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	f.h.Stop()
	os.Remove(retry)
	Eventually(t, 15*time.Second, "delivered while the hub is down", func() error {
		if st, reason, _ := f.bank.GetExchange(res.ID).Dataset(t, "fia.income"); st != "delivered" {
			return fmt.Errorf("income %s: %s", st, reason)
		}
		return nil
	})
	backlog := regexp.MustCompile(`mydata_connector_receipts_backlog ([1-9])`)
	for _, c := range []*Connector{f.fia, f.bank} {
		if !backlog.MatchString(c.Metrics()) {
			t.Fatalf("%s holds no receipt while the hub is down", c.Name)
		}
	}
	f.h.Start()
	Eventually(t, 30*time.Second, "receipts delivered after the outage", func() error {
		h := citizen.Get("/history").Body
		// The pending answer and the delivery are reported by both sides: the delivered pair is what counts.
		if strings.Count(h, `data-receipt-outcome="delivered"`) < 2 {
			return fmt.Errorf("history so far:\n%s", h)
		}
		return nil
	})
	for _, c := range []*Connector{f.fia, f.bank} {
		Eventually(t, 10*time.Second, c.Name+" empties its outbox", func() error {
			if m := c.Metrics(); !strings.Contains(m, "mydata_connector_receipts_backlog 0") {
				return fmt.Errorf("%s still holds receipts", c.Name)
			}
			return nil
		})
	}
}

// TestReceiptBatchRefusals posts receipt batches to the hub as connectors do: each receipt is answered on
// its own, only the parties of a transfer may report it, and a malformed batch changes nothing.
func TestReceiptBatchRefusals(t *testing.T) {
	t.Parallel()
	f := startOnline(t)
	citizen := f.h.NewCitizen()
	citizen.Login(citizenA, "nhi-card")
	p := NewPKCE()
	code := citizen.Approve(f.h.AuthorizeURL("bank.card", f.redirect, "moi.household", "r", p, nil))
	res, status, body := f.bank.Exchange(code, p.Verifier, f.redirect)
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	ctx := context.Background()
	receipt := func(ticket, consent, dataset, role, outcome string) hubapi.ReceiptRequest {
		return hubapi.ReceiptRequest{TicketID: ticket, ConsentID: consent, Dataset: dataset, Role: role, Outcome: outcome, At: time.Now()}
	}
	bank := hubClientAs(t, f.h, f.bank)
	var out hubapi.ReceiptBatchResult
	err := bank.Do(ctx, http.MethodPost, hubapi.PathReceipts, hubapi.ReceiptBatch{Receipts: []hubapi.ReceiptRequest{
		receipt("extra-sp", res.ConsentID, "moi.household", "sp", "failed"),       // the SP of the consent: recorded
		receipt("forged-dp", res.ConsentID, "moi.household", "dp", "delivered"),   // the bank is not the DP
		receipt("odd", res.ConsentID, "moi.household", "sp", "lost"),              // no such outcome
		receipt("nowhere", "no-such-consent", "moi.household", "sp", "delivered"), // no such consent
		receipt("other-set", res.ConsentID, "fia.income", "sp", "delivered"),      // not a dataset of this consent
	}}, &out)
	if err != nil {
		t.Fatal(err)
	}
	want := []int{204, 403, 400, 404, 404}
	if len(out.Results) != len(want) {
		t.Fatalf("results %+v, want %d", out.Results, len(want))
	}
	for i, w := range want {
		if out.Results[i].Status != w || (w != 204 && out.Results[i].Error == "") {
			t.Errorf("receipt %d: %+v, want status %d with a reason when refused", i, out.Results[i], w)
		}
	}
	if !strings.Contains(out.Results[1].Error, "only moi/dp1 reports as dp") {
		t.Errorf("forged DP receipt: %q does not say who may report", out.Results[1].Error)
	}
	// The moi DP may report its side; the bank's refused receipt left no trace.
	if err := hubClientAs(t, f.h, f.moi).Do(ctx, http.MethodPost, hubapi.PathReceipts, hubapi.ReceiptBatch{Receipts: []hubapi.ReceiptRequest{
		receipt("extra-dp", res.ConsentID, "moi.household", "dp", "delivered")}}, &out); err != nil || out.Results[0].Status != 204 {
		t.Fatalf("DP receipt: %v %+v", err, out.Results)
	}
	for _, tc := range []struct {
		name string
		n    int
	}{{"empty batch", 0}, {"batch over the limit", hubapi.MaxReceiptBatch + 1}} {
		batch := hubapi.ReceiptBatch{Receipts: make([]hubapi.ReceiptRequest, tc.n)}
		for i := range batch.Receipts {
			batch.Receipts[i] = receipt(fmt.Sprintf("over-%d", i), res.ConsentID, "moi.household", "sp", "delivered")
		}
		var e *hubapi.Error
		if err := bank.Do(ctx, http.MethodPost, hubapi.PathReceipts, batch, nil); !errors.As(err, &e) || e.Status != 400 || !strings.Contains(e.Message, "between 1 and 100") {
			t.Errorf("%s: %v, want 400 saying the limits", tc.name, err)
		}
	}
	history := citizen.Get("/history").Body
	for _, ticket := range []string{"forged-dp", "odd", "nowhere", "other-set", "over-0"} {
		if strings.Contains(history, ticket) {
			t.Errorf("history shows refused receipt %s", ticket)
		}
	}
	if strings.Count(history, `data-receipt-outcome="failed"`) != 1 {
		t.Errorf("history should show the one extra SP receipt the bank reported (failed):\n%s", history)
	}
}
