package federationtest

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServiceStages takes an online service through approved applications with the real binaries: in its
// sandbox the DP answers from the dataset's synthetic backend only (and refuses where it has none, though
// the real backend holds the citizen); in its pilot a citizen not on the application's list cannot consent,
// and the listed one gets real data.
func TestServiceStages(t *testing.T) {
	t.Parallel()
	h := StartHub(t, HubOptions{})
	redirect := "http://127.0.0.1:9/callback"
	sandboxDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(sandboxDir, citizenA+".json"), []byte(`{"household":"SYNTHETIC-HOUSEHOLD"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	moiYAML := DatasetsYAML(FileDataset(t, "moi.household", map[string]string{citizenA: `{"household":"REAL-HOUSEHOLD-A"}`}) +
		fmt.Sprintf("    sandbox:\n      type: file\n      file:\n        dir: %s\n", sandboxDir))
	moi := h.AddConnector("moi", "dp1", ConnectorOptions{Roles: "dp", Extra: moiYAML})
	fia := h.AddConnector("fia", "dp2", ConnectorOptions{Roles: "dp", Extra: DatasetsYAML(FileDataset(t, "fia.income", map[string]string{citizenA: `{"income":"REAL-INCOME-A"}`}))})
	bank := h.AddConnector("bank", "sp1", ConnectorOptions{Roles: "sp"})
	for _, c := range []*Connector{moi, fia, bank} {
		if _, err := c.Enroll(h.Token(c.Org, c.Name)); err != nil {
			t.Fatal(err)
		}
		c.Start()
	}
	h.Admin("dataset", "add", "--id", "moi.household", "--name-zh", "戶籍資料", "--name-en", "Household registration", "--dp", "moi/dp1", "--min-aal", "2")
	h.Admin("dataset", "add", "--id", "fia.income", "--name-zh", "所得資料", "--name-en", "Income", "--dp", "fia/dp2", "--min-aal", "2")
	Eventually(t, 10*time.Second, "DP keys published", func() error {
		if n := strings.Count(h.Admin("--json", "connector", "list"), `"hpke_key"`); n < 2 {
			return fmt.Errorf("keys so far: %d", n)
		}
		return nil
	})
	svc := []string{"--id", "bank.card", "--name-zh", "信用卡申辦", "--name-en", "Credit card application", "--sp", "bank/sp1",
		"--datasets", "moi.household,fia.income", "--purpose", "Check identity and income", "--terms", "Terms", "--terms-version", "1", "--redirect-uri", redirect}
	apply := func(stage string, extra ...string) {
		t.Helper()
		out := h.Admin(append(append([]string{"application", "submit", "service", "--stage", stage}, extra...), svc...)...)
		m := applicationIDRe.FindStringSubmatch(out)
		if m == nil || !strings.Contains(out, "waiting for federation-admin") {
			t.Fatalf("filed: %s", out)
		}
		h.Admin("application", "decide", "--id", m[1], "--approve", "--reason", "ok")
	}
	exchange := func(subject string) *ExchangeResult {
		t.Helper()
		c := h.NewCitizen()
		c.Login(subject, "nhi-card")
		p := NewPKCE()
		code := c.Approve(h.AuthorizeURL("bank.card", redirect, "moi.household fia.income", "st", p, nil))
		res, status, body := bank.Exchange(code, p.Verifier, redirect)
		if status != http.StatusOK {
			t.Fatalf("exchange: %d %s", status, body)
		}
		return res
	}

	// Sandbox: synthetic data only.
	apply("sandbox")
	res := exchange(citizenA)
	if st, _, content := res.Dataset(t, "moi.household"); st != "delivered" || !strings.Contains(string(content), "SYNTHETIC-HOUSEHOLD") {
		t.Fatalf("sandbox household: %s %s", st, content)
	}
	if st, reason, content := res.Dataset(t, "fia.income"); st == "delivered" || strings.Contains(string(content), "REAL") {
		t.Fatalf("sandbox income without a sandbox backend: %s %s %s", st, reason, content)
	}
	if out, err := fia.Audit("export"); err != nil || !strings.Contains(out, "no sandbox backend") {
		t.Fatalf("the DP's audit of the sandbox refusal: %s %v", out, err)
	}

	// Pilot: only the listed citizen consents; real data.
	apply("pilot", "--test-subject", citizenA)
	c := h.NewCitizen()
	c.Login(citizenB, "nhi-card")
	page := c.GetFollow(h.AuthorizeURL("bank.card", redirect, "moi.household fia.income", "st", NewPKCE(), nil))
	form, err := ConsentForm(page.Body)
	if err != nil {
		t.Fatalf("%v: %d %s", err, page.Status, page.Body)
	}
	form.Set("decision", "approve")
	if r := c.Post("/oauth/consent", form); r.Status != http.StatusForbidden || !strings.Contains(r.Body, "in its pilot") {
		t.Fatalf("a citizen not on the pilot's list consents: %d %s", r.Status, r.Body)
	}
	res = exchange(citizenA)
	if st, _, content := res.Dataset(t, "moi.household"); st != "delivered" || !strings.Contains(string(content), "REAL-HOUSEHOLD-A") {
		t.Fatalf("pilot household: %s %s", st, content)
	}

	// The month's transfers from the receipts: two exchanges of two datasets; the sandbox's income refused.
	month := time.Now().In(time.FixedZone("Asia/Taipei", 8*60*60)).Format("2006-01")
	from := time.Now().AddDate(0, 0, -2).Format(time.DateOnly)
	Eventually(t, 30*time.Second, "receipts reported", func() error {
		out := h.Admin("report", "transfers", "--from", from)
		for _, want := range []string{
			"month,service,dataset,transfers,delivered,no_record,pending,refused,failed,failure_rate",
			month + ",bank.card,fia.income,2,1,0,0,1,0,0.5000",
			month + ",bank.card,moi.household,2,2,0,0,0,0,0.0000",
		} {
			if !strings.Contains(out, want) {
				return fmt.Errorf("no %q in\n%s", want, out)
			}
		}
		return nil
	})
	if out := h.Admin("report", "review", "--org", "bank", "--year", month[:4], "--format", "json"); strings.Count(out, `"subject_hash"`) != 4 || strings.Contains(out, citizenA) {
		t.Fatalf("review material: %s", out)
	}
}
