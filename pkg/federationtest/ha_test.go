package federationtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/directory"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/seal"
	"github.com/mydatafed/mydata/pkg/transfer"
)

// TestConnectorHA runs a dataset served by two DP connectors of its agency: tickets name both; the same
// ticket presented to both at once is served by one only (the hub's raft log decides); a killed connector
// is passed over at once by the SP, then marked down in the directory and up again when it returns; a
// connector whose agency system fails gives the ticket back and the other serves it; and the dataset can be
// moved back to one connector.
func TestConnectorHA(t *testing.T) {
	t.Parallel()
	h := StartHub(t, HubOptions{Extra: "directory:\n  down_after: 3s\n"})
	dir := map[string]string{}
	dps := map[string]*Connector{}
	for _, name := range []string{"dp1", "dp2"} {
		entry := FileDataset(t, "moi.household", map[string]string{citizenA: fmt.Sprintf(`{"household":"PAYLOAD-HOUSEHOLD-%s"}`, name)})
		dir[name] = strings.TrimSpace(entry[strings.Index(entry, "dir: ")+5:])
		dps[name] = h.AddConnector("moi", name, ConnectorOptions{Roles: "dp", Extra: DatasetsYAML(entry)})
	}
	sp := h.AddConnector("bank", "sp1", ConnectorOptions{Roles: "sp"})
	// A connection to a killed DP looks alive until the idle timeout: a shorter one keeps the test short.
	cfg, err := os.ReadFile(sp.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sp.ConfigPath, []byte(strings.Replace(string(cfg), "quic:\n", "quic:\n  idle_timeout: 4s\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Connector{dps["dp1"], dps["dp2"], sp} {
		if _, err := c.Enroll(h.Token(c.Org, c.Name)); err != nil {
			t.Fatal(err)
		}
		c.Start()
	}
	const redirect = "http://127.0.0.1:9/callback"
	h.Admin("dataset", "add", "--id", "moi.household", "--name-zh", "戶籍資料", "--name-en", "Household registration", "--dp", "moi/dp1,dp2", "--min-aal", "2")
	h.Admin("service", "add", "--id", "bank.card", "--name-zh", "信用卡申辦", "--name-en", "Credit card application", "--sp", "bank/sp1",
		"--datasets", "moi.household", "--purpose", "Check identity for a credit card", "--terms", "Terms", "--terms-version", "1", "--redirect-uri", redirect)
	if out := h.Admin("dataset", "list"); !strings.Contains(out, "moi/dp1,dp2") {
		t.Fatalf("dataset list does not show both connectors:\n%s", out)
	}
	// Refused, naming what is wrong, and nothing changes.
	for _, tc := range []struct{ dp, want string }{
		{"moi/dp1,dp9", "more_dp_connectors[0]: connector moi/dp9 does not exist"},
		{"moi/dp1,dp1", "named twice"},
		{"bank/sp1", "its connectors must be moi's too"},
	} {
		if out, err := h.AdminErr("dataset", "connectors", "--id", "moi.household", "--dp", tc.dp); err == nil || !strings.Contains(out+err.Error(), tc.want) {
			t.Errorf("dataset connectors --dp %s: %v\n%s", tc.dp, err, out)
		}
	}
	Eventually(t, 10*time.Second, "DP keys published", func() error {
		if out := h.Admin("--json", "connector", "list"); strings.Count(out, `"hpke_key"`) < 3 {
			return fmt.Errorf("not yet")
		}
		return nil
	})

	approve := func() (string, PKCE) {
		c := h.NewCitizen()
		c.Login(citizenA, "nhi-card")
		p := NewPKCE()
		return c.Approve(h.AuthorizeURL("bank.card", redirect, "moi.household", "st", p, nil)), p
	}
	// servedBy runs the exchange of code and says which connector's data came back.
	servedBy := func(code string, p PKCE) string {
		t.Helper()
		res, status, body := sp.Exchange(code, p.Verifier, redirect)
		if status != 200 {
			t.Fatalf("exchange: %d %s", status, body)
		}
		st, reason, content := res.Dataset(t, "moi.household")
		if st != "delivered" {
			t.Fatalf("household: %s (%s)", st, reason)
		}
		for name := range dps {
			if bytes.Contains(content, []byte("PAYLOAD-HOUSEHOLD-"+name)) {
				return name
			}
		}
		t.Fatalf("content from no DP: %q", content)
		return ""
	}
	failovers := func() int { return metricValue(sp.Metrics(), "mydata_connector_sp_failovers_total") }

	if by := servedBy(approve()); by != "dp1" {
		t.Fatalf("served by %s, want dp1 (the first)", by)
	}

	// The same ticket presented to both connectors at once: one serves it, the other is told it is
	// taken; whichever wins, never both.
	for round := range 3 {
		code, p := approve()
		key, _ := seal.GenerateKey(seal.KEMHybrid)
		var resp hubapi.RedeemResponse
		if err := hubClientAs(t, h, sp).Do(context.Background(), http.MethodPost, hubapi.PathRedeem, hubapi.RedeemRequest{
			Code: code, CodeVerifier: p.Verifier, RedirectURI: redirect, RecipientKEM: seal.KEMHybrid, RecipientKey: key.PublicKey().Bytes()}, &resp); err != nil {
			t.Fatal(err)
		}
		tk := resp.Tickets[0]
		if len(tk.Alternates) != 1 || tk.Alternates[0].DP != dps["dp2"].ID() {
			t.Fatalf("the ticket's alternates: %+v", tk.Alternates)
		}
		var wg sync.WaitGroup
		answers := map[string]string{}
		var mu sync.Mutex
		for name, dp := range dps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := present(t, dp, sp, tk.Ticket, tk.TicketID, tk.Dataset, key)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					answers[name] = "error: " + err.Error()
					return
				}
				answers[name] = string(res.Header.Status) + ": " + res.Header.Message
			}()
		}
		wg.Wait()
		ok, taken := 0, 0
		for _, a := range answers {
			switch {
			case a == "ok: ":
				ok++
			case strings.HasPrefix(a, "refused: ") && strings.Contains(a, "another connector serves or served this ticket"):
				taken++
			}
		}
		if ok != 1 || taken != 1 {
			t.Fatalf("round %d: answers %v, want one ok and one taken", round, answers)
		}
		t.Logf("round %d: %v", round, answers)
	}

	// dp1 is killed: the SP passes over it at once, before the hub has noticed.
	code, p := approve()
	dps["dp1"].proc.Kill()
	before := failovers()
	start := time.Now()
	if by := servedBy(code, p); by != "dp2" {
		t.Fatalf("with dp1 killed, served by %s", by)
	}
	// The SP held a QUIC connection to dp1, which looks alive until quic.idle_timeout (4 s here) passes.
	t.Logf("with dp1 killed, the exchange went to dp2 in %s", time.Since(start).Round(time.Millisecond))
	if failovers() != before+1 {
		t.Fatalf("failovers %d → %d, want one more", before, failovers())
	}
	// The directory marks it down within seconds, and the SP then goes to dp2 first.
	took := Eventually(t, 30*time.Second, "dp1 marked down", func() error { return connectorDown(h, "dp1", true) })
	t.Logf("dp1 marked down %s after the check began (down_after 3s)", took.Round(time.Millisecond))
	if out := h.Admin("connector", "list"); !strings.Contains(out, "active (down)") {
		t.Errorf("connector list does not show dp1 down:\n%s", out)
	}
	Eventually(t, 15*time.Second, "the SP's copy of the directory marks dp1 down", func() error { return copyMarksDown(sp, dps["dp1"], true) })
	before = failovers()
	if by := servedBy(approve()); by != "dp2" || failovers() != before {
		t.Fatalf("with dp1 down in the directory: served by %s, failovers %d → %d (want dp2 at once)", by, before, failovers())
	}

	// dp1 comes back and is up again.
	dps["dp1"].Start()
	Eventually(t, 30*time.Second, "dp1 up again", func() error { return connectorDown(h, "dp1", false) })

	// dp1's agency system fails: dp1 gives the ticket back before it answers, and dp2 serves it.
	file := filepath.Join(dir["dp1"], citizenA+".json")
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(file, 0o700); err != nil { // reading it fails: a backend failure, not "no record"
		t.Fatal(err)
	}
	Eventually(t, 15*time.Second, "the SP's copy of the directory marks dp1 up", func() error { return copyMarksDown(sp, dps["dp1"], false) })
	before = failovers()
	if by := servedBy(approve()); by != "dp2" || failovers() != before+1 {
		t.Fatalf("with dp1's agency failing: served by %s, failovers %d → %d", by, before, failovers())
	}
	if out, _ := dps["dp1"].Audit("export"); !strings.Contains(out, "backend failure") {
		t.Errorf("dp1's audit does not record its failure:\n%s", out)
	}

	// Both DPs' receipts are accepted by the hub; the one that served stays.
	Eventually(t, 15*time.Second, "receipts accepted", func() error {
		for _, c := range []*Connector{dps["dp1"], dps["dp2"]} {
			if n := metricValue(c.Metrics(), "mydata_connector_receipts_backlog"); n != 0 {
				return fmt.Errorf("%s has %d receipts pending", c.Name, n)
			}
		}
		return nil
	})

	// dp1 moves, as an operator records it, and back: peers follow through the directory. (A connection
	// an SP holds to it stays in use while it answers there.)
	if out, err := h.AdminErr("connector", "address", "--org", "moi", "--name", "dp1", "--address", "127.0.0.1:notaport"); err == nil || !strings.Contains(out+err.Error(), `the port "notaport" is not a number`) {
		t.Fatalf("a bad address: %v %s", err, out)
	}
	if err := os.RemoveAll(file); err != nil { // dp1's agency works again
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(`{"household":"PAYLOAD-HOUSEHOLD-dp1"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	nowhere := FreeTCP(t)
	h.Admin("connector", "address", "--org", "moi", "--name", "dp1", "--address", nowhere, "--tcp-address", nowhere)
	spHas := func(addr string) {
		t.Helper()
		Eventually(t, 15*time.Second, "the SP's directory has dp1 at "+addr, func() error {
			raw, _ := os.ReadFile(filepath.Join(sp.DataDir(), "directory.json"))
			signed, err := directory.Parse(raw)
			if err != nil {
				return err
			}
			if !bytes.Contains(signed.Payload, []byte(`"address":"`+addr+`"`)) {
				return fmt.Errorf("not yet")
			}
			return nil
		})
	}
	spHas(nowhere)
	h.Admin("connector", "address", "--org", "moi", "--name", "dp1", "--address", dps["dp1"].QUIC, "--tcp-address", dps["dp1"].TCP)
	spHas(dps["dp1"].QUIC)
	if by := servedBy(approve()); by != "dp1" {
		t.Fatalf("with dp1 back at its address: served by %s", by)
	}

	// Back to one connector: tickets name dp2 alone.
	h.Admin("dataset", "connectors", "--id", "moi.household", "--dp", "moi/dp2")
	code, p = approve()
	key, _ := seal.GenerateKey(seal.KEMHybrid)
	var resp hubapi.RedeemResponse
	if err := hubClientAs(t, h, sp).Do(context.Background(), http.MethodPost, hubapi.PathRedeem, hubapi.RedeemRequest{
		Code: code, CodeVerifier: p.Verifier, RedirectURI: redirect, RecipientKEM: seal.KEMHybrid, RecipientKey: key.PublicKey().Bytes()}, &resp); err != nil {
		t.Fatal(err)
	}
	if tk := resp.Tickets[0]; tk.DP != dps["dp2"].ID() || len(tk.Alternates) != 0 {
		t.Fatalf("after moving to dp2 alone: dp %s, alternates %+v", tk.DP, tk.Alternates)
	}
	if res, err := present(t, dps["dp2"], sp, resp.Tickets[0].Ticket, resp.Tickets[0].TicketID, "moi.household", key); err != nil || res.Header.Status != transfer.OK {
		t.Fatalf("a one-connector ticket: %v %+v", err, res)
	}
	// A ticket issued before the move may still be served by dp1, whose receipt must count; the bank's
	// SP connector may not report a DP's side.
	var out hubapi.ReceiptBatchResult
	dpReceipt := hubapi.ReceiptBatch{Receipts: []hubapi.ReceiptRequest{{TicketID: "before-the-move", ConsentID: resp.ConsentID,
		Dataset: "moi.household", Role: hubapi.RoleSender, Outcome: "delivered", At: time.Now()}}}
	if err := hubClientAs(t, h, dps["dp1"]).Do(context.Background(), http.MethodPost, hubapi.PathReceipts, dpReceipt, &out); err != nil || out.Results[0].Status != http.StatusNoContent {
		t.Fatalf("a receipt of dp1, which no longer serves the dataset: %v %+v", err, out.Results)
	}
	if err := hubClientAs(t, h, sp).Do(context.Background(), http.MethodPost, hubapi.PathReceipts, dpReceipt, &out); err != nil || out.Results[0].Status != http.StatusForbidden {
		t.Fatalf("a DP receipt from the SP's connector: %v %+v, want 403", err, out.Results)
	}
	if m := h.Metrics(); !strings.Contains(m, `mydata_hub_ticket_claims_total{result="claimed"}`) || !strings.Contains(m, `mydata_hub_ticket_claims_total{result="taken"}`) {
		t.Errorf("the hub's claim metrics:\n%s", grepLines(m, "ticket_claims"))
	}
}

// connectorDown checks the hub's connector list marks name down (or not).
func connectorDown(h *Hub, name string, want bool) error {
	var cs []hubapi.Connector
	if err := json.Unmarshal([]byte(h.Admin("--json", "connector", "list")), &cs); err != nil {
		return err
	}
	for _, c := range cs {
		if c.Name == name {
			if c.Down != want {
				return fmt.Errorf("%s down = %v", name, c.Down)
			}
			return nil
		}
	}
	return fmt.Errorf("no connector %s", name)
}

// copyMarksDown checks c's copy of the directory marks dp down (or not).
func copyMarksDown(c, dp *Connector, want bool) error {
	raw, err := os.ReadFile(filepath.Join(c.DataDir(), "directory.json"))
	if err != nil {
		return err
	}
	signed, err := directory.Parse(raw)
	if err != nil {
		return err
	}
	var doc directory.Document
	if err := json.Unmarshal(signed.Payload, &doc); err != nil {
		return err
	}
	for _, x := range doc.Connectors {
		if x.Org == dp.Org && x.Name == dp.Name {
			if x.Down != want {
				return fmt.Errorf("version %d: %s down = %v", doc.Version, dp.Name, x.Down)
			}
			return nil
		}
	}
	return fmt.Errorf("no %s in the directory", dp.Name)
}

// metricValue is the value of a metric without labels in a Prometheus text exposition, 0 if absent.
func metricValue(exposition, name string) int {
	var n float64
	for _, line := range strings.Split(exposition, "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			fmt.Sscan(rest, &n)
		}
	}
	return int(n)
}
