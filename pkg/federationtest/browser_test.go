package federationtest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The demo's synthetic citizens used here (packaging/demo/data).
const (
	noPropertyCitizen = "B220713459" // 陳怡君: household and income, no property
	scooterCitizen    = "F132604985" // 林志豪: owns a scooter; the test makes his income "not ready" for a moment
)

var (
	demoToolsOnce sync.Once
	demoToolsErr  error
)

// demoTools builds the sample bank and the demo's database builder once per test process, beside the
// binaries Binaries builds, so that RemoveBinaries removes them too.
func demoTools(t *testing.T) (samplebank, mkdb string) {
	t.Helper()
	hub, _ := Binaries(t)
	dir := filepath.Dir(hub)
	demoToolsOnce.Do(func() {
		args := []string{"build", "-o", dir + "/"}
		if raceBuild {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./packaging/demo/samplebank", "./packaging/demo/data/mkdb")...)
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			demoToolsErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if demoToolsErr != nil {
		t.Fatal(demoToolsErr)
	}
	return filepath.Join(dir, "samplebank"), filepath.Join(dir, "mkdb")
}

func repoRoot(t testing.TB) string {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// demoAgencies copies the demo's sample data into a temporary directory, as the demo script does, so the
// test can play a slow agency without touching the repository, and builds the property database.
func demoAgencies(t *testing.T, mkdb string) (moiHousehold, fiaIncome, fiaPropertyDB string) {
	t.Helper()
	src := filepath.Join(repoRoot(t), "packaging", "demo", "data")
	dst := t.TempDir()
	for _, dir := range []string{"moi/household", "fia/income"} {
		files, err := filepath.Glob(filepath.Join(src, dir, "*.json"))
		if err != nil || len(files) != 5 {
			t.Fatalf("sample data in %s: %d files, %v", dir, len(files), err)
		}
		if err := os.MkdirAll(filepath.Join(dst, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dst, dir, filepath.Base(f)), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	db := filepath.Join(dst, "fia", "property.db")
	if _, err := Run(mkdb, "--sql", filepath.Join(src, "fia", "property.sql"), "--out", db); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dst, "moi", "household"), filepath.Join(dst, "fia", "income"), db
}

// propertyQuery is the fia-dp's sql backend query, as in packaging/demo/run.sh.
const propertyQuery = "SELECT kind, item, location, area_m2, share, assessed_value FROM property WHERE national_id = ? ORDER BY seq"

// demoFederation starts what `make demo` runs: a hub with the development login, the two agencies with
// the sample data, the bank's connector and the sample bank application. It returns the bank's URL.
func demoFederation(t *testing.T) (bankURL, incomeDir string) {
	t.Helper()
	samplebank, mkdb := demoTools(t)
	household, income, propertyDB := demoAgencies(t, mkdb)

	h := StartHub(t, HubOptions{})
	h.Admin("org", "add", "--code", "moi", "--name-zh", "內政部", "--name-en", "Ministry of the Interior", "--type", "central-agency")
	h.Admin("org", "add", "--code", "fia", "--name-zh", "財政部財政資訊中心", "--name-en", "Fiscal Information Agency", "--type", "central-agency")
	h.Admin("org", "add", "--code", "demobank", "--name-zh", "示範銀行", "--name-en", "Demo Bank", "--type", "financial-institution")
	file := func(id, dir string) string {
		return fmt.Sprintf("  %s:\n    backend:\n      type: file\n      file:\n        dir: %s\n", id, dir)
	}
	moi := h.AddConnector("moi", "moi-dp", ConnectorOptions{Roles: "dp", Extra: DatasetsYAML(file("moi.household", household))})
	fia := h.AddConnector("fia", "fia-dp", ConnectorOptions{Roles: "dp", Extra: DatasetsYAML(file("fia.income", income),
		fmt.Sprintf("  fia.property:\n    backend:\n      type: sql\n      sql:\n        driver: sqlite3\n        dsn: file:%s?mode=ro\n        query: %q\n", propertyDB, propertyQuery))})
	bank := h.AddConnector("demobank", "bank-sp", ConnectorOptions{Roles: "sp"})
	for _, c := range []*Connector{moi, fia, bank} {
		if _, err := c.Enroll(h.Token(c.Org, c.Name)); err != nil {
			t.Fatal(err)
		}
		c.Start()
	}
	h.Admin("dataset", "add", "--id", "moi.household", "--name-zh", "戶籍資料", "--name-en", "Household registration", "--dp", "moi/moi-dp", "--min-aal", "2")
	h.Admin("dataset", "add", "--id", "fia.income", "--name-zh", "個人所得資料", "--name-en", "Income", "--dp", "fia/fia-dp", "--min-aal", "2", "--async")
	h.Admin("dataset", "add", "--id", "fia.property", "--name-zh", "個人財產資料", "--name-en", "Property", "--dp", "fia/fia-dp", "--min-aal", "2")

	bankAddr := FreeTCP(t)
	bankURL = "http://" + bankAddr
	h.Admin("service", "add", "--id", "demobank.card", "--name-zh", "示範銀行線上信用卡申辦", "--name-en", "Demo Bank online credit-card application",
		"--sp", "demobank/bank-sp", "--datasets", "moi.household,fia.income,fia.property",
		"--purpose", "Check the applicant's identity, household, income and property for a credit-card application. 信用卡申辦之身分、戶籍、所得及財產審核。",
		"--terms", "Demo Bank uses the data only to assess this application and keeps it as banking law requires.", "--terms-version", "1",
		"--redirect-uri", bankURL+"/callback")
	Eventually(t, 10*time.Second, "connector keys published", func() error {
		if n := strings.Count(h.Admin("--json", "connector", "list"), `"hpke_key"`); n < 3 {
			return fmt.Errorf("%d keys so far", n)
		}
		return nil
	})

	bankLog := filepath.Join(t.TempDir(), "samplebank.log")
	start(t, "samplebank", bankLog, samplebank, "--listen", bankAddr, "--hub-portal", h.PortalURL(),
		"--connector-api", "http://"+bank.API, "--client-id", "demobank.card", "--redirect-uri", bankURL+"/callback")
	WaitHTTP(t, bankURL+"/healthz", 15*time.Second)
	t.Cleanup(func() {
		log, _ := os.ReadFile(bankLog)
		for _, id := range []string{noPropertyCitizen, scooterCitizen} {
			if strings.Contains(string(log), id) {
				t.Errorf("the sample bank logged national ID %s", id)
			}
		}
	})
	return bankURL, income
}

// screenshots is where the test saves its pictures: $MYDATA_SCREENSHOTS if set (to keep them), else a
// temporary directory.
func screenshots(t *testing.T) func(tab *Tab, name string) {
	dir := os.Getenv("MYDATA_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return func(tab *Tab, name string) {
		t.Helper()
		p := filepath.Join(dir, name+".png")
		tab.Screenshot(p)
		t.Logf("screenshot: %s", p)
	}
}

func readSample(t *testing.T, path ...string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{repoRoot(t), "packaging", "demo", "data"}, path...)...))
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestBrowserOnlineApplication is the online service mode as a person does it, in a real Chromium: the
// bank's form, the hub's login and consent pages, and the bank's page with the data the agencies sent.
func TestBrowserOnlineApplication(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat(ChromiumPath); err != nil {
		t.Skip("chromium not installed: apt-get install chromium")
	}
	began := time.Now()
	bankURL, incomeDir := demoFederation(t)
	browser := StartBrowser(t)
	shot := screenshots(t)
	t.Logf("federation, bank and browser up in %s", time.Since(began).Round(time.Millisecond))

	// Chen Yi-chun applies: household and income are delivered, and she owns no property.
	tab := browser.NewTab()
	tab.Navigate(bankURL + "/")
	tab.Type("name", "陳怡君")
	tab.Type("national-id", noPropertyCitizen)
	shot(tab, "1-bank-form")
	tab.Click("apply")

	tab.WaitFor("the hub's login page", `location.pathname === "/login" && document.getElementById("subject") !== null`, 15*time.Second)
	if asking := tab.Text("#asking"); !strings.Contains(asking, "Demo Bank online credit-card application") {
		t.Errorf("the login page does not name the service: %q", asking)
	}
	tab.Type("subject", noPropertyCitizen)
	tab.Select("method", "nhi-card")
	shot(tab, "2-hub-login")
	tab.Click("login")

	tab.WaitFor("the consent page", `document.getElementById("approve") !== null`, 15*time.Second)
	consent := tab.Text("main")
	for _, want := range []string{"Demo Bank", "Demo Bank online credit-card application",
		"Check the applicant's identity, household, income and property for a credit-card application.",
		"moi.household", "fia.income", "fia.property", "Ministry of the Interior", "Fiscal Information Agency"} {
		if !strings.Contains(consent, want) {
			t.Errorf("the consent page does not show %q:\n%s", want, consent)
		}
	}
	// The same page in Chinese, chosen from the header; the choice stays.
	tab.Click("lang-switch")
	tab.WaitFor("the consent page in Chinese", `document.documentElement.lang === "zh-TW" && document.getElementById("approve") !== null`, 15*time.Second)
	consent = tab.Text("main")
	for _, want := range []string{"示範銀行", "戶籍資料", "個人所得資料", "個人財產資料", "內政部", "財政部財政資訊中心", "同意"} {
		if !strings.Contains(consent, want) {
			t.Errorf("the Chinese consent page does not show %q:\n%s", want, consent)
		}
	}
	if purpose := tab.Text("#purpose"); !strings.HasPrefix(purpose, "Check the applicant's identity") {
		t.Errorf("purpose shown: %q", purpose)
	}
	shot(tab, "3-hub-consent")
	tab.Click("approve")

	tab.WaitFor("the bank's application page", fmt.Sprintf(`location.href.startsWith(%s) && document.getElementById("result") !== null`, jsString(bankURL+"/application/")), 30*time.Second)
	for ds, want := range map[string]string{"moi.household": "delivered", "fia.income": "delivered", "fia.property": "no_record"} {
		if got := tab.Attr("status-"+ds, "data-status"); got != want {
			t.Errorf("%s: %q, want %q", ds, got, want)
		}
	}
	if tab.Attr("result", "data-state") != "complete" {
		t.Errorf("the application is %q", tab.Attr("result", "data-state"))
	}
	household := readSample(t, "moi", "household", noPropertyCitizen+".json")
	shown := tab.Text(`[id="data-moi.household"]`)
	for _, want := range []string{household["address"].(string), household["household_head"].(string), "長女 Eldest daughter", "1995-02-14"} {
		if !strings.Contains(shown, want) {
			t.Errorf("household data lacks %q:\n%s", want, shown)
		}
	}
	income := readSample(t, "fia", "income", noPropertyCitizen+".json")
	year := income["years"].([]any)[0].(map[string]any)
	item := year["items"].([]any)[0].(map[string]any)
	shown = tab.Text(`[id="data-fia.income"]`)
	for _, want := range []string{item["payer"].(string), groupDigits(int64(item["amount"].(float64))), groupDigits(int64(year["total"].(float64))), fmt.Sprint(year["year"])} {
		if !strings.Contains(shown, want) {
			t.Errorf("income data lacks %q:\n%s", want, shown)
		}
	}
	if s := tab.Text(`[id="dataset-fia.property"]`); !strings.Contains(s, "查無資料 No record") {
		t.Errorf("property section: %q", s)
	}
	shot(tab, "4-bank-result")

	// She applies again and declines: the bank says so clearly. Her hub session still holds, so the hub
	// goes straight to the consent page.
	tab.Navigate(bankURL + "/")
	tab.Type("name", "陳怡君")
	tab.Type("national-id", noPropertyCitizen)
	tab.Click("apply")
	tab.WaitFor("the consent page again", `document.getElementById("deny") !== null`, 15*time.Second)
	tab.Click("deny")
	tab.WaitFor("the bank's error page", fmt.Sprintf(`location.href.startsWith(%s) && document.getElementById("error") !== null`, jsString(bankURL+"/callback")), 15*time.Second)
	if code, text := tab.Attr("error", "data-error"), tab.Text("main"); code != "access_denied" || !strings.Contains(text, "You did not agree") {
		t.Errorf("after declining: %s %q", code, text)
	}
	shot(tab, "5-bank-declined")

	// Lin Chih-hao, in another browser: the income agency is not ready at first. The bank shows the
	// dataset as retrying and refreshes itself until it arrives; his scooter comes from the sql backend.
	retry := filepath.Join(incomeDir, scooterCitizen+".json.retry")
	if err := os.WriteFile(retry, []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	tab = browser.NewTab()
	tab.Navigate(bankURL + "/")
	tab.Type("name", "林志豪")
	tab.Type("national-id", scooterCitizen)
	tab.Click("apply")
	tab.WaitFor("the hub's login page", `location.pathname === "/login" && document.getElementById("subject") !== null`, 15*time.Second)
	tab.Type("subject", scooterCitizen)
	tab.Select("method", "nhi-card")
	tab.Click("login")
	tab.WaitFor("the consent page", `document.getElementById("approve") !== null`, 15*time.Second)
	tab.Click("approve")
	tab.WaitFor("income retrying", `document.getElementById("status-fia.income") !== null && document.getElementById("status-fia.income").dataset.status === "pending"`, 30*time.Second)
	if s := tab.Text(`[id="status-fia.income"]`); !strings.Contains(s, "Retrying") {
		t.Errorf("pending status reads %q", s)
	}
	var refresh bool
	tab.Eval(`document.querySelector('meta[http-equiv="refresh"]') !== null`, &refresh)
	if !refresh {
		t.Error("the page with a pending dataset does not refresh itself")
	}
	shot(tab, "6-bank-pending")
	if err := os.Remove(retry); err != nil {
		t.Fatal(err)
	}
	// No navigation from here: the page's own refresh brings the delivery.
	tab.WaitFor("income delivered after the retry", `document.getElementById("result") !== null && document.getElementById("result").dataset.state === "complete"`, 20*time.Second)
	for ds, want := range map[string]string{"moi.household": "delivered", "fia.income": "delivered", "fia.property": "delivered"} {
		if got := tab.Attr("status-"+ds, "data-status"); got != want {
			t.Errorf("%s: %q, want %q", ds, got, want)
		}
	}
	if s := tab.Text(`[id="data-fia.property"]`); !strings.Contains(s, "DEM-0123") || !strings.Contains(s, "車輛 Vehicle") {
		t.Errorf("property from the sql backend: %q", s)
	}
	if s := tab.Text(`[id="data-fia.income"]`); !strings.Contains(s, "測試物流有限公司") || !strings.Contains(s, "758,400") {
		t.Errorf("income after the retry: %q", s)
	}
	shot(tab, "7-bank-delivered-after-retry")
	t.Logf("whole test: %s", time.Since(began).Round(time.Millisecond))
}

// groupDigits writes 612000 as 612,000, as the bank shows amounts.
func groupDigits(n int64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
