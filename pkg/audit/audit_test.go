package audit

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var testKey = bytes.Repeat([]byte{0x5a}, KeySize)

// t0 is where the fake clocks start.
var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// openTest opens a log in a fresh directory with a fake clock at t0.
func openTest(tb testing.TB) (*Log, *fakeClock) {
	tb.Helper()
	clk := &fakeClock{t: t0}
	l, err := Open(Config{Path: filepath.Join(tb.TempDir(), "audit.db"), Now: clk.Now})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	return l, clk
}

func testEntry(i int) Entry {
	return Entry{
		Role:        RoleDP,
		Dataset:     "moi.household",
		Counterpart: "spiffe://mydata.test/org/bank/connector/sp1",
		ConsentID:   fmt.Sprintf("consent-%d", i),
		TicketID:    fmt.Sprintf("ticket-%d", i),
		Subject:     SubjectHash(testKey, "A123456789"),
		Bytes:       int64(1000 + i),
		Outcome:     OutcomeDelivered,
	}
}

func appendN(tb testing.TB, l *Log, n int) []Entry {
	tb.Helper()
	var out []Entry
	for i := range n {
		e, err := l.Append(context.Background(), testEntry(i))
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func mustVerify(t *testing.T, l *Log) Report {
	t.Helper()
	r, err := l.Verify(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func wantOK(t *testing.T, l *Log, rows int64) {
	t.Helper()
	r := mustVerify(t, l)
	if !r.OK || r.Rows != rows || r.FirstBadSeq != 0 || r.Problem != "" {
		t.Fatalf("verify = %+v, want OK with %d rows", r, rows)
	}
}

// rawDB is a second connection for tampering, as someone with the file would.
func rawDB(t *testing.T, l *Log) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+l.cfg.Path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func exec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func TestAppendVerify(t *testing.T) {
	l, clk := openTest(t)
	wantOK(t, l, 0)

	in := testEntry(1)
	in.Seq, in.PrevHash, in.Hash = 99, "bogus", "bogus" // Append owns these
	in.Time = time.Date(2026, 3, 1, 17, 0, 0, 123456789, time.FixedZone("CST", 8*3600))
	e1, err := l.Append(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	if e1.Seq != 1 || e1.PrevHash != genesisHash || !isHash(e1.Hash) {
		t.Fatalf("first entry chain fields: %+v", e1)
	}
	if want := time.Date(2026, 3, 1, 9, 0, 0, 123000000, time.UTC); e1.Time != want {
		t.Fatalf("time = %v, want %v (UTC, ms)", e1.Time, want)
	}

	clk.Set(t0.Add(time.Minute))
	e2, err := l.Append(t.Context(), testEntry(2)) // zero Time: the clock
	if err != nil {
		t.Fatal(err)
	}
	if e2.Seq != 2 || e2.PrevHash != e1.Hash || !e2.Time.Equal(t0.Add(time.Minute)) {
		t.Fatalf("second entry: %+v", e2)
	}
	appendN(t, l, 3)
	wantOK(t, l, 5)

	// Reopening continues the chain.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, err := Open(l.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	wantOK(t, l2, 5)
	if e := appendN(t, l2, 1)[0]; e.Seq != 6 {
		t.Fatalf("seq after reopen = %d", e.Seq)
	}
	wantOK(t, l2, 6)
}

func TestOpenMakesPrivateFiles(t *testing.T) {
	l, _ := openTest(t)
	appendN(t, l, 1)
	for _, p := range []string{l.cfg.Path, l.headPath} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", p, fi.Mode().Perm())
		}
	}
}

func TestAppendValidation(t *testing.T) {
	rawID := "A123456789"
	tests := []struct {
		name string
		mod  func(*Entry)
	}{
		{"empty role", func(e *Entry) { e.Role = "" }},
		{"unknown role", func(e *Entry) { e.Role = "hub" }},
		{"empty outcome", func(e *Entry) { e.Outcome = "" }},
		{"unknown outcome", func(e *Entry) { e.Outcome = "ok" }},
		{"purged is internal", func(e *Entry) { e.Outcome = OutcomePurged; e.Detail = "rows 1..9" }},
		{"anchor_mismatch is internal", func(e *Entry) { e.Outcome = OutcomeAnchorMismatch }},
		{"empty dataset", func(e *Entry) { e.Dataset = "" }},
		{"empty counterpart", func(e *Entry) { e.Counterpart = "" }},
		{"raw subject", func(e *Entry) { e.Subject = rawID }},
		{"upper-case hash subject", func(e *Entry) { e.Subject = strings.ToUpper(e.Subject) }},
		{"negative bytes", func(e *Entry) { e.Bytes = -1 }},
		{"long dataset", func(e *Entry) { e.Dataset = strings.Repeat("d", maxField+1) }},
		{"long counterpart", func(e *Entry) { e.Counterpart = strings.Repeat("c", maxField+1) }},
		{"long consent", func(e *Entry) { e.ConsentID = strings.Repeat("c", maxField+1) }},
		{"long ticket", func(e *Entry) { e.TicketID = strings.Repeat("t", maxField+1) }},
		{"long detail", func(e *Entry) { e.Detail = strings.Repeat("x", maxDetail+1) }},
		{"invalid utf-8", func(e *Entry) { e.ConsentID = "c\xff" }},
		{"newline", func(e *Entry) { e.Detail = "line\nforged" }},
		{"nul", func(e *Entry) { e.TicketID = "t\x00" }},
	}
	l, _ := openTest(t)
	appendN(t, l, 1)
	headBefore, err := os.ReadFile(l.headPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := testEntry(1)
			tt.mod(&e)
			_, err := l.Append(t.Context(), e)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			if strings.Contains(err.Error(), rawID) {
				t.Fatalf("error quotes the raw subject: %v", err)
			}
		})
	}
	wantOK(t, l, 1)
	if headAfter, _ := os.ReadFile(l.headPath); !bytes.Equal(headBefore, headAfter) {
		t.Fatal("a refused entry moved the head file")
	}

	// The bounds themselves are allowed, and so are an empty subject, consent and ticket (failed attempts).
	e := testEntry(2)
	e.Detail = strings.Repeat("é", maxDetail/2)
	e.Dataset = strings.Repeat("d", maxField)
	e.Subject, e.ConsentID, e.TicketID = "", "", ""
	e.Role, e.Outcome = RoleSP, OutcomeRefused
	if _, err := l.Append(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	wantOK(t, l, 2)
}

func TestExportSince(t *testing.T) {
	l, _ := openTest(t)
	var all []Entry
	for i := range 10 {
		e := testEntry(i)
		e.Time = t0.Add(time.Duration(i) * time.Minute)
		if i == 7 {
			e.Detail = `quote " and <tag> & 台灣`
		}
		out, err := l.Append(t.Context(), e)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, out)
	}
	tests := []struct {
		name  string
		since time.Time
		first int // index into all
	}{
		{"zero since: everything", time.Time{}, 0},
		{"exact time included", t0.Add(5 * time.Minute), 5},
		{"sub-millisecond after excludes", t0.Add(5*time.Minute + 500*time.Microsecond), 6},
		{"other zone", t0.Add(3 * time.Minute).In(time.FixedZone("CST", 8*3600)), 3},
		{"after the last", t0.Add(time.Hour), 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			n, err := l.Export(t.Context(), tt.since, &buf)
			if err != nil {
				t.Fatal(err)
			}
			want := all[tt.first:]
			if n != int64(len(want)) {
				t.Fatalf("exported %d, want %d", n, len(want))
			}
			sc := bufio.NewScanner(&buf)
			i := 0
			for sc.Scan() {
				var got Entry
				dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&got); err != nil {
					t.Fatalf("line %d: %v", i, err)
				}
				if !got.Time.Equal(want[i].Time) {
					t.Fatalf("line %d time %v, want %v", i, got.Time, want[i].Time)
				}
				got.Time = want[i].Time
				if got != want[i] {
					t.Fatalf("line %d = %+v, want %+v", i, got, want[i])
				}
				i++
			}
			if i != len(want) {
				t.Fatalf("%d lines, want %d", i, len(want))
			}
			if strings.Contains(buf.String(), "A123456789") {
				t.Fatal("export holds a raw subject")
			}
		})
	}
}

