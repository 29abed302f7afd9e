package federationtest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReloadDatasets adds a dataset to a running DP connector's file and sends SIGHUP, as `systemctl
// reload` does: the SP then fetches it without a restart. A bad file sent the same way is refused, its key
// named in the log, and the datasets in force go on serving.
func TestReloadDatasets(t *testing.T) {
	t.Parallel()
	h := StartHub(t, HubOptions{})
	household := `{"household":"PAYLOAD-HOUSEHOLD"}`
	dp := h.AddConnector("moi", "dp1", ConnectorOptions{Roles: "dp", Extra: DatasetsYAML(FileDataset(t, "moi.household", map[string]string{citizenA: household}))})
	sp := h.AddConnector("bank", "sp1", ConnectorOptions{Roles: "sp"})
	for _, c := range []*Connector{dp, sp} {
		if _, err := c.Enroll(h.Token(c.Org, c.Name)); err != nil {
			t.Fatal(err)
		}
		c.Start()
	}
	redirect := "http://127.0.0.1:9/callback"
	h.Admin("dataset", "add", "--id", "moi.household", "--name-zh", "戶籍資料", "--name-en", "Household registration", "--dp", "moi/dp1")
	h.Admin("dataset", "add", "--id", "moi.vehicle", "--name-zh", "車籍資料", "--name-en", "Vehicle registration", "--dp", "moi/dp1")
	h.Admin("service", "add", "--id", "bank.loan", "--name-zh", "車貸", "--name-en", "Car loan", "--sp", "bank/sp1",
		"--datasets", "moi.household,moi.vehicle", "--purpose", "Check household and vehicle for a car loan", "--terms", "Terms",
		"--terms-version", "1", "--redirect-uri", redirect)
	Eventually(t, 10*time.Second, "DP key published", func() error {
		if out := h.Admin("--json", "connector", "list"); strings.Count(out, `"hpke_key"`) < 2 {
			return fmt.Errorf("keys so far: %d", strings.Count(out, `"hpke_key"`))
		}
		return nil
	})
	exchange := func() *ExchangeResult {
		t.Helper()
		c := h.NewCitizen()
		c.Login(citizenA, "nhi-card")
		p := NewPKCE()
		code := c.Approve(h.AuthorizeURL("bank.loan", redirect, "moi.household moi.vehicle", "st", p, nil))
		res, status, body := sp.Exchange(code, p.Verifier, redirect)
		if status != 200 {
			t.Fatalf("exchange: %d %s", status, body)
		}
		return res
	}
	hup := func() {
		t.Helper()
		if err := syscall.Kill(dp.proc.Pid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	reloads := func(result string, n int) {
		t.Helper()
		want := fmt.Sprintf(`mydata_connector_config_reloads_total{result=%q} %d`, result, n)
		Eventually(t, 10*time.Second, want, func() error {
			if !strings.Contains(dp.Metrics(), want+"\n") {
				return fmt.Errorf("not yet")
			}
			return nil
		})
	}

	// Before: the DP does not serve the vehicle dataset.
	res := exchange()
	if st, _, _ := res.Dataset(t, "moi.household"); st != "delivered" {
		t.Fatalf("household before the reload: %s", st)
	}
	if st, reason, _ := res.Dataset(t, "moi.vehicle"); st == "delivered" {
		t.Fatalf("vehicle served before it was configured: %s %s", st, reason)
	}

	// The operator adds the dataset, and changes a key that only a restart applies.
	orig, err := os.ReadFile(dp.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	vehicle := FileDataset(t, "moi.vehicle", map[string]string{citizenA: `{"plate":"PAYLOAD-VEHICLE-ABC1234"}`})
	good := strings.Replace(string(orig), "  level: debug\n", "  level: info\n", 1) + vehicle
	if err := os.WriteFile(dp.ConfigPath, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	hup()
	reloads("ok", 1)
	res = exchange()
	for ds, want := range map[string]string{"moi.household": "PAYLOAD-HOUSEHOLD", "moi.vehicle": "PAYLOAD-VEHICLE-ABC1234"} {
		if st, reason, content := res.Dataset(t, ds); st != "delivered" || !strings.Contains(string(content), want) {
			t.Fatalf("%s after the reload: %s %s %q", ds, st, reason, content)
		}
	}
	logPath := filepath.Join(dp.Dir, "connector.log")
	if log, _ := os.ReadFile(logPath); !strings.Contains(string(log), "added=moi.vehicle") || !strings.Contains(string(log), "keys=log.level") {
		t.Errorf("the log does not name the dataset added, or the key that needs a restart:\n%s", tailFile(logPath, 3000))
	}

	// A bad file: refused, the key named, both datasets still served.
	bad := good + "  moi.bad:\n    backend:\n      type: ftp\n"
	if err := os.WriteFile(dp.ConfigPath, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	hup()
	reloads("error", 1)
	if m := dp.Metrics(); !strings.Contains(m, "mydata_connector_config_last_reload_successful 0\n") {
		t.Error("last_reload_successful is not 0 after a refused reload")
	}
	if log, _ := os.ReadFile(logPath); !strings.Contains(string(log), "configuration reload refused") || !strings.Contains(string(log), "datasets.moi.bad.backend.type") {
		t.Errorf("the log does not say the reload was refused, and for which key:\n%s", tailFile(logPath, 3000))
	}
	res = exchange()
	for _, ds := range []string{"moi.household", "moi.vehicle"} {
		if st, reason, _ := res.Dataset(t, ds); st != "delivered" {
			t.Fatalf("%s after a refused reload: %s %s", ds, st, reason)
		}
	}

	// A transfer in flight when a reload removes its dataset finishes whole, on the backend it started
	// with; the next one is refused.
	bigDir := t.TempDir()
	big := bytes.Repeat([]byte("0123456789abcdef"), 96<<20/16) // 96 MiB: more than the buffers on the way hold
	if err := os.WriteFile(filepath.Join(bigDir, citizenA+".bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	bigEntry := fmt.Sprintf("  moi.big:\n    backend:\n      type: file\n      file:\n        dir: %s\n        pattern: \"{subject}.bin\"\n", bigDir)
	h.Admin("dataset", "add", "--id", "moi.big", "--name-zh", "大檔", "--name-en", "A large file", "--dp", "moi/dp1")
	h.Admin("service", "add", "--id", "bank.big", "--name-zh", "大檔", "--name-en", "Large file", "--sp", "bank/sp1",
		"--datasets", "moi.big", "--purpose", "Read a large file", "--terms", "Terms", "--terms-version", "1", "--redirect-uri", redirect)
	if err := os.WriteFile(dp.ConfigPath, []byte(good+bigEntry), 0o644); err != nil {
		t.Fatal(err)
	}
	hup()
	reloads("ok", 2)
	stream := func() *http.Response {
		t.Helper()
		c := h.NewCitizen()
		c.Login(citizenA, "nhi-card")
		p := NewPKCE()
		code := c.Approve(h.AuthorizeURL("bank.big", redirect, "moi.big", "st", p, nil))
		body := fmt.Sprintf(`{"code":%q,"code_verifier":%q,"redirect_uri":%q}`, code, p.Verifier, redirect)
		resp, err := http.Post("http://"+sp.API+"/v1/exchanges/stream?dataset=moi.big", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := stream()
	first := make([]byte, 1<<20)
	if _, err := io.ReadFull(resp.Body, first); err != nil || resp.StatusCode != 200 {
		t.Fatalf("the start of the large dataset: %d %v", resp.StatusCode, err)
	}
	if err := os.WriteFile(dp.ConfigPath, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	hup()
	reloads("ok", 3)
	// Over QUIC or, had its handshake been slow on a loaded machine, TCP.
	delivered := func(metrics string) bool {
		const counted = `mydata_connector_dp_transfers_total{dataset="moi.big",outcome="delivered",transport="%s"} 1`
		return strings.Contains(metrics, fmt.Sprintf(counted, "quic")) || strings.Contains(metrics, fmt.Sprintf(counted, "tcp"))
	}
	if delivered(dp.Metrics()) {
		t.Fatal("the DP finished the large transfer before the reload: it proves nothing about one in flight")
	}
	rest, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(append(first, rest...), big) || resp.Trailer.Get("X-Mydata-Status") != "delivered" {
		t.Fatalf("the transfer in flight across the reload: %d bytes, %v, status %q", len(first)+len(rest), err, resp.Trailer.Get("X-Mydata-Status"))
	}
	Eventually(t, 10*time.Second, "the DP counts the transfer delivered", func() error {
		if !delivered(dp.Metrics()) {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	resp = stream()
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == 200 && resp.Trailer.Get("X-Mydata-Status") == "delivered" {
		t.Fatalf("a dataset removed by the reload was still served: %d bytes", len(b))
	}
}
