package federationtest

import (
	"archive/zip"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/pemfile"
	"github.com/mydatafed/mydata/pkg/seal"
	"github.com/mydatafed/mydata/pkg/transfer"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// downloadFederation is a hub and one agency's DP connector serving three datasets citizens may download:
// a small JSON one, a large one, and an asynchronous one its agency is still preparing.
type downloadFederation struct {
	h         *Hub
	dp        *Connector
	household []byte
	records   []byte
}

// downloadSize is the large dataset's size: 200 MiB as the issue asks, less under the race detector, which
// makes every process several times slower and larger (32 MiB: the relay's buffer and QUIC's windows are
// far smaller, so a hub that held the data would still show it).
func downloadSize() int {
	if n, err := strconv.Atoi(os.Getenv("MYDATA_DOWNLOAD_MIB")); err == nil {
		return n << 20
	}
	if raceBuild {
		return 32 << 20
	}
	return 200 << 20
}

func startDownload(t *testing.T) *downloadFederation {
	t.Helper()
	f := &downloadFederation{h: StartHub(t, HubOptions{})}
	dir := t.TempDir()
	f.household = []byte(`{"household":"PAYLOAD-DL-HOUSEHOLD-4e2a","members":[{"name":"王小明","relation":"head"}]}`)
	f.records = make([]byte, downloadSize())
	rand.Read(f.records)
	os.WriteFile(filepath.Join(dir, citizenA+".json"), f.household, 0o644)
	os.WriteFile(filepath.Join(dir, citizenA+".pdf"), f.records, 0o644)
	os.WriteFile(filepath.Join(dir, citizenA+".csv"), []byte("year,income\n2025,PAYLOAD-DL-INCOME\n"), 0o644)
	os.WriteFile(filepath.Join(dir, citizenA+".csv.retry"), []byte("600"), 0o644)
	file := func(id, pattern string) string {
		return fmt.Sprintf("  %s:\n    max_bytes: %d\n    backend:\n      type: file\n      file:\n        dir: %s\n        pattern: \"%s\"\n", id, 1<<30, dir, pattern)
	}
	f.dp = f.h.AddConnector("moi", "dp1", ConnectorOptions{Roles: "dp", Extra: DatasetsYAML(file("moi.household", "{subject}.json"),
		file("moi.records", "{subject}.pdf"), file("moi.income", "{subject}.csv"))})
	if _, err := f.dp.Enroll(f.h.Token("moi", "dp1")); err != nil {
		t.Fatal(err)
	}
	f.dp.Start()
	f.h.Admin("dataset", "add", "--id", "moi.household", "--name-zh", "戶籍資料", "--name-en", "Household registration", "--dp", "moi/dp1", "--min-aal", "2", "--download")
	f.h.Admin("dataset", "add", "--id", "moi.records", "--name-zh", "戶籍謄本", "--name-en", "Household records", "--dp", "moi/dp1", "--min-aal", "2",
		"--content-type", "application/pdf", "--download")
	f.h.Admin("dataset", "add", "--id", "moi.income", "--name-zh", "所得資料", "--name-en", "Income", "--dp", "moi/dp1", "--min-aal", "2",
		"--content-type", "text/csv", "--async", "--download")
	f.h.Admin("dataset", "add", "--id", "moi.secret", "--name-zh", "不開放下載", "--name-en", "Not for download", "--dp", "moi/dp1", "--min-aal", "2")
	Eventually(t, 10*time.Second, "DP key published", func() error {
		if !strings.Contains(f.h.Admin("--json", "connector", "list"), `"hpke_key"`) {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	return f
}

// TestDownload: a citizen downloads their own data in Chromium; the saved package holds the DP's bytes
// exactly and checks out with `mydata-connector verify`, which refuses it with one byte changed; the hub's
// data directory holds no byte of it and its memory stays bounded; an asynchronous dataset says when it will
// be ready; the history records it.
func TestDownload(t *testing.T) {
	skipWithoutChromium(t)
	t.Parallel()
	f := startDownload(t)
	h := f.h
	b := StartBrowser(t)
	shot := screenshots(t)
	saveDir := t.TempDir()
	tab := englishTab(t, b)
	tab.AllowDownloads(saveDir)

	tab.Navigate(h.PortalURL() + "/download")
	page := tab.Text("main")
	if !strings.Contains(page, "Household records") || strings.Contains(page, "Not for download") {
		t.Fatalf("the download page lists the wrong datasets:\n%s", page)
	}
	for _, id := range []string{"moi.household", "moi.records", "moi.income"} {
		tab.Click("pick-" + id)
	}
	tab.Click("next")
	tab.WaitFor("the login page", `location.pathname === "/login" && document.getElementById("subject") !== null`, 15*time.Second)
	tab.Type("subject", citizenA)
	tab.Select("method", "nhi-card")
	tab.Click("login")
	tab.WaitFor("the confirmation page, its script ready", `document.getElementById("start") !== null && !document.getElementById("start").disabled`, 15*time.Second)
	rssBefore := procStatusMiB(t, h.Pid(), "VmRSS:")
	started := time.Now()
	tab.Eval(`window.__errs = []; addEventListener("unhandledrejection", (e) => __errs.push(String(e.reason && e.reason.stack || e.reason)))`, nil)
	tab.Click("start")
	tab.WaitFor("the package saved", `document.getElementById("saved-note") !== null || !document.getElementById("error").hidden || window.__errs.length`, 5*time.Minute)
	var errs []string
	tab.Eval(`window.__errs`, &errs)
	if len(errs) > 0 {
		t.Fatalf("the page's script failed: %s", strings.Join(errs, "\n"))
	}
	if e := tab.Text("#error"); e != "" {
		t.Fatalf("the page reports: %s", e)
	}
	shot(tab, "download-done-en")
	took := time.Since(started)
	peak := procStatusMiB(t, h.Pid(), "VmHWM:")
	t.Logf("downloaded %d MiB through the hub in %s; hub RSS %.0f MiB before, peak %.0f MiB", len(f.records)>>20, took.Round(time.Millisecond), rssBefore, peak)
	// The relay holds one 64 KiB buffer and QUIC's windows, never the dataset: a hub that buffered it would
	// grow by its size, and more under the race detector, whose own memory grows with what a process touches
	// (a 48 MiB relay grew the raced hub by 36 MiB).
	limit := max(float64(len(f.records)>>20)/2, 32)
	if raceBuild {
		limit = max(float64(len(f.records)>>20), 48)
	}
	if grew := peak - rssBefore; grew > limit {
		t.Errorf("the hub's peak RSS grew by %.0f MiB relaying %d MiB: it is holding the data", grew, len(f.records)>>20)
	}
	for id, want := range map[string]string{"moi.household": "ok", "moi.records": "ok", "moi.income": "not_ready"} {
		if got := tab.Attr("status-"+id, "data-state"); got != want {
			t.Errorf("%s: state %q, want %q (%s)", id, got, want, tab.Text("#status-"+id))
		}
	}
	if s := tab.Text(`[id="status-moi.income"]`); !strings.Contains(s, "about 10 minutes") {
		t.Errorf("the asynchronous dataset says %q, want when it will be ready", s)
	}

	// The saved package: the DP's bytes, byte for byte, and a manifest that checks out.
	var saved string
	Eventually(t, 30*time.Second, "the zip in the download directory", func() error {
		m, _ := filepath.Glob(filepath.Join(saveDir, "mydata-*.zip"))
		if len(m) != 1 {
			return fmt.Errorf("files: %v", m)
		}
		saved = m[0]
		return nil
	})
	pkg, err := os.ReadFile(saved)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(pkg), int64(len(pkg)))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]byte{}
	for _, zf := range zr.File {
		rc, _ := zf.Open()
		got[zf.Name], _ = io.ReadAll(rc)
		rc.Close()
	}
	if !bytes.Equal(got["moi.household.json"], f.household) || !bytes.Equal(got["moi.records.pdf"], f.records) || len(got) != 3 {
		t.Fatalf("the package holds %d files; household equal %v, records equal %v", len(got), bytes.Equal(got["moi.household.json"], f.household),
			bytes.Equal(got["moi.records.pdf"], f.records))
	}
	verify := func(path string, args ...string) (string, error) {
		out, err := exec.Command(h.ConnectorBin, append(append([]string{"verify"}, args...), path)...).CombinedOutput()
		return string(out), err
	}
	if out, err := verify(saved, "--config", f.dp.ConfigPath); err != nil || !strings.Contains(out, "OK, 2 files") {
		t.Fatalf("verify refused the package the page saved: %v\n%s", err, out)
	}
	tampered := bytes.Clone(pkg)
	at := bytes.Index(tampered, f.household[:20])
	tampered[at+5] ^= 1
	bad := filepath.Join(t.TempDir(), "tampered.zip")
	os.WriteFile(bad, tampered, 0o644)
	if out, err := verify(bad, "--config", f.dp.ConfigPath); err == nil || !strings.Contains(out, "REFUSED") {
		t.Fatalf("verify accepted a package with one byte changed:\n%s", out)
	}

	// Nothing of the data reached the hub's disk.
	probe := f.records[len(f.records)/2 : len(f.records)/2+64]
	for p, data := range h.HubFiles(t) {
		if bytes.Contains(data, []byte("PAYLOAD-DL")) || bytes.Contains(data, probe) {
			t.Errorf("%s holds payload bytes", p)
		}
	}

	// The history has the download, with the agency's receipts.
	tab.Navigate(h.PortalURL() + "/history")
	hist := tab.Text("main")
	for _, want := range []string{"Personal download", "You (your browser)", "Downloaded"} {
		if !strings.Contains(hist, want) {
			t.Errorf("the history does not say %q:\n%s", want, hist)
		}
	}
	var receipts int
	tab.Eval(`document.querySelectorAll('.receipt[data-receipt-outcome="delivered"]').length`, &receipts)
	if receipts < 2 {
		t.Errorf("the history shows %d delivered receipts, want the DP's two", receipts)
	}
	// The download's own page fetches what was not ready, with the key the browser kept.
	var consentID string
	tab.Eval(`(document.querySelector('a[id^="open-"]') || {}).id || ""`, &consentID)
	consentID = strings.TrimPrefix(consentID, "open-")
	if consentID == "" {
		t.Fatal("no link to the download's page in the history")
	}
	// Every download page, in both languages, on a phone's screen: no sideways scrolling, no serious
	// accessibility violation.
	for _, lang := range []string{"zh-TW", "en"} {
		t.Run("pages-"+lang, func(t *testing.T) {
			pt := b.NewTab().For(t)
			pt.setLang(lang)
			pt.phone()
			pt.Navigate(h.PortalURL() + "/download")
			pt.checkPhonePage("download list", lang)
			shot(pt, "download-list-"+lang)
			pt.Navigate(h.PortalURL() + "/download/confirm?ds=moi.household&ds=moi.records")
			pt.Type("subject", citizenA)
			pt.Select("method", "nhi-card")
			pt.clickNav("login")
			pt.WaitFor("the confirmation page", `document.getElementById("start") !== null`, 15*time.Second)
			pt.checkPhonePage("download confirmation", lang)
			shot(pt, "download-confirm-"+lang)
			pt.Navigate(h.PortalURL() + "/history")
			pt.checkPhonePage("history with a download", lang)
			pt.Navigate(h.PortalURL() + "/download/" + consentID)
			pt.WaitFor("the page's script", `!document.getElementById("start").disabled || !document.getElementById("error").hidden`, 15*time.Second)
			pt.checkPhonePage("a download's page in another browser", lang)
			// This browser does not hold the download's key: the page says so instead of failing.
			if e := pt.Text("#error"); e == "" {
				t.Error("a download's page in a browser without its key says nothing")
			}
		})
	}

	tab.Navigate(h.PortalURL() + "/download/" + consentID)
	tab.WaitFor("the download's page, its script ready", `document.getElementById("start") !== null && !document.getElementById("start").disabled`, 15*time.Second)
	tab.Click("start")
	tab.WaitFor("the fetch to end", `document.getElementById("status-moi.income").dataset.state && document.getElementById("status-moi.income").dataset.state !== "fetching"`, time.Minute)
	if got := tab.Attr("status-moi.income", "data-state"); got != "not_ready" {
		t.Errorf("fetching again from the history: %q, want still not_ready", got)
	}
}

// TestDownloadRelayCiphertext drives the download endpoints as a script would, with a key made here: what
// the hub relays opens with that key only, not with any key in the hub's data directory; the download is
// single use; another citizen cannot have it relayed; a used ticket is refused by the DP.
func TestDownloadRelayCiphertext(t *testing.T) {
	t.Parallel()
	f := startDownload(t)
	h := f.h
	c := h.NewCitizen()
	c.Login(citizenA, "nhi-card")
	page := c.Get("/download/confirm?ds=moi.household")
	attr := func(name string) string {
		m := regexp.MustCompile(name + `="([^"]+)"`).FindStringSubmatch(page.Body)
		if m == nil {
			t.Fatalf("no %s on the confirmation page (%d)", name, page.Status)
		}
		return m[1]
	}
	pending, csrf, relayCSRF := attr("data-pending"), attr("data-csrf"), attr("data-relay-csrf")
	key, _ := seal.GenerateKey(seal.KEMX25519)
	post := func(who *Citizen, path, token string, body any) (int, []byte) {
		j, _ := json.Marshal(body)
		req, _ := http.NewRequest(http.MethodPost, h.PortalURL()+path, bytes.NewReader(j))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-CSRF-Token", token)
		resp, err := who.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	start := map[string]any{"pending": pending, "datasets": []string{"moi.household"}, "public_key": base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes())}
	if st, _ := post(c, "/download/start", "forged", start); st != http.StatusForbidden {
		t.Fatalf("start with a forged CSRF token: %d", st)
	}
	st, body := post(c, "/download/start", csrf, start)
	if st != http.StatusOK {
		t.Fatalf("start: %d %s", st, body)
	}
	var resp struct {
		ConsentID string `json:"consent_id"`
		Items     []struct {
			Dataset, DP, Ticket string
			TicketID            string `json:"ticket_id"`
		} `json:"items"`
	}
	json.Unmarshal(body, &resp)
	if len(resp.Items) != 1 {
		t.Fatalf("items: %s", body)
	}
	item := resp.Items[0]
	if st, body := post(c, "/download/start", csrf, start); st != http.StatusConflict {
		t.Fatalf("the same download again: %d %s, want 409", st, body)
	}

	// Another citizen cannot have this ticket relayed.
	other := h.NewCitizen()
	other.Login(citizenB, "nhi-card")
	otherPage := other.Get("/download/confirm?ds=moi.household")
	otherCSRF := regexp.MustCompile(`data-relay-csrf="([^"]+)"`).FindStringSubmatch(otherPage.Body)
	if otherCSRF == nil {
		t.Fatalf("no relay token for citizen B: %d", otherPage.Status)
	}
	if st, body := post(other, "/download/relay", otherCSRF[1], map[string]string{"ticket": item.Ticket}); st != http.StatusForbidden {
		t.Fatalf("another citizen's relay: %d %s", st, body)
	}

	st, stream := post(c, "/download/relay", relayCSRF, map[string]string{"ticket": item.Ticket})
	if st != http.StatusOK {
		t.Fatalf("relay: %d %s", st, stream)
	}
	if bytes.Contains(stream, []byte("PAYLOAD-DL")) {
		t.Fatal("the relayed stream holds the payload in clear")
	}
	dp := spiffeid.RequireFromString(item.DP)
	exp := func() transfer.Expect {
		return transfer.Expect{TicketID: item.TicketID, Dataset: item.Dataset, DP: dp, MaxSize: 1 << 30, Bundles: hubBundle(t, f.dp)}
	}
	// The ticket is single use at the DP: presented again at once (it lives 5 minutes, and the key trials
	// below are slow on a loaded machine), it is refused.
	st, again := post(c, "/download/relay", relayCSRF, map[string]string{"ticket": item.Ticket})
	if st != http.StatusOK {
		t.Fatalf("relay again: %d %s", st, again)
	}
	if res, err := transfer.Receive(bytes.NewReader(again), io.Discard, exp(), key); err != nil || res.Header.Status != transfer.Refused {
		t.Fatalf("a used download ticket: %+v %v, want refused", res, err)
	}
	// Every private key the hub keeps, tried as the recipient: none opens it.
	tried := 0
	for p, data := range h.HubFiles(t) {
		for _, kem := range []uint16{seal.KEMX25519, seal.KEMHybrid} {
			for _, cand := range keyCandidates(data) {
				sk, err := seal.ParsePrivateKey(kem, cand)
				if err != nil {
					continue
				}
				tried++
				if _, err := transfer.Receive(bytes.NewReader(stream), io.Discard, exp(), sk); err == nil {
					t.Fatalf("the hub's %s opens what it relayed", p)
				}
			}
		}
	}
	t.Logf("tried %d private keys found in the hub's data directory; none opens the relayed stream", tried)
	var out bytes.Buffer
	if _, err := transfer.Receive(bytes.NewReader(stream), &out, exp(), key); err != nil || !bytes.Equal(out.Bytes(), f.household) {
		t.Fatalf("the browser's key does not open the stream: %v", err)
	}
}

// keyCandidates are the byte strings in a file that could be a raw private key: the file itself, and every
// PEM block's and base64 run's bytes.
func keyCandidates(data []byte) [][]byte {
	out := [][]byte{data}
	for _, m := range regexp.MustCompile(`[A-Za-z0-9+/_-]{40,}={0,2}`).FindAll(data, 100) {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if b, err := enc.DecodeString(string(m)); err == nil {
				out = append(out, b)
			}
		}
	}
	return out
}

// hubBundle is the federation's trust bundle as a connector keeps it.
func hubBundle(t *testing.T, c *Connector) *x509bundle.Bundle {
	t.Helper()
	roots, err := pemfile.ReadCertificates(filepath.Join(c.DataDir(), "identity", "bundle.crt"))
	if err != nil {
		t.Fatal(err)
	}
	return x509bundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString("mydata.test"), roots)
}

// procStatusMiB reads a memory figure of a process from /proc: VmRSS (now) or VmHWM (its peak).
func procStatusMiB(t *testing.T, pid int, field string) float64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb / 1024
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