func TestRetention(t *testing.T) {
	tests := []struct {
		name      string
		retention time.Duration
		allow     bool
		ok        bool
	}{
		{"default", 0, false, true},
		{"minimum", MinRetention, false, true},
		{"three years", 3 * 365 * 24 * time.Hour, false, true},
		{"just under two years", MinRetention - time.Hour, false, false},
		{"one day", 24 * time.Hour, false, false},
		{"one day allowed for tests", 24 * time.Hour, true, true},
		{"negative even when allowed", -time.Hour, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Open(Config{Path: filepath.Join(t.TempDir(), "a.db"), Retention: tt.retention, AllowShortRetention: tt.allow})
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if err == nil {
				if tt.retention == 0 && l.cfg.Retention != MinRetention {
					t.Errorf("default retention %v", l.cfg.Retention)
				}
				l.Close()
			}
		})
	}
	if _, err := Open(Config{}); err == nil {
		t.Error("empty path accepted")
	}
}

func TestConcurrentAppend(t *testing.T) {
	l, _ := openTest(t)
	const workers, per = 8, 200
	seqs := make(chan int64, workers*per)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				e, err := l.Append(t.Context(), testEntry(w*per+i))
				if err != nil {
					t.Error(err)
					return
				}
				seqs <- e.Seq
			}
		})
	}
	wg.Wait()
	close(seqs)
	seen := make(map[int64]bool)
	for s := range seqs {
		if seen[s] || s < 1 || s > workers*per {
			t.Fatalf("seq %d repeated or out of range", s)
		}
		seen[s] = true
	}
	wantOK(t, l, workers*per)
}

