package provider

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mydatafed/mydata/connector/internal/backend"
)

// fakeBackend answers every fetch with its name as the body, and counts its closes.
type fakeBackend struct {
	name   string
	closed atomic.Int32
}

func (f *fakeBackend) Fetch(ctx context.Context, subject string) (*backend.Result, error) {
	if f.closed.Load() > 0 {
		return nil, errors.New("fetch from a closed backend")
	}
	if subject == "none" {
		return &backend.Result{Status: backend.NoRecord}, nil
	}
	return &backend.Result{Status: backend.Found, Size: int64(len(f.name)), Body: io.NopCloser(strings.NewReader(f.name))}, nil
}

func (f *fakeBackend) Close() error { f.closed.Add(1); return nil }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSetDatasets checks a reload's swap: new lookups see the new set at once, a transfer that has its
// dataset keeps the backend it found, and a replaced backend is closed once its last body is closed and the
// grace is over, never before.
func TestSetDatasets(t *testing.T) {
	oldB, keptB, newB, twoB := &fakeBackend{name: "old"}, &fakeBackend{name: "kept"}, &fakeBackend{name: "new"}, &fakeBackend{name: "two"}
	p, err := New(Config{Datasets: map[string]Dataset{"a.one": {Backend: oldB, MaxBytes: 10}, "a.kept": {Backend: keptB, MaxBytes: 10}},
		Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	p.datasets.grace = 50 * time.Millisecond

	// A transfer in flight: it looked the dataset up and holds an open body from the old backend.
	inflight, ok := p.datasets.lookup("a.one")
	if !ok {
		t.Fatal("a.one not served before the reload")
	}
	res, err := inflight.Backend.Fetch(context.Background(), "A123456789")
	if err != nil {
		t.Fatal(err)
	}
	// Another that looked up before the swap and calls the backend only after it, within the grace.
	late, _ := p.datasets.lookup("a.one")

	kept, _ := p.datasets.lookup("a.kept")
	p.SetDatasets(map[string]Dataset{"a.one": {Backend: newB, MaxBytes: 20}, "a.two": {Backend: twoB, MaxBytes: 20},
		"a.kept": {Backend: kept.Backend, MaxBytes: 10}})

	if got := strings.Join(p.Datasets(), ","); got != "a.kept,a.one,a.two" {
		t.Fatalf("datasets after the swap: %s", got)
	}
	if ds, _ := p.datasets.lookup("a.one"); ds.MaxBytes != 20 || fetchBody(t, ds.Backend) != "new" {
		t.Fatalf("a.one after the swap is not the new one: %+v", ds)
	}
	if fetchBody(t, late.Backend) != "old" {
		t.Fatal("a transfer that looked up before the swap did not get the old backend")
	}
	if r, err := late.Backend.Fetch(context.Background(), "none"); err != nil || r.Status != backend.NoRecord {
		t.Fatalf("a no-record answer from the old backend: %v %v", r, err)
	}
	time.Sleep(3 * p.datasets.grace)
	if oldB.closed.Load() != 0 {
		t.Fatal("the old backend was closed while a transfer still read its body")
	}
	if b, err := io.ReadAll(res.Body); err != nil || string(b) != "old" {
		t.Fatalf("the in-flight body: %q %v", b, err)
	}
	res.Body.Close()
	res.Body.Close() // a second close must not count twice
	waitFor(t, "the old backend closed", func() bool { return oldB.closed.Load() == 1 })
	if _, err := late.Backend.Fetch(context.Background(), "A123456789"); err == nil {
		t.Fatal("a fetch from a retired, closed backend succeeded")
	}
	if keptB.closed.Load() != 0 {
		t.Fatal("a backend the new set reuses was closed")
	}

	// A retired backend with nothing running is closed right after the grace.
	p.SetDatasets(map[string]Dataset{})
	waitFor(t, "the replaced backends closed", func() bool { return newB.closed.Load() == 1 && twoB.closed.Load() == 1 && keptB.closed.Load() == 1 })
	if len(p.Datasets()) != 0 {
		t.Fatalf("datasets after an empty reload: %v", p.Datasets())
	}
	if _, ok := p.datasets.lookup("a.one"); ok {
		t.Fatal("a removed dataset is still served")
	}
}

func fetchBody(t *testing.T, b backend.Backend) string {
	t.Helper()
	res, err := b.Fetch(context.Background(), "A123456789")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return string(body)
}
