package federationtest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// counterFederation is a hub (counter codes live a minute), two DPs, the bank's SP connector with a
// counter page and a counter service, and a shop's SP connector with a counter page of its own.
type counterFederation struct {
	h          *Hub
	bank, shop *Connector
	bankPage   string
	shopPage   string
	payloads   []string
}

const staffPassword = "counter staff password 1"

// staffFile makes a staff file with the real `mydata-connector counter passwd`.
func staffFile(t *testing.T, bin string, names ...string) string {
	t.Helper()
	var lines []string
	for _, n := range names {
		cmd := exec.Command(bin, "counter", "passwd", n)
		cmd.Stdin = strings.NewReader(staffPassword + "\n")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("counter passwd %s: %v", n, err)
		}
		if !regexp.MustCompile(`^` + n + `:\$2a\$12\$[./A-Za-z0-9]{53}\n$`).Match(out) {
			t.Fatalf("counter passwd printed %q", out)
		}
		lines = append(lines, string(out))
	}
	p := filepath.Join(t.TempDir(), "staff")
	if err := os.WriteFile(p, []byte("# counter staff\n"+strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func startCounter(t *testing.T) *counterFederation {
	t.Helper()
	f := &counterFederation{}
	f.h = StartHub(t, HubOptions{Extra: "consent:\n  counter_ttl: 1m\n"})
	household := `{"household":"PAYLOAD-HOUSEHOLD-7d1f","members":[{"name":"王小明","relation":"head"},{"name":"王小華","relation":"child"}]}`
	income := "year,income\n2025,PAYLOAD-INCOME-93c2\n"
	pdf := "%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n% PAYLOAD-PDF-51ab\ntrailer<</Root 1 0 R>>\n%%EOF\n"
	f.payloads = []string{"PAYLOAD-HOUSEHOLD-7d1f", "PAYLOAD-INCOME-93c2", "PAYLOAD-PDF-51ab"}
	moiDir, fiaDir := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(moiDir, citizenA+".json"), []byte(household), 0o644)
	os.WriteFile(filepath.Join(moiDir, citizenA+".pdf"), []byte(pdf), 0o644)
	os.WriteFile(filepath.Join(fiaDir, citizenA+".csv"), []byte(income), 0o644)
	file := func(id, dir, pattern string) string {
		return fmt.Sprintf("  %s:\n    backend:\n      type: file\n      file:\n        dir: %s\n        pattern: \"%s\"\n", id, dir, pattern)
	}
	moi := f.h.AddConnector("moi", "dp1", ConnectorOptions{Roles: "dp", Extra: DatasetsYAML(file("moi.household", moiDir, "{subject}.json"), file("moi.certificate", moiDir, "{subject}.pdf"))})
	fia := f.h.AddConnector("fia", "dp2", ConnectorOptions{Roles: "dp", Extra: DatasetsYAML(file("fia.income", fiaDir, "{subject}.csv"))})
	f.bankPage, f.shopPage = FreeTCP(t), FreeTCP(t)
	f.bank = f.h.AddConnector("bank", "sp1", ConnectorOptions{Roles: "sp", Extra: fmt.Sprintf("counter:\n  listen: %s\n  staff_file: %s\n", f.bankPage, staffFile(t, f.h.ConnectorBin, "alice", "bob"))})
	f.shop = f.h.AddConnector("shop", "sp2", ConnectorOptions{Roles: "sp", Extra: fmt.Sprintf("counter:\n  listen: %s\n  staff_file: %s\n", f.shopPage, staffFile(t, f.h.ConnectorBin, "carol"))})
	for _, c := range []*Connector{moi, fia, f.bank, f.shop} {
		if _, err := c.Enroll(f.h.Token(c.Org, c.Name)); err != nil {
			t.Fatal(err)
		}
		c.Start()
	}
	f.h.Admin("dataset", "add", "--id", "moi.household", "--name-zh", "戶籍資料", "--name-en", "Household registration", "--dp", "moi/dp1", "--min-aal", "2")
	f.h.Admin("dataset", "add", "--id", "moi.certificate", "--name-zh", "戶籍謄本", "--name-en", "Household certificate", "--dp", "moi/dp1", "--min-aal", "2")
	f.h.Admin("dataset", "add", "--id", "fia.income", "--name-zh", "所得資料", "--name-en", "Income", "--dp", "fia/dp2", "--min-aal", "2")
	f.h.Admin("service", "add", "--id", "bank.counter", "--name-zh", "臨櫃開戶", "--name-en", "Account opening at the counter", "--sp", "bank/sp1",
		"--datasets", "moi.household,fia.income,moi.certificate", "--purpose", "Check identity and income at the counter", "--terms", "Counter terms",
		"--terms-version", "1", "--modes", "counter")
	Eventually(t, 10*time.Second, "DP keys published", func() error {
		if n := strings.Count(f.h.Admin("--json", "connector", "list"), `"hpke_key"`); n < 4 {
			return fmt.Errorf("keys so far: %d", n)
		}
		return nil
	})
	return f
}

// counterCode is a citizen agreeing on the portal's /counter page and reading the code it shows.
func (f *counterFederation) counterCode(t *testing.T, agentID, agentName string) string {
	t.Helper()
	c := f.h.NewCitizen()
	c.Login(citizenA, "nhi-card")
	page := c.Get("/counter/bank.counter")
	if page.Status == http.StatusNotFound {
		t.Fatalf("the hub's portal has no /counter page yet (the hub side of issue 10): %s", page.Body)
	}
	form, err := FormFields(page.Body, "/counter/bank.counter")
	if err != nil {
		t.Fatalf("counter consent page: %v (%d)", err, page.Status)
	}
	form.Set("agent_id", agentID)
	form.Set("agent_name", agentName)
	p := c.Post("/counter/bank.counter", form)
	m := regexp.MustCompile(`id="code"[^>]*>([^<]+)<`).FindStringSubmatch(p.Body)
	if p.Status != http.StatusOK || m == nil {
		t.Fatalf("no code after agreeing: %d %s", p.Status, p.Body)
	}
	return strings.TrimSpace(m[1])
}

// staffTab logs a staff member in on a counter page in Chromium.
func staffTab(t *testing.T, b *Browser, page, name string) *Tab {
	t.Helper()
	tab := b.NewTab()
	tab.Navigate("http://" + page + "/")
	tab.WaitFor("the login page", `document.getElementById("password")`, 10*time.Second)
	tab.Type("name", name)
	tab.Type("password", staffPassword)
	tab.Click("login")
	tab.WaitFor("the code entry page", `document.getElementById("code")`, 60*time.Second)
	return tab
}

// enter types a code as a keyboard-wedge scanner does: the characters, then Enter.
func enter(tab *Tab, code string) {
	tab.Type("code", code)
	tab.Call("Input.dispatchKeyEvent", map[string]any{"type": "keyDown", "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "text": "\r"}, nil)
	tab.Call("Input.dispatchKeyEvent", map[string]any{"type": "keyUp", "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13}, nil)
}

func heldBytesMetric(t *testing.T, c *Connector) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^mydata_connector_counter_held_bytes (\S+)$`).FindStringSubmatch(c.Metrics())
	if m == nil {
		t.Fatal("no mydata_connector_counter_held_bytes on the connector's metrics")
	}
	return m[1]
}

func TestCounterPage(t *testing.T) {
	t.Parallel()
	f := startCounter(t)
	br := StartBrowser(t)
	// A code made first, to be tried once it has expired, at the end.
	expired := f.counterCode(t, "", "")
	madeAt := time.Now()

	code := f.counterCode(t, "", "")
	if len(strings.NewReplacer(" ", "", "-", "").Replace(code)) != 8 {
		t.Fatalf("code %q", code)
	}

	// Another SP's counter cannot redeem it, and does not spend it.
	shop := staffTab(t, br, f.shopPage, "carol")
	enter(shop, code)
	shop.WaitFor("another SP's code refused", `(document.getElementById("message") || {}).innerText?.includes("another organisation")`, 60*time.Second)

	// The bank's staff type it, see the data, press Done.
	tab := staffTab(t, br, f.bankPage, "alice")
	// The camera button shows only where the browser has BarcodeDetector.
	var scan struct{ Detector, Hidden bool }
	tab.Eval(`({Detector: "BarcodeDetector" in window, Hidden: document.getElementById("scan").hidden})`, &scan)
	if scan.Detector == scan.Hidden {
		t.Errorf("the scan button: %+v", scan)
	}
	enter(tab, strings.ToLower(code))
	tab.WaitFor("the data page", `document.getElementById("datasets")`, 90*time.Second)
	body := tab.Text("body")
	for _, w := range []string{"bank.counter", "A12*****89", "PAYLOAD-HOUSEHOLD-7d1f", "王小華", "PAYLOAD-INCOME-93c2", "moi / dp1", "fia / dp2"} {
		if !strings.Contains(body, w) {
			t.Errorf("the data page lacks %q:\n%s", w, body)
		}
	}
	if n := strings.Count(body, "Delivered"); n != 3 {
		t.Errorf("%d datasets delivered, want 3:\n%s", n, body)
	}
	// The PDF shows in a frame of a same-origin URL: fetch that URL with the staff session's cookie (the
	// page's own policy allows it no fetch).
	var src string
	tab.Eval(`document.querySelector("iframe.pdf").src`, &src)
	var cookies struct {
		Cookies []struct{ Name, Value string } `json:"cookies"`
	}
	tab.Call("Network.getCookies", map[string]any{"urls": []string{src}}, &cookies)
	req, _ := http.NewRequest(http.MethodGet, src, nil)
	for _, c := range cookies.Cookies {
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	if res, err := http.DefaultClient.Do(req); err != nil {
		t.Error(err)
	} else {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.Header.Get("Content-Type") != "application/pdf" || !bytes.Contains(b, []byte("PAYLOAD-PDF-51ab")) || !strings.HasPrefix(src, "http://"+f.bankPage+"/") {
			t.Errorf("the PDF frame's URL %s: %d %s", src, res.StatusCode, res.Header.Get("Content-Type"))
		}
	}
	if got := heldBytesMetric(t, f.bank); got == "0" {
		t.Error("the metric shows no data held while the page shows it")
	}
	tab.Click("done")
	tab.WaitFor("back to the code entry", `document.getElementById("code")`, 30*time.Second)
	var html string
	tab.Eval(`document.documentElement.outerHTML`, &html)
	for _, p := range f.payloads {
		if strings.Contains(html, p) {
			t.Errorf("the page still holds %s after Done", p)
		}
	}
	if got := heldBytesMetric(t, f.bank); got != "0" {
		t.Errorf("mydata_connector_counter_held_bytes %s after Done", got)
	}
	// Nothing of the data on the connector's disk; its audit log has the transfers.
	filepath.WalkDir(f.bank.DataDir(), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, pl := range f.payloads {
			if bytes.Contains(b, []byte(pl)) {
				t.Errorf("%s holds %s", p, pl)
			}
		}
		return nil
	})
	if out, err := f.bank.Audit("export"); err != nil || strings.Count(out, `"delivered"`) < 3 {
		t.Errorf("the bank's audit log: %v\n%s", err, out)
	}

	// A second redemption of the same code is refused.
	enter(tab, code)
	tab.WaitFor("a used code refused", `(document.getElementById("message") || {}).innerText?.includes("has been used already")`, 60*time.Second)

	// An agent pickup: the agent shows, and the data only once staff confirm the ID card.
	agentCode := f.counterCode(t, citizenB, "陳代辦")
	enter(tab, agentCode)
	tab.WaitFor("the agent notice", `document.getElementById("agent-checked")`, 90*time.Second)
	if body := tab.Text("body"); !strings.Contains(body, "陳代辦") || !strings.Contains(body, citizenB) || strings.Contains(body, "PAYLOAD") {
		t.Errorf("the agent notice:\n%s", body)
	}
	tab.Click("agent-confirm") // unticked: the browser's required check keeps the form
	time.Sleep(300 * time.Millisecond)
	if strings.Contains(tab.Text("body"), "PAYLOAD") {
		t.Fatal("data shows without the ID-card check")
	}
	tab.Click("agent-checked")
	tab.Click("agent-confirm")
	tab.WaitFor("the data after the check", `document.getElementById("datasets")`, 30*time.Second)
	if !strings.Contains(tab.Text("body"), "PAYLOAD-HOUSEHOLD-7d1f") {
		t.Error("no data after the ID-card check")
	}
	tab.Click("done")
	tab.WaitFor("back to the code entry", `document.getElementById("code")`, 30*time.Second)

	// Five wrong codes lock the terminal out, and say until when.
	lock := staffTab(t, br, f.bankPage, "bob")
	for i := range 5 {
		enter(lock, fmt.Sprintf("ABCD%04d", 2222+i*111)[:8])
		if i < 4 {
			lock.WaitFor("a wrong code refused", fmt.Sprintf(`(document.getElementById("message") || {}).innerText?.includes("%d more wrong codes")`, 4-i), 60*time.Second)
		}
	}
	// The connector locks after the fifth, and so does the hub: either may say it first.
	lock.WaitFor("the lockout", `["cannot enter codes until", "locked this counter terminal out until"].some(s => (document.getElementById("message") || {}).innerText?.includes(s))`, 60*time.Second)
	var closed bool
	lock.Eval(`document.getElementById("code").disabled && document.getElementById("redeem").disabled`, &closed)
	if !closed {
		t.Error("the code field is open during the lockout")
	}

	// The expired code is refused like an unknown one.
	if wait := time.Until(madeAt.Add(65 * time.Second)); wait > 0 {
		time.Sleep(wait)
	}
	enter(tab, expired)
	tab.WaitFor("an expired code refused", `(document.getElementById("message") || {}).innerText?.includes("No valid code like that")`, 60*time.Second)
	if got := heldBytesMetric(t, f.bank); got != "0" {
		t.Errorf("mydata_connector_counter_held_bytes %s at the end", got)
	}
}
