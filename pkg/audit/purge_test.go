package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

const day = 24 * time.Hour

// appendAt appends one entry per offset from t0.
func appendAt(t *testing.T, l *Log, days ...int) []Entry {
	t.Helper()
	var out []Entry
	for i, d := range days {
		e := testEntry(i)
		e.Time = t0.Add(time.Duration(d) * day)
		got, err := l.Append(t.Context(), e)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, got)
	}
	return out
}

// lastEntry exports the log and returns its last entry.
func lastEntry(t *testing.T, l *Log) Entry {
	t.Helper()
	var buf bytes.Buffer
	if _, err := l.Export(t.Context(), time.Time{}, &buf); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var e Entry
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &e); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestPurge(t *testing.T) {
	// The clock is set so that the cutoff is t0 + 5 days.
	now := t0.Add(MinRetention + 5*day)
	tests := []struct {
		name       string
		days       []int
		wantPurged int64
		wantDetail string // "" when nothing is purged
	}{
		{"all old", []int{0, 1, 2, 3}, 4, "rows 1..4"},
		{"an old prefix", []int{0, 1, 2, 30, 31}, 3, "rows 1..3"},
		{"exactly at the cutoff is kept", []int{0, 5, 6}, 1, "rows 1..1"},
		{"an old row after a young one is kept", []int{0, 1, 30, 2, 31}, 2, "rows 1..2"},
		{"nothing old", []int{30, 31}, 0, ""},
		{"empty log", nil, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, clk := openTest(t)
			es := appendAt(t, l, tt.days...)
			clk.Set(now)
			n, err := l.Purge(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if n != tt.wantPurged {
				t.Fatalf("purged %d, want %d", n, tt.wantPurged)
			}
			rows := int64(len(es)) - n
			if tt.wantDetail != "" {
				rows++
				p := lastEntry(t, l)
				if p.Outcome != OutcomePurged || p.Detail != tt.wantDetail || p.Seq != int64(len(es))+1 || !p.Time.Equal(now) {
					t.Fatalf("purge entry %+v, want detail %q", p, tt.wantDetail)
				}
			}
			wantOK(t, l, rows)

			// Purging again at once finds nothing and writes nothing.
			if n, err := l.Purge(t.Context()); err != nil || n != 0 {
				t.Fatalf("second purge: %d %v", n, err)
			}
			wantOK(t, l, rows)

			// The chain goes on from the base, and a reopened log still verifies.
			appendN(t, l, 2)
			rows += 2
			wantOK(t, l, rows)
			l.Close()
			l2, err := Open(l.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer l2.Close()
			wantOK(t, l2, rows)
		})
	}
}

func TestPurgeTwice(t *testing.T) {
	l, clk := openTest(t)
	appendAt(t, l, 0, 1, 2, 40, 41) // rows 1..5
	clk.Set(t0.Add(MinRetention + 10*day))
	if n, err := l.Purge(t.Context()); err != nil || n != 3 {
		t.Fatalf("first purge: %d %v", n, err)
	}
	appendN(t, l, 1) // row 7 (row 6 is the purge entry), stamped now
	wantOK(t, l, 4)

	// Later everything up to the first purge entry and beyond is old: the second purge removes the first
	// purge's record too, and its own record carries the chain base.
	clk.Set(t0.Add(2*MinRetention + 20*day))
	n, err := l.Purge(t.Context())
	if err != nil || n != 4 {
		t.Fatalf("second purge: %d %v", n, err)
	}
	if p := lastEntry(t, l); p.Outcome != OutcomePurged || p.Detail != "rows 4..7" || p.Seq != 8 {
		t.Fatalf("second purge entry %+v", p)
	}
	wantOK(t, l, 1)
}

func TestPurgeTamper(t *testing.T) {
	t.Run("base moved past the purge record", func(t *testing.T) {
		l, clk := openTest(t)
		es := appendAt(t, l, 0, 1, 2, 40, 41)
		clk.Set(t0.Add(MinRetention + 10*day))
		if _, err := l.Purge(t.Context()); err != nil {
			t.Fatal(err)
		}
		db := rawDB(t, l)
		exec(t, db, `DELETE FROM entries WHERE seq = 4`)
		exec(t, db, `UPDATE meta SET base_seq = 4, base_hash = ?`, es[3].Hash)
		r := mustVerify(t, l)
		if r.OK || r.FirstBadSeq != 4 || !strings.Contains(r.Problem, "says rows up to 3 were purged") {
			t.Fatalf("verify = %+v", r)
		}
	})
	t.Run("refuses to purge rows that do not verify", func(t *testing.T) {
		l, clk := openTest(t)
		appendAt(t, l, 0, 1, 2, 40)
		exec(t, rawDB(t, l), `UPDATE entries SET dataset = 'other' WHERE seq = 2`)
		clk.Set(t0.Add(MinRetention + 10*day))
		n, err := l.Purge(t.Context())
		if !errors.Is(err, ErrDamaged) || n != 0 || !strings.Contains(err.Error(), "row 2 does not match its hash") {
			t.Fatalf("purge = %d, %v; want ErrDamaged", n, err)
		}
		if r := mustVerify(t, l); r.OK || r.FirstBadSeq != 2 || r.Rows != 4 {
			t.Fatalf("evidence lost: %+v", r)
		}
	})
	t.Run("refuses to purge across a gap", func(t *testing.T) {
		l, clk := openTest(t)
		appendAt(t, l, 0, 1, 2, 40)
		exec(t, rawDB(t, l), `DELETE FROM entries WHERE seq = 3`)
		clk.Set(t0.Add(MinRetention + 10*day))
		if _, err := l.Purge(t.Context()); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "row 3 is missing") {
			t.Fatalf("purge: %v; want ErrDamaged", err)
		}
	})
}

// TestPurgeClearsOldMismatch: a recorded anchor mismatch (a crash, say) keeps Verify failing until it is
// older than the retention period, when it is purged like any row and the log verifies again.
func TestPurgeClearsOldMismatch(t *testing.T) {
	l, clk := openTest(t)
	appendN(t, l, 3)
	exec(t, rawDB(t, l), `DELETE FROM entries WHERE seq = 3`)
	clk.Set(t0.Add(day))
	appendN(t, l, 1) // records the mismatch at seq 3, then itself at 4
	if r := mustVerify(t, l); r.OK || r.FirstBadSeq != 3 {
		t.Fatalf("verify = %+v", r)
	}
	clk.Set(t0.Add(MinRetention + 2*day))
	if n, err := l.Purge(t.Context()); err != nil || n != 4 {
		t.Fatalf("purge: %d %v", n, err)
	}
	wantOK(t, l, 1)
}
