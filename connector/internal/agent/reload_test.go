package agent

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mydatafed/mydata/connector/internal/config"
	"github.com/mydatafed/mydata/connector/internal/provider"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestReload runs reloads of a config file one after another: each good file puts its datasets in force,
// each bad one is refused with its key named and leaves the datasets as they were, and a change to a key
// that needs a restart is logged as such.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	dataA, dataB := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, d := range []string{dataA, dataB} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "connector.yaml")
	head := "org: moi\nname: dp-1\ndata_dir: " + filepath.Join(dir, "data") + "\n"
	file := func(name, dir string) string {
		return fmt.Sprintf("  %s:\n    backend:\n      type: file\n      file:\n        dir: %s\n", name, dir)
	}
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(head + "datasets:\n" + file("moi.a", dataA))
	running, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	opened, err := openDatasets(running.Datasets)
	if err != nil {
		t.Fatal(err)
	}
	p, err := provider.New(provider.Config{Datasets: opened, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.CloseDatasets)
	a := &Agent{provider: p}
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	r, err := newReloader(running, func() (config.Config, error) { return config.Load(path) }, a.applyDatasets,
		slog.New(slog.NewTextHandler(&logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name string
		file string
		// wantErr is in the refusal (and its log line); empty for a reload that must succeed.
		wantErr  string
		datasets string
		wantLog  []string
	}{
		{name: "a dataset added", file: head + "datasets:\n" + file("moi.a", dataA) + file("moi.b", dataB),
			datasets: "moi.a,moi.b", wantLog: []string{"configuration reloaded", "added=moi.b"}},
		{name: "unknown key", file: head + "datasets:\n" + file("moi.a", dataA) + "    max_byte: 10\n",
			wantErr: `datasets.moi.a: unknown key "max_byte"`, datasets: "moi.a,moi.b"},
		{name: "YAML that does not parse", file: head + "datasets: [\n",
			wantErr: "yaml", datasets: "moi.a,moi.b"},
		{name: "a value of the wrong type", file: head + "datasets:\n" + file("moi.a", dataA) + "    max_bytes: lots\n",
			wantErr: "datasets.moi.a.max_bytes", datasets: "moi.a,moi.b"},
		{name: "a backend type that does not exist", file: head + "datasets:\n  moi.c:\n    backend:\n      type: ftp\n",
			wantErr: `datasets.moi.c.backend.type: "ftp"`, datasets: "moi.a,moi.b"},
		{name: "a backend that cannot be opened", file: head + "datasets:\n" + file("moi.a", dataA) + file("moi.c", filepath.Join(dir, "missing")),
			wantErr: "datasets.moi.c.backend: backend failure: file.dir", datasets: "moi.a,moi.b"},
		{name: "a dataset removed, and keys that need a restart changed", file: head + "quic:\n  listen: 0.0.0.0:7444\nlog:\n  level: debug\ndatasets:\n" + file("moi.b", dataB),
			datasets: "moi.b", wantLog: []string{"removed=moi.a", "take effect only after a restart", "keys=quic.listen,log.level"}},
		{name: "a dataset changed", file: head + "datasets:\n" + file("moi.b", dataA),
			datasets: "moi.b", wantLog: []string{"changed=moi.b"}},
	}
	var ok, refused float64
	for _, s := range steps {
		logs.Reset()
		write(s.file)
		err := r.reload()
		if s.wantErr == "" {
			ok++
			if err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			if value(t, r.successful) != 1 {
				t.Errorf("%s: last_reload_successful is not 1", s.name)
			}
		} else {
			refused++
			if err == nil || !strings.Contains(err.Error(), s.wantErr) {
				t.Fatalf("%s: err = %v, want %q", s.name, err, s.wantErr)
			}
			if !strings.Contains(logs.String(), "configuration reload refused; the settings in force stay") || !strings.Contains(logs.String(), strings.ReplaceAll(s.wantErr, `"`, `\"`)) {
				t.Errorf("%s: the log does not say the reload was refused, and why:\n%s", s.name, logs.String())
			}
			if value(t, r.successful) != 0 {
				t.Errorf("%s: last_reload_successful is not 0", s.name)
			}
		}
		if got := strings.Join(p.Datasets(), ","); got != s.datasets {
			t.Errorf("%s: datasets in force %s, want %s", s.name, got, s.datasets)
		}
		for _, w := range s.wantLog {
			if !strings.Contains(logs.String(), w) {
				t.Errorf("%s: the log lacks %q:\n%s", s.name, w, logs.String())
			}
		}
		if got := value(t, r.reloads.WithLabelValues(reloadOK)); got != ok {
			t.Errorf("%s: reloads ok = %v, want %v", s.name, got, ok)
		}
		if got := value(t, r.reloads.WithLabelValues(reloadError)); got != refused {
			t.Errorf("%s: reloads error = %v, want %v", s.name, got, refused)
		}
	}
}

// value reads a counter's or a gauge's value.
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if d.Counter != nil {
		return d.GetCounter().GetValue()
	}
	return d.GetGauge().GetValue()
}
