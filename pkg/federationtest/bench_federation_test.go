package federationtest

// The federation the product benchmarks run against, and the browser and SP application they play.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/directory"
	"github.com/mydatafed/mydata/pkg/nationalid"
)

const (
	benchDataset  = "agency.records"
	benchService  = "bank.onboarding"
	benchRedirect = "http://127.0.0.1:9/callback"
	benchMethod   = "nhi-card" // assurance level 2, what the dataset needs
)

// benchFed is a one-node hub (raft and state on disk), a DP connector serving benchDataset from a file
// backend over dataDir, and an SP connector whose service benchService asks for it.
type benchFed struct {
	h      *Hub
	dp, sp *Connector
}

// quietLogs turns a generated configuration's debug logging (what the e2e tests want) into info, what
// an agency runs: a benchmark measures the product, not its debug logs.
func quietLogs(tb testing.TB, path string) {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	debug := []byte("log:\n  level: debug\n")
	if !bytes.Contains(b, debug) {
		tb.Fatalf("%s: the harness no longer writes %q; the benchmarks would not know their log level", path, debug)
	}
	b = bytes.Replace(b, debug, []byte("log:\n  level: info\n"), 1)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		tb.Fatal(err)
	}
}

func startBenchFed(tb testing.TB, dataDir string) *benchFed {
	tb.Helper()
	h := NewHub(tb, HubOptions{})
	quietLogs(tb, h.ConfigPath)
	h.Start()
	return setupBenchFed(tb, h, dataDir)
}

// startBenchFedTCP is startBenchFed with QUIC off at the SP (quic.enabled: false), so that every transfer
// goes over the TCP fallback.
func startBenchFedTCP(tb testing.TB, dataDir string) *benchFed {
	tb.Helper()
	h := NewHub(tb, HubOptions{})
	quietLogs(tb, h.ConfigPath)
	h.Start()
	return setupBenchFedSP(tb, h, dataDir, func(path string) {
		cfg, err := os.ReadFile(path)
		if err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(path, bytes.Replace(cfg, []byte("quic:\n"), []byte("quic:\n  enabled: false\n"), 1), 0o644); err != nil {
			tb.Fatal(err)
		}
	})
}

// setupBenchFed registers and starts the benchmark's DP and SP connectors, dataset and service at the
// running hub h (and its cluster: the connectors get every node's URL).
func setupBenchFed(tb testing.TB, h *Hub, dataDir string) *benchFed {
	tb.Helper()
	return setupBenchFedSP(tb, h, dataDir, nil)
}

// setupBenchFedSP is setupBenchFed with editSP, if not nil, given the SP's config file before it starts.
func setupBenchFedSP(tb testing.TB, h *Hub, dataDir string, editSP func(path string)) *benchFed {
	tb.Helper()
	f := &benchFed{h: h}
	f.dp = f.h.AddConnector("agency", "dp1", ConnectorOptions{Roles: "dp",
		Extra: fmt.Sprintf("datasets:\n  %s:\n    backend:\n      type: file\n      file:\n        dir: %s\n", benchDataset, dataDir)})
	f.sp = f.h.AddConnector("bank", "sp1", ConnectorOptions{Roles: "sp"})
	for _, c := range []*Connector{f.dp, f.sp} {
		quietLogs(tb, c.ConfigPath)
		if c == f.sp && editSP != nil {
			editSP(c.ConfigPath)
		}
		if _, err := c.Enroll(f.h.Token(c.Org, c.Name)); err != nil {
			tb.Fatal(err)
		}
		c.Start()
	}
	f.h.Admin("dataset", "add", "--id", benchDataset, "--name-zh", "測試資料", "--name-en", "Benchmark data", "--dp", "agency/dp1", "--min-aal", "2")
	f.h.Admin("service", "add", "--id", benchService, "--name-zh", "測試服務", "--name-en", "Benchmark service", "--sp", "bank/sp1",
		"--datasets", benchDataset, "--purpose", "Measure the federation", "--terms", "Benchmark terms", "--terms-version", "1",
		"--redirect-uri", benchRedirect)
	Eventually(tb, 15*time.Second, "connector keys published", func() error {
		if n := strings.Count(f.h.Admin("--json", "connector", "list"), `"hpke_key"`); n < 2 {
			return fmt.Errorf("keys so far: %d", n)
		}
		return nil
	})
	// The hub publishes its keys once it leads, which can be after the connectors' first directory:
	// wait until both copies list it, or the first ticket is refused.
	for _, c := range []*Connector{f.dp, f.sp} {
		Eventually(tb, 15*time.Second, c.Name+" holds the hub's keys", func() error {
			doc, err := storedDirectory(c)
			if err != nil {
				return err
			}
			// A ticket key per node and the cluster's login-hint key.
			if want := len(f.h.Cluster) + 1; len(doc.HubKeys) < want {
				return fmt.Errorf("%d hub keys in the directory, want %d", len(doc.HubKeys), want)
			}
			return nil
		})
	}
	return f
}

