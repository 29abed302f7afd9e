package federationtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ExchangeResult is the SP connector's answer, as its local API sends it.
type ExchangeResult struct {
	ID          string `json:"id"`
	ConsentID   string `json:"consent_id"`
	AAL         int    `json:"assurance_level"`
	LoginMethod string `json:"login_method"`
	State       string `json:"state"`
	Datasets    []struct {
		Dataset     string `json:"dataset"`
		Status      string `json:"status"`
		Reason      string `json:"reason"`
		RetryAfter  int    `json:"retry_after"`
		ContentType string `json:"content_type"`
		Size        int64  `json:"size"`
		SHA256      string `json:"sha256"`
		Verified    bool   `json:"verified"`
		Content     []byte `json:"content"`
		ContentURL  string `json:"content_url"`
	} `json:"datasets"`
}

// Dataset finds one dataset's result.
func (r *ExchangeResult) Dataset(t testing.TB, id string) (status, reason string, content []byte) {
	t.Helper()
	for _, d := range r.Datasets {
		if d.Dataset == id {
			return d.Status, d.Reason, d.Content
		}
	}
	t.Fatalf("exchange has no dataset %s: %+v", id, r)
	return "", "", nil
}

// Exchange posts a code to the connector's local API, as the SP's web application does.
func (c *Connector) Exchange(code, verifier, redirect string) (*ExchangeResult, int, string) {
	c.t.Helper()
	body, _ := json.Marshal(map[string]string{"code": code, "code_verifier": verifier, "redirect_uri": redirect})
	resp, err := http.Post("http://"+c.API+"/v1/exchanges", "application/json", bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode, string(b)
	}
	var r ExchangeResult
	if err := json.Unmarshal(b, &r); err != nil {
		c.t.Fatalf("exchange answer: %v\n%s", err, b)
	}
	return &r, resp.StatusCode, string(b)
}

// GetExchange reads an exchange's current state.
func (c *Connector) GetExchange(id string) *ExchangeResult {
	c.t.Helper()
	resp, err := http.Get("http://" + c.API + "/v1/exchanges/" + id)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var r ExchangeResult
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		c.t.Fatal(err)
	}
	return &r
}

// Audit runs `mydata-connector audit` with args.
func (c *Connector) Audit(args ...string) (string, error) {
	return Run(c.Hub.ConnectorBin, append([]string{"audit", args[0], "--config", c.ConfigPath}, args[1:]...)...)
}

// FileDataset writes per-subject files for a file backend and returns the YAML for the dataset.
func FileDataset(t testing.TB, id string, records map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for subject, body := range records {
		if err := os.WriteFile(filepath.Join(dir, subject+".json"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return fmt.Sprintf("  %s:\n    backend:\n      type: file\n      file:\n        dir: %s\n", id, dir)
}

// DatasetsYAML wraps dataset entries in the datasets key.
func DatasetsYAML(entries ...string) string { return "datasets:\n" + strings.Join(entries, "") }

// HubFiles reads every file under the hub's data directory.
func (h *Hub) HubFiles(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	filepath.WalkDir(h.DataDir(), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, rerr := os.ReadFile(p)
			if rerr == nil {
				out[p] = b
			}
		}
		return nil
	})
	return out
}
