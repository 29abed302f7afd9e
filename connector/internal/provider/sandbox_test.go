package provider_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mydatafed/mydata/connector/internal/backend"
	"github.com/mydatafed/mydata/connector/internal/provider"
	"github.com/mydatafed/mydata/pkg/filetest"
	"github.com/mydatafed/mydata/pkg/ticket"
	"github.com/mydatafed/mydata/pkg/transfer"
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
