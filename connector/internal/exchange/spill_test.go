package exchange

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// content is n bytes of a marker that is easy to find in a file.
func content(n int) []byte {
	return bytes.Repeat([]byte("PLAINTEXT-MARKER"), n/16+1)[:n]
}

// spilled writes b through a spill writer in uneven pieces, as deliveries arrive, and finishes it.
func spilled(t *testing.T, dir string, threshold int64, b []byte) ([]byte, *spillFile) {
	t.Helper()
	w := &spillWriter{dir: dir, threshold: threshold}
	for rest := b; len(rest) > 0; {
		n := min(len(rest), 5000)
		if _, err := w.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	mem, f, err := w.finish()
	if err != nil {
		t.Fatal(err)
	}
	return mem, f
}

func spillFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, spillPrefix+"*"))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func readSpill(f *spillFile) ([]byte, error) {
	r, err := f.open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// TestSpillThreshold: up to the threshold a delivery stays in memory and nothing is written; past it, all
// of it goes to a file and none stays in memory.
func TestSpillThreshold(t *testing.T) {
	for _, tc := range []struct {
		name      string
		size      int
		threshold int64
		spills    bool
	}{
		{"at the threshold", 1000, 1000, false},
		{"one byte over", 1001, 1000, true},
		{"zero threshold", 1, 0, true},
		{"exactly one chunk", spillChunk, 10, true},
		{"chunks and a bit", 3*spillChunk + 7, 1 << 10, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			want := content(tc.size)
			mem, f := spilled(t, dir, tc.threshold, want)
			if !tc.spills {
				if f != nil || !bytes.Equal(mem, want) || len(spillFiles(t, dir)) != 0 {
					t.Fatalf("a delivery within the threshold: file %v, %d bytes in memory", f, len(mem))
				}
				return
			}
			if f == nil || mem != nil {
				t.Fatalf("a delivery over the threshold: file %v, %d bytes in memory", f, len(mem))
			}
			if f.size != int64(tc.size) {
				t.Fatalf("size %d, want %d", f.size, tc.size)
			}
			got, err := readSpill(f)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("read back %d bytes, %v; want the %d written", len(got), err, tc.size)
			}
		})
	}
}

// TestSpillFileIsSealed: the file holds no plaintext, each file has its own key, and a file cut at a chunk
// boundary or with a byte changed does not read back as whole.
func TestSpillFileIsSealed(t *testing.T) {
	dir := t.TempDir()
	want := content(4*spillChunk + 100)
	_, f := spilled(t, dir, 0, want)
	_, g := spilled(t, dir, 0, want)
	raw, err := os.ReadFile(f.path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("MARKER")) {
		t.Fatal("the spill file holds plaintext")
	}
	if rawG, _ := os.ReadFile(g.path); bytes.Equal(raw[:64], rawG[:64]) {
		t.Fatal("two files of the same content start alike: not a fresh key per file")
	}
	if fi, _ := os.Stat(f.path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("spill file mode %v, want 0600", fi.Mode().Perm())
	}

	sealedChunk := spillChunk + f.aead.Overhead()
	for _, tc := range []struct {
		name   string
		mangle func([]byte) []byte
	}{
		{"cut at a chunk boundary", func(b []byte) []byte { return b[:2*sealedChunk] }},
		{"last chunk dropped", func(b []byte) []byte { return b[:4*sealedChunk] }},
		{"a byte changed", func(b []byte) []byte { c := bytes.Clone(b); c[sealedChunk+5] ^= 1; return c }},
		{"chunks swapped", func(b []byte) []byte {
			c := bytes.Clone(b)
			copy(c[:sealedChunk], b[sealedChunk:2*sealedChunk])
			copy(c[sealedChunk:2*sealedChunk], b[:sealedChunk])
			return c
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(f.path, tc.mangle(raw), 0o600); err != nil {
				t.Fatal(err)
			}
			if got, err := readSpill(f); err == nil {
				t.Fatalf("a mangled file read back as %d bytes without an error", len(got))
			}
		})
	}
}

// TestSpillAbort: a delivery that fails leaves no file.
func TestSpillAbort(t *testing.T) {
	dir := t.TempDir()
	w := &spillWriter{dir: dir, threshold: 10}
	if _, err := w.Write(content(3 * spillChunk)); err != nil {
		t.Fatal(err)
	}
	if len(spillFiles(t, dir)) != 1 {
		t.Fatal("no spill file while writing")
	}
	w.abort()
	if left := spillFiles(t, dir); len(left) != 0 {
		t.Fatalf("left after abort: %v", left)
	}
}

