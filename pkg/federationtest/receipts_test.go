package federationtest

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestReceiptsSurviveAHubOutage lets transfers finish while the hub is down: both connectors keep their
// receipts and deliver them once the hub is back, so the citizen's history misses nothing.
func TestReceiptsSurviveAHubOutage(t *testing.T) {
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
		if strings.Count(h, "<td>delivered</td>") < 2 {
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