// storedDirectory reads the copy of the directory a connector keeps on disk.
func storedDirectory(c *Connector) (*directory.Document, error) {
	raw, err := os.ReadFile(filepath.Join(c.DataDir(), "directory.json"))
	if err != nil {
		return nil, err
	}
	var signed directory.Signed
	if err := json.Unmarshal(raw, &signed); err != nil {
		return nil, err
	}
	var doc directory.Document
	if err := json.Unmarshal(signed.Payload, &doc); err != nil {
		return nil, err
	}
	return &doc, nil
}

// approve plays the citizen up to the code, with the harness's browser.
func (f *benchFed) approve(tb testing.TB, subject string) (code string, p PKCE) {
	tb.Helper()
	c := f.h.NewCitizen()
	c.Login(subject, benchMethod)
	p = NewPKCE()
	return c.Approve(f.h.AuthorizeURL(benchService, benchRedirect, benchDataset, "bench", p, nil)), p
}

// streamExchange posts the code to the SP connector's streaming endpoint and reads the content to its end
// into buf, discarding it, as an SP application that stores it elsewhere would. It returns the size read
// and the digest the connector verified.
func (f *benchFed) streamExchange(client *http.Client, code string, p PKCE, buf []byte) (int64, string, error) {
	body, _ := json.Marshal(map[string]string{"code": code, "code_verifier": p.Verifier, "redirect_uri": benchRedirect})
	resp, err := client.Post("http://"+f.sp.API+"/v1/exchanges/stream?dataset="+benchDataset, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return 0, "", fmt.Errorf("stream exchange: %s: %s", resp.Status, b)
	}
	n, err := discardAll(resp.Body, buf)
	if err != nil {
		return n, "", fmt.Errorf("stream exchange after %d bytes: %w", n, err)
	}
	if st := resp.Trailer.Get("X-Mydata-Status"); st != "delivered" {
		return n, "", fmt.Errorf("stream exchange ended with status %q", st)
	}
	return n, resp.Trailer.Get("X-Mydata-SHA256"), nil
}

// benchSubjects makes n valid national IDs.
func benchSubjects(tb testing.TB, n int) []string {
	tb.Helper()
	out := make([]string, n)
	for i := range out {
		s, err := nationalid.WithCheckDigit(fmt.Sprintf("A1%07d", i))
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = s
	}
	return out
}

