package federationtest

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/seal"
)

// TestCounterHub is the hub's side of counter verification with the real binaries: a citizen agrees on the
// portal to a counter service and gets a code; the service's SP connector redeems it at the hub for
// tickets, once; another SP's connector is refused; the history shows where it was redeemed.
func TestCounterHub(t *testing.T) {
	t.Parallel()
	f := startOnline(t)
	f.h.Admin("service", "add", "--id", "bank.counter", "--name-zh", "臨櫃開戶", "--name-en", "Account opening at the counter", "--sp", "bank/sp1",
		"--modes", "counter", "--datasets", "moi.household", "--purpose", "Check the household at the counter", "--terms", "Counter terms",
		"--terms-version", "1")

	c := f.h.NewCitizen()
	c.Login(citizenA, "nhi-card")
	if list := c.Get("/counter"); list.Status != http.StatusOK || !strings.Contains(list.Body, `href="/counter/bank.counter"`) || strings.Contains(list.Body, "bank.card") {
		t.Fatalf("counter services: %d\n%s", list.Status, list.Body)
	}
	page := c.Get("/counter/bank.counter")
	for _, want := range []string{"Account opening at the counter", "Check the household at the counter", "Counter terms", "Household registration", `name="agent_id"`} {
		if !strings.Contains(page.Body, want) {
			t.Errorf("counter page lacks %q", want)
		}
	}
	form, err := FormFields(page.Body, "/counter/bank.counter")
	if err != nil {
		t.Fatal(err)
	}
	form.Set("agent_id", "B123456780")
	form.Set("agent_name", "Agent Wang")
	got := c.Post("/counter/bank.counter", form)
	m := regexp.MustCompile(`id="code"[^>]*>([A-Z0-9]{4}) ([A-Z0-9]{4})<`).FindStringSubmatch(got.Body)
	if got.Status != http.StatusOK || m == nil || !strings.Contains(got.Body, `src="data:image/svg`) {
		t.Fatalf("code page: %d\n%s", got.Status, got.Body)
	}
	code := m[1] + "-" + m[2] // as staff might type it

	redeem := func(as *Connector) (*hubapi.CounterRedeemResponse, error) {
		key, _ := seal.GenerateKey(seal.KEMHybrid)
		var resp hubapi.CounterRedeemResponse
		err := hubClientAs(t, f.h, as).Do(context.Background(), http.MethodPost, hubapi.PathCounterRedeem, hubapi.CounterRedeemRequest{
			Code: code, Terminal: "desk-1", RecipientKEM: seal.KEMHybrid, RecipientKey: key.PublicKey().Bytes()}, &resp)
		return &resp, err
	}
	var he *hubapi.Error
	if _, err := redeem(f.fia); !errors.As(err, &he) || he.Status != http.StatusForbidden || he.Message != hubapi.CounterWrongClient {
		t.Fatalf("another connector redeemed the bank's counter code: %v", err)
	}
	resp, err := redeem(f.bank)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Service != "bank.counter" || resp.Subject != citizenA || len(resp.Tickets) != 1 || resp.Tickets[0].Dataset != "moi.household" ||
		resp.Agent == nil || resp.Agent.NationalID != "B123456780" || resp.Agent.Name != "Agent Wang" {
		t.Fatalf("redemption: %+v", resp)
	}
	if _, err := redeem(f.bank); !errors.As(err, &he) || he.Status != http.StatusConflict || he.Message != hubapi.CounterUsed {
		t.Fatalf("second redemption: %v", err)
	}
	// Wrong codes lock the terminal after five, and the answer says for how long.
	for i := 1; i <= 5; i++ {
		key, _ := seal.GenerateKey(seal.KEMHybrid)
		err := hubClientAs(t, f.h, f.bank).Do(context.Background(), http.MethodPost, hubapi.PathCounterRedeem, hubapi.CounterRedeemRequest{
			Code: "ZZZZ-2222", Terminal: "desk-9", RecipientKEM: seal.KEMHybrid, RecipientKey: key.PublicKey().Bytes()}, nil)
		want := http.StatusNotFound
		if i == 5 {
			want = http.StatusTooManyRequests
		}
		if !errors.As(err, &he) || he.Status != want || (i == 5 && (he.Message != hubapi.CounterLocked || he.RetryAfter < 14*time.Minute)) {
			t.Fatalf("wrong code %d: %v (retry after %s)", i, err, he.RetryAfter)
		}
	}
	hist := c.Get("/history")
	for _, want := range []string{"Counter verification", "Redeemed at the counter", "at the counter of Test agency bank (desk-1)"} {
		if !strings.Contains(hist.Body, want) {
			t.Errorf("history lacks %q", want)
		}
	}
}
