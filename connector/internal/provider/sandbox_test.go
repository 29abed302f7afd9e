package provider_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mydatafed/mydata/connector/internal/backend"
	"github.com/mydatafed/mydata/connector/internal/provider"
	"github.com/mydatafed/mydata/pkg/filetest"
	"github.com/mydatafed/mydata/pkg/ticket"
	"github.com/mydatafed/mydata/pkg/transfer"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestSandboxTicketsNeverReachRealData: a sandbox ticket is answered from the dataset's synthetic backend
// and a real ticket from the real one; without a synthetic backend a sandbox ticket is refused, though the
// real backend holds the citizen's data.
func TestSandboxTicketsNeverReachRealData(t *testing.T) {
	f := newFixture(t)
	e := newEnv(t, f, 1<<20)
	e.write(t, map[string][]byte{dataKey: household})
	synthetic := []byte(`{"household":[{"name":"測試員","relation":"self"}]}`)
	sandboxDir := filepath.Join(t.TempDir(), "sandbox")
	if err := os.Mkdir(sandboxDir, 0o700); err != nil {
		t.Fatal(err)
	}
	filetest.WriteTree(t, sandboxDir, map[string][]byte{dataKey: synthetic})
	open := func(dir string) backend.Backend {
		var bc backend.Config
		bc.Type, bc.File.Dir = backend.TypeFile, dir
		b, err := backend.New(bc)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	n := 0
	present := func(stage string) answer {
		n++
		c := f.claims()
		c.ID, c.Stage = fmt.Sprintf("sandbox-test-%d", n), stage
		return e.present(t, &stream{}, f.sign(t, c), spID, c)
	}

	// The real backend only: a sandbox ticket is refused, not answered from it.
	a := present(ticket.StageSandbox)
	if a.err != nil || a.res.Header.Status != transfer.Refused || !strings.Contains(a.res.Header.Message, "no sandbox backend") {
		t.Fatalf("sandbox ticket without a sandbox backend: %+v", a)
	}

	e.p.SetDatasets(map[string]provider.Dataset{
		dataset:                      {Backend: open(e.files), MaxBytes: 1 << 20},
		provider.SandboxKey(dataset): {Backend: open(sandboxDir), MaxBytes: 1 << 20},
	})
	t.Cleanup(e.p.CloseDatasets)
	if a := present(ticket.StageSandbox); a.err != nil || a.res.Header.Status != transfer.OK || !bytes.Equal(a.content, synthetic) {
		t.Fatalf("sandbox ticket: %+v %s", a, a.content)
	}
	if a := present(""); a.err != nil || a.res.Header.Status != transfer.OK || !bytes.Equal(a.content, household) {
		t.Fatalf("real ticket: %+v %s", a, a.content)
	}
	if ids := e.p.Datasets(); len(ids) != 1 || ids[0] != dataset {
		t.Fatalf("datasets served: %v", ids)
	}
}

// directoryKeys is the directory as the provider sees it: the hub's ticket keys, and what it withdrew.
type directoryKeys struct {
	ticket.Keys
	withdrawn map[string]string // "on/id" → status
}

func (d directoryKeys) Withdrawn(on, id string) string { return d.withdrawn[on+"/"+id] }

// TestWithdrawnRefused: a ticket signed before its service was terminated, or its dataset suspended, is
// refused once the directory says so; another service's ticket is served.
func TestWithdrawnRefused(t *testing.T) {
	f := newFixture(t)
	e := newEnv(t, f, 1<<20)
	e.write(t, map[string][]byte{dataKey: household})
	dir := directoryKeys{Keys: f.keys, withdrawn: map[string]string{"service/bank.card": "terminated"}}
	p, err := provider.New(provider.Config{
		Self: spiffeid.RequireFromString(dpID), Datasets: map[string]provider.Dataset{dataset: {Backend: openFile(t, e.files), MaxBytes: 1 << 20}},
		Keys: dir, HPKE: f.dpKey, SVID: f.svid, Tickets: e.tickets, Audit: e.audit, AuditKey: e.auditKey, Receipts: e.outbox,
		Log: slog.New(slog.DiscardHandler), Now: func() time.Time { return e.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	e.p = p
	for i, tc := range []struct{ service, withdrawDataset, want string }{
		{"bank.card", "", "service bank.card is terminated"},
		{"bank.loan", "", ""},
		{"bank.loan", "suspended", "dataset moi.household is suspended"},
	} {
		if tc.withdrawDataset != "" {
			dir.withdrawn["dataset/"+dataset] = tc.withdrawDataset
		}
		c := f.claims()
		c.ID, c.Service = fmt.Sprintf("withdrawn-test-%d", i), tc.service
		a := e.present(t, &stream{}, f.sign(t, c), spID, c)
		if tc.want == "" {
			if a.err != nil || a.res.Header.Status != transfer.OK {
				t.Fatalf("%s: %+v", tc.service, a)
			}
			continue
		}
		if a.err != nil || a.res.Header.Status != transfer.Refused || a.res.Header.Message != tc.want {
			t.Fatalf("%s: %+v", tc.service, a)
		}
	}
}

func openFile(t *testing.T, dir string) backend.Backend {
	t.Helper()
	var bc backend.Config
	bc.Type, bc.File.Dir = backend.TypeFile, dir
	b, err := backend.New(bc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}