// smallRecords writes one record of size bytes per subject into a new directory for the file backend.
func smallRecords(tb testing.TB, subjects []string, size int) string {
	tb.Helper()
	dir := tb.TempDir()
	for _, s := range subjects {
		rec := []byte(fmt.Sprintf(`{"subject_record":"%s","pad":"`, s))
		rec = append(rec, bytes.Repeat([]byte("x"), size-len(rec)-2)...)
		rec = append(rec, '"', '}')
		if err := os.WriteFile(filepath.Join(dir, s+".json"), rec, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}

// benchFlow is one whole online exchange driven through the real HTTP endpoints, as a citizen's browser and
// the SP's web application drive them. Its methods return errors instead of failing the benchmark, since
// many run at once off the benchmark's goroutine.
type benchFlow struct {
	// portals are every hub node's portal; each flow takes the next.
	portals   []string
	next      atomic.Uint64
	spAPI     string
	transport *http.Transport
	size      int
}

func newBenchFlow(f *benchFed, size int) *benchFlow {
	fl := &benchFlow{spAPI: "http://" + f.sp.API, size: size, transport: &http.Transport{
		MaxIdleConns: 256, MaxIdleConnsPerHost: 128, IdleConnTimeout: time.Minute, DisableCompression: true,
	}}
	for _, h := range f.h.Cluster {
		fl.portals = append(fl.portals, h.PortalURL())
	}
	return fl
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func (fl *benchFlow) do(c *http.Client, req *http.Request, wantStatus int) (string, *http.Response, error) {
	resp, err := c.Do(req)
	if err != nil {
		return "", nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return "", nil, err
	}
	if resp.StatusCode != wantStatus {
		return "", nil, fmt.Errorf("%s %s: %s, want %d: %.300s", req.Method, req.URL.Path, resp.Status, wantStatus, b)
	}
	return string(b), resp, nil
}

func (fl *benchFlow) get(c *http.Client, u string, want int) (string, *http.Response, error) {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return fl.do(c, req, want)
}

func (fl *benchFlow) postForm(c *http.Client, u string, form url.Values, want int) (string, *http.Response, error) {
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return fl.do(c, req, want)
}

// login fills in the login page at loginPath as a browser does, with the page's CSRF token.
func (fl *benchFlow) login(browser *http.Client, portal, loginPath, subject string) (*http.Response, error) {
	page, _, err := fl.get(browser, portal+loginPath, http.StatusOK)
	if err != nil {
		return nil, fmt.Errorf("login page: %w", err)
	}
	form, err := FormFields(page, "/login")
	if err != nil {
		return nil, err
	}
	if !strings.Contains(page, `name="subject"`) {
		return nil, errors.New("the login page has no national ID field")
	}
	form.Set("subject", subject)
	form.Set("method", benchMethod)
	_, resp, err := fl.postForm(browser, portal+"/login", form, http.StatusSeeOther)
	if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	return resp, nil
}

// run does authorize → login → consent page → approve → redeem and transfer at the SP connector.
func (fl *benchFlow) run(subject string) error {
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Transport: fl.transport, Jar: jar, CheckRedirect: noRedirects, Timeout: time.Minute}
	p := NewPKCE()
	q := url.Values{"response_type": {"code"}, "client_id": {benchService}, "redirect_uri": {benchRedirect}, "scope": {benchDataset},
		"state": {"st"}, "code_challenge": {p.Challenge}, "code_challenge_method": {"S256"}}
	authz := "/oauth/authorize?" + q.Encode()
	portal := fl.portals[fl.next.Add(1)%uint64(len(fl.portals))]

	// The SP sends the browser to the hub, which asks for a login first.
	_, resp, err := fl.get(browser, portal+authz, http.StatusSeeOther)
	if err != nil {
		return fmt.Errorf("authorize: %w", err)
	}
	resp, err = fl.login(browser, portal, resp.Header.Get("Location"), subject)
	if err != nil {
		return err
	}
	page, _, err := fl.get(browser, portal+resp.Header.Get("Location"), http.StatusOK)
	if err != nil {
		return fmt.Errorf("authorize after login: %w", err)
	}
	form, err := ConsentForm(page)
	if err != nil {
		return err
	}
	form.Set("decision", "approve")
	_, resp, err = fl.postForm(browser, portal+"/oauth/consent", form, http.StatusFound)
	if err != nil {
		return fmt.Errorf("approve: %w", err)
	}
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || back.Query().Get("code") == "" {
		return fmt.Errorf("approve sent the browser to %q", resp.Header.Get("Location"))
	}

	// The browser lands at the SP, whose application hands the code to its connector.
	body, _ := json.Marshal(map[string]string{"code": back.Query().Get("code"), "code_verifier": p.Verifier, "redirect_uri": benchRedirect})
	req, _ := http.NewRequest(http.MethodPost, fl.spAPI+"/v1/exchanges", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	out, _, err := fl.do(&http.Client{Transport: fl.transport, Timeout: time.Minute}, req, http.StatusOK)
	if err != nil {
		return fmt.Errorf("exchange: %w", err)
	}
	var res ExchangeResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		return fmt.Errorf("exchange answer: %w", err)
	}
	if len(res.Datasets) != 1 || res.Datasets[0].Status != "delivered" || len(res.Datasets[0].Content) != fl.size ||
		!bytes.Contains(res.Datasets[0].Content, []byte(subject)) {
		return fmt.Errorf("exchange delivered something else: %.300s", out)
	}
	return nil
}

// receiptsTotal reads the count of receipts the hub's nodes took, both roles, all nodes together (each
// counts those its API took).
func receiptsTotal(h *Hub) (int, error) {
	total := 0
	for _, n := range h.Cluster {
		if !n.Running() {
			continue
		}
		c, err := nodeReceipts(n)
		if err != nil {
			return 0, err
		}
		total += c
	}
	return total, nil
}

func nodeReceipts(h *Hub) (int, error) {
	resp, err := http.Get("http://" + h.Telem + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	total := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "mydata_hub_receipts_total{") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		total += int(v)
	}
	return total, sc.Err()
}

// cpuTime is the CPU time (user and system) a process has used so far, from /proc; pid 0 is this process.
func cpuTime(pid int) (time.Duration, error) {
	path := "/proc/self/stat"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/stat", pid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	// The command name, field 2, may hold spaces; the fields after its closing parenthesis do not.
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("%s: too few fields", path)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%s: utime %q stime %q", path, fields[11], fields[12])
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on every Linux architecture Go runs on.
const clockTicks = 100

// cpuMeter reports, per operation, the CPU time that named processes used during the benchmark loop, as
// "<name>-cpu-ms/op": where a transfer's cycles go, and whether the machine's cores were the limit.
type cpuMeter struct {
	names []string
	pids  [][]int // the processes of each name, counted together
	start []time.Duration
}

func (m *cpuMeter) add(name string, pids ...int) {
	m.names, m.pids = append(m.names, name), append(m.pids, pids)
}

func (m *cpuMeter) total(pids []int) (time.Duration, error) {
	var sum time.Duration
	for _, pid := range pids {
		t, err := cpuTime(pid)
		if err != nil {
			return 0, err
		}
		sum += t
	}
	return sum, nil
}

func (m *cpuMeter) begin(tb testing.TB) {
	tb.Helper()
	m.start = m.start[:0]
	for _, pids := range m.pids {
		t, err := m.total(pids)
		if err != nil {
			tb.Fatal(err)
		}
		m.start = append(m.start, t)
	}
}

func (m *cpuMeter) report(b *testing.B, ops int) {
	b.Helper()
	for i, pids := range m.pids {
		t, err := m.total(pids)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64((t-m.start[i]).Microseconds())/1000/float64(ops), m.names[i]+"-cpu-ms/op")
	}
}

// rssMiB reads a process's resident set from /proc.
func rssMiB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				return 0, err
			}
			return kb / 1024, nil
		}
	}
	return 0, errors.New("no VmRSS line")
}