func testManager(t *testing.T, dir string) (*Manager, *API) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	m, err := New(Config{Registerer: prometheus.NewRegistry(), SpillDir: dir, SpillThreshold: 1 << 10, Keep: time.Minute, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAPI(m, "", log)
	if err != nil {
		t.Fatal(err)
	}
	return m, a
}

// deliveredExchange registers a complete exchange whose one dataset, want, was spilled under dir.
func deliveredExchange(t *testing.T, m *Manager, want []byte) (*Exchange, *spillFile) {
	t.Helper()
	_, f := spilled(t, m.cfg.SpillDir, m.cfg.SpillThreshold, want)
	sum := sha256.Sum256(want)
	ex := &Exchange{ID: newID(), State: "complete", settled: time.Now(), Created: time.Now(), changed: make(chan struct{}), spill: true}
	ex.Datasets = []*Dataset{{Dataset: "moi.household", Status: StatusDelivered, ContentType: "application/json", Size: int64(len(want)),
		SHA256: hex.EncodeToString(sum[:]), Verified: true, file: f, ContentURL: ContentPath(ex.ID, "moi.household")}}
	m.mu.Lock()
	m.byID[ex.ID] = ex
	m.mu.Unlock()
	return ex, f
}

// TestSpilledContentServedOnce: GET /v1/exchanges/{id} gives a content URL instead of the content; a
// real HTTP client reads the content there in full; the file is then gone and the URL answers 410.
func TestSpilledContentServedOnce(t *testing.T) {
	dir := t.TempDir()
	m, a := testManager(t, dir)
	want := content(5*spillChunk + 3)
	ex, f := deliveredExchange(t, m, want)
	srv := httptest.NewServer(a.srv.Handler)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/v1/exchanges/" + ex.ID)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Datasets []struct {
			Content    []byte `json:"content"`
			ContentURL string `json:"content_url"`
			Size       int64  `json:"size"`
		} `json:"datasets"`
	}
	err = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if err != nil || len(got.Datasets) != 1 || got.Datasets[0].Content != nil || got.Datasets[0].ContentURL != ContentPath(ex.ID, "moi.household") {
		t.Fatalf("exchange answer %+v, %v", got, err)
	}

	resp, err = http.Get(srv.URL + got.Datasets[0].ContentURL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
		t.Fatalf("content: %s, %d bytes, %v", resp.Status, len(body), err)
	}
	if resp.ContentLength != int64(len(want)) || resp.Header.Get("X-Mydata-SHA256") == "" {
		t.Fatalf("content headers: length %d, %v", resp.ContentLength, resp.Header)
	}
	if _, err := os.Stat(f.path); !os.IsNotExist(err) {
		t.Fatalf("the spill file is still there after a full read: %v", err)
	}
	resp, err = http.Get(srv.URL + got.Datasets[0].ContentURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGone {
		t.Fatalf("second read: %s, want 410", resp.Status)
	}
	if snap := ex.Snapshot(); snap.Datasets[0].ContentURL != "" {
		t.Fatal("the exchange still gives a content URL")
	}
}

// TestSpillRemovedAfterKeep: the exchange dropped after exchange.keep takes its file with it; so does
// Purge, and content arriving after Purge is not kept.
func TestSpillRemovedAfterKeep(t *testing.T) {
	dir := t.TempDir()
	m, _ := testManager(t, dir)
	ex, f := deliveredExchange(t, m, content(2*spillChunk))
	removed := 0
	f.onRemove = func() { removed++ } // what keeps mydata_connector_sp_spill_bytes
	m.drop()
	if _, ok := m.Get(ex.ID); !ok || len(spillFiles(t, dir)) != 1 {
		t.Fatal("dropped before exchange.keep")
	}
	ex.mu.Lock()
	ex.settled = time.Now().Add(-m.cfg.Keep - time.Second)
	ex.mu.Unlock()
	m.drop()
	if _, ok := m.Get(ex.ID); ok {
		t.Fatal("exchange kept past exchange.keep")
	}
	if _, err := os.Stat(f.path); !os.IsNotExist(err) {
		t.Fatalf("spill file kept past exchange.keep: %v", err)
	}
	ex.Purge()
	if removed != 1 {
		t.Fatalf("onRemove called %d times, want once", removed)
	}

	ex2, f2 := deliveredExchange(t, m, content(2*spillChunk))
	ex2.Purge()
	if _, err := os.Stat(f2.path); !os.IsNotExist(err) {
		t.Fatal("spill file kept after Purge")
	}
	_, f3 := spilled(t, dir, 0, content(100))
	ex2.set(ex2.Datasets[0], func(d *Dataset) { d.file = f3 })
	if _, err := os.Stat(f3.path); !os.IsNotExist(err) || ex2.Datasets[0].file != nil {
		t.Fatal("a spill file arriving after Purge was kept")
	}
}

// TestSpillLeftoversRemovedAtStart: spill files of an earlier process are removed when the manager
// starts (their keys are gone); other files are left alone.
func TestSpillLeftoversRemovedAtStart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spill")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	_, f := spilled(t, dir, 0, content(100))
	other := filepath.Join(dir, "README")
	if err := os.WriteFile(other, []byte("not a spill file"), 0o600); err != nil {
		t.Fatal(err)
	}
	testManager(t, dir)
	if _, err := os.Stat(f.path); !os.IsNotExist(err) {
		t.Fatal("a leftover spill file survived the start")
	}
	if _, err := os.Stat(other); err != nil {
		t.Fatal("a file that is not a spill file was removed")
	}
	// A missing directory is made.
	fresh := filepath.Join(t.TempDir(), "new", "spill")
	testManager(t, fresh)
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("spill directory not made 0700: %v", err)
	}
}
