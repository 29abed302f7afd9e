package portal

import (
	"html"
	"net/http"
	"strings"
	"testing"

	"github.com/mydatafed/mydata/hub/internal/fsm"
)

// approve runs the consent page for scope and returns the consent id the service is told of.
func approve(t *testing.T, b *browser, scope string) string {
	t.Helper()
	page := b.get(authorizeURL(scope, nil))
	f := form(page.body, "/oauth/consent")
	if f == nil {
		t.Fatalf("no consent page: %d %s", page.status, page.location)
	}
	f.Set("decision", "approve")
	r := b.post("/oauth/consent", f)
	if r.status != http.StatusFound {
		t.Fatalf("approve: %d %s", r.status, r.body)
	}
	c, err := fsmConsentOf(b.w, alice)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func fsmConsentOf(w *world, subject string) (string, error) {
	h, err := w.portal.cfg.Consent.History(subject, 1)
	if err != nil || len(h) == 0 {
		return "", err
	}
	return h[0].ID, nil
}

func TestHistorySaysWhoGotWhat(t *testing.T) {
	w := newWorld(t, "http://portal.test")
	b := w.browser()
	b.login(alice, "nhi-card", "/history")
	id := approve(t, b, "moi.household")
	if err := w.apply(&fsm.ReceiptAdd{Receipt: fsm.Receipt{TicketID: "t1", Role: "sp", ConsentID: id, Dataset: "moi.household", Reporter: "bank/sp1",
		Counterpart: "moi/dp1", Outcome: "delivered", Bytes: 1234, At: w.now, RecordedAt: w.now}}); err != nil {
		t.Fatal(err)
	}
	b.lang = "en"
	page := b.get("/history")
	for _, want := range []string{"Loan application", "Demo Bank", "Household registration", "held by Ministry of the Interior", "Delivered", "1234 bytes",
		"Online application", id, "UTC+08:00", `href="/consents/` + id + `/revoke"`} {
		if !strings.Contains(html.UnescapeString(page.body), want) {
			t.Errorf("the history lacks %q", want)
		}
	}
	b.lang = "zh-TW"
	page = b.get("/history")
	for _, want := range []string{"貸款申請", "示範銀行", "戶籍資料", "提供機關：內政部", "已送達"} {
		if !strings.Contains(page.body, want) {
			t.Errorf("the Chinese history lacks %q", want)
		}
	}
	// The filter by time: a range before today has nothing.
	if r := b.get("/history?to=2020-01-01"); !strings.Contains(r.body, `id="empty"`) {
		t.Error("the filter kept a consent from today")
	}
	if r := b.get("/history?from=2020-13-01"); r.status != http.StatusBadRequest {
		t.Errorf("a bad date: %d", r.status)
	}
	csv := b.get("/history.csv")
	if !strings.HasPrefix(csv.body, "\ufeff時間,同意編號,") || !strings.Contains(csv.body, id) || !strings.Contains(csv.body, "戶籍資料,內政部,已送達,1234") {
		t.Errorf("CSV: %q", csv.body)
	}
	if ct := csv.header.Get("Content-Type"); ct != "text/csv; charset=utf-8" {
		t.Errorf("CSV content type %q", ct)
	}
}

func TestRevokeAsksFirst(t *testing.T) {
	w := newWorld(t, "http://portal.test")
	b := w.browser()
	b.login(alice, "nhi-card", "/history")
	id := approve(t, b, "moi.household")
	confirm := b.get("/consents/" + id + "/revoke")
	if confirm.status != http.StatusOK || !strings.Contains(confirm.body, `id="confirm-revoke"`) {
		t.Fatalf("confirmation page: %d", confirm.status)
	}
	if c, _ := w.f.Consent(id); c.State != fsm.ConsentGranted {
		t.Fatalf("showing the confirmation changed the consent: %s", c.State)
	}
	f := form(confirm.body, "/consents/"+id+"/revoke")
	// Bob cannot use Alice's form, nor see her confirmation page.
	bobB := w.browser()
	bobB.login(bob, "nhi-card", "/history")
	if r := bobB.post("/consents/"+id+"/revoke", f); r.status != http.StatusForbidden {
		t.Errorf("bob posting alice's form: %d", r.status)
	}
	if r := bobB.get("/consents/" + id + "/revoke"); r.status != http.StatusNotFound {
		t.Errorf("bob's confirmation page for alice's consent: %d", r.status)
	}
	if r := b.post("/consents/"+id+"/revoke", f); r.status != http.StatusSeeOther {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if c, _ := w.f.Consent(id); c.State != fsm.ConsentRevoked {
		t.Errorf("after revoking: %s", c.State)
	}
	if r := b.post("/consents/"+id+"/revoke", f); r.status != http.StatusConflict {
		t.Errorf("revoking twice: %d", r.status)
	}
}

func TestCatalogueShowsHoldersAndNeeds(t *testing.T) {
	w := newWorld(t, "http://portal.test")
	b := w.browser()
	b.lang = "en"
	page := b.get("/catalogue")
	for _, want := range []string{"Household registration", "Ministry of the Interior", "Who lives with you.", "assurance level medium or higher",
		"Citizen digital certificate (MOICA)"} {
		if !strings.Contains(page.body, want) {
			t.Errorf("the catalogue lacks %q", want)
		}
	}
}