// TestTwoHandles stands for the connector daemon appending while the audit CLI, another process, appends or
// verifies the same files: every Verify must pass, and no append may mistake the other's for tampering.
func TestTwoHandles(t *testing.T) {
	a, _ := openTest(t)
	b, err := Open(a.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var wg sync.WaitGroup
	for _, l := range []*Log{a, b} {
		wg.Go(func() {
			for i := range 150 {
				if _, err := l.Append(t.Context(), testEntry(i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
		wg.Go(func() {
			for range 20 {
				r, err := l.Verify(t.Context())
				if err != nil || !r.OK {
					t.Errorf("verify during appends: %+v %v", r, err)
					return
				}
			}
		})
	}
	wg.Wait()
	wantOK(t, a, 300)
	wantOK(t, b, 300)
}

func TestSubjectHash(t *testing.T) {
	other := bytes.Repeat([]byte{0x33}, KeySize)
	subject := "A123456789"
	h := SubjectHash(testKey, subject)
	if !isHash(h) {
		t.Fatalf("hash %q is not 64 lower-case hex digits", h)
	}
	if h != SubjectHash(testKey, subject) {
		t.Fatal("not deterministic")
	}
	if h == SubjectHash(other, subject) {
		t.Fatal("same hash under two keys")
	}
	if h == SubjectHash(testKey, "B123456789") {
		t.Fatal("same hash for two subjects")
	}
	if strings.Contains(h, subject) || strings.Contains(h, "123456789") {
		t.Fatal("hash contains the subject")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("short key accepted")
		}
	}()
	SubjectHash(testKey[:16], subject)
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.key")
	k1, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(k1) != KeySize || bytes.Equal(k1, make([]byte, KeySize)) {
		t.Fatalf("key %x", k1)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	k2, err := LoadOrCreateKey(path)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("second load: %x %v", k2, err)
	}
	other, err := LoadOrCreateKey(filepath.Join(dir, "other.key"))
	if err != nil || bytes.Equal(other, k1) {
		t.Fatalf("a second key file gave the same key or failed: %v", err)
	}

	t.Run("readable by others", func(t *testing.T) {
		if err := os.Chmod(path, 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(path, 0o600)
		if _, err := LoadOrCreateKey(path); err == nil {
			t.Fatal("world-readable key accepted")
		}
	})
	t.Run("wrong size", func(t *testing.T) {
		p := filepath.Join(dir, "short.key")
		if err := os.WriteFile(p, []byte("short"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadOrCreateKey(p); err == nil {
			t.Fatal("short key file accepted")
		}
	})
	t.Run("racing creators agree", func(t *testing.T) {
		p := filepath.Join(dir, "race.key")
		keys := make([][]byte, 8)
		var wg sync.WaitGroup
		for i := range keys {
			wg.Go(func() {
				k, err := LoadOrCreateKey(p)
				if err != nil {
					t.Error(err)
				}
				keys[i] = k
			})
		}
		wg.Wait()
		for _, k := range keys[1:] {
			if !bytes.Equal(k, keys[0]) {
				t.Fatal("racing creators got different keys")
			}
		}
		if m, _ := filepath.Glob(p + ".tmp*"); len(m) != 0 {
			t.Fatalf("temporary files left: %v", m)
		}
	})
}

func BenchmarkAppend(b *testing.B) {
	l, _ := openTest(b)
	e := testEntry(1)
	e.Time = t0
	ctx := context.Background()
	for b.Loop() {
		if _, err := l.Append(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendParallel(b *testing.B) {
	l, _ := openTest(b)
	e := testEntry(1)
	e.Time = t0
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Append(ctx, e); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	l, _ := openTest(b)
	appendN(b, l, 10000)
	ctx := context.Background()
	for b.Loop() {
		if r, err := l.Verify(ctx); err != nil || !r.OK {
			b.Fatal(r, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/10000, "ns/row")
}

func TestAppendCancelled(t *testing.T) {
	l, _ := openTest(t)
	appendN(t, l, 1)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := l.Append(ctx, testEntry(2)); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	wantOK(t, l, 1)
}

// TestConcurrentAppends checks the group commit: appends from many goroutines at once share
// transactions, yet each gets its own entry back, every entry is in the chain once, and the chain verifies.
func TestConcurrentAppends(t *testing.T) {
	l, _ := openTest(t)
	const n = 200
	var wg sync.WaitGroup
	got := make([]Entry, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { got[i], errs[i] = l.Append(context.Background(), testEntry(i)) })
	}
	wg.Wait()
	seqs := map[int64]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("append %d: %v", i, errs[i])
		}
		if got[i].TicketID != fmt.Sprintf("ticket-%d", i) || got[i].Seq < 1 || got[i].Seq > n || seqs[got[i].Seq] {
			t.Fatalf("append %d got back %+v", i, got[i])
		}
		seqs[got[i].Seq] = true
	}
	wantOK(t, l, n)
}
