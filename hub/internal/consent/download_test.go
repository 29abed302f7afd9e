package consent

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/seal"
	"github.com/mydatafed/mydata/pkg/ticket"
)

func TestIssueDownload(t *testing.T) {
	w := newWorld(t)
	browser, _ := seal.GenerateKey(seal.KEMX25519)
	key := browser.PublicKey().Bytes()
	now := time.Now()
	c := fsm.Consent{ID: "dl-1", Subject: alice, Datasets: []string{"moi.household"}, AAL: 2, LoginMethod: "dev"}
	resp, err := w.svc.IssueDownload(c, key, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Tickets) != 1 || len(resp.Unavailable) != 0 {
		t.Fatalf("response: %+v", resp)
	}
	// The ticket names the hub as redeemer and the browser's key as recipient, and says it is a download's.
	parts := strings.Split(resp.Tickets[0].Ticket, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims ticket.Claims
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	if claims.Mode != ticket.ModeDownload || claims.Redeemer != "spiffe://mydata.test/hub/hub-1" || claims.RecipientKEM != seal.KEMX25519 ||
		string(claims.RecipientKey) != string(key) || claims.ConsentID != "dl-1" {
		t.Fatalf("claims: %+v", claims)
	}
	k, _ := w.f.Consent("dl-1")
	if k == nil || k.State != fsm.ConsentUsed || k.Mode != hubapi.ModeDownload || k.Subject == alice || len(k.SubjectSealed) != 0 {
		t.Fatalf("recorded: %+v", k)
	}
	if h, _ := w.svc.History(alice, 10); len(h) != 1 || h[0].ID != "dl-1" {
		t.Fatalf("history: %+v", h)
	}
	// Single use: the same download is not made twice; nothing changes.
	var fe *fsm.Error
	if _, err := w.svc.IssueDownload(c, key, now); !errors.As(err, &fe) || fe.Code != fsm.Conflict {
		t.Fatalf("second: %v", err)
	}
	// A key that is not X25519 is refused before anything is recorded.
	hybrid, _ := seal.GenerateKey(seal.KEMHybrid)
	var de *DownloadError
	c.ID = "dl-2"
	if _, err := w.svc.IssueDownload(c, hybrid.PublicKey().Bytes(), now); !errors.As(err, &de) || de.Status != 400 {
		t.Fatalf("hybrid key: %v", err)
	}
	if k, _ := w.f.Consent("dl-2"); k != nil {
		t.Fatalf("a refused download was recorded: %+v", k)
	}
}
