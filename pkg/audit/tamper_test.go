package audit

import (
	"database/sql"
	"os"
	"strings"
	"testing"
)

// forge computes a valid-looking row from an entry, as an attacker who knows the format can.
func forge(e Entry, prevHash string) Entry {
	prev, _ := decodeHash(prevHash)
	e.PrevHash = prevHash
	e.Hash = chainHash(prev, e)
	return e
}

func insertRow(t *testing.T, db *sql.DB, e Entry) {
	t.Helper()
	exec(t, db, `INSERT INTO entries (`+entryCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.Seq, e.Time.UnixMilli(), e.Role, e.Dataset, e.Counterpart, e.ConsentID, e.TicketID, e.Subject, e.Bytes,
		e.Outcome, e.Detail, e.PrevHash, e.Hash)
}

func setMeta(t *testing.T, db *sql.DB, h head) {
	t.Helper()
	exec(t, db, `UPDATE meta SET head_seq = ?, head_hash = ?`, h.Seq, h.Hash)
}

func TestVerifyDetectsTampering(t *testing.T) {
	const n = 5
	type tamperFunc func(t *testing.T, db *sql.DB, l *Log, es []Entry)
	editCol := func(col, value string) tamperFunc {
		return func(t *testing.T, db *sql.DB, _ *Log, _ []Entry) {
			exec(t, db, `UPDATE entries SET `+col+` = `+value+` WHERE seq = 3`)
		}
	}
	deleteLast := func(t *testing.T, db *sql.DB, _ *Log, _ []Entry) {
		exec(t, db, `DELETE FROM entries WHERE seq = ?`, n)
	}
	tests := []struct {
		name    string
		tamper  tamperFunc
		wantSeq int64
		want    string // in Problem
	}{
		{"edit time", editCol("time_ms", "time_ms + 1"), 3, "row 3 does not match its hash"},
		{"edit role", editCol("role", "'sp'"), 3, "row 3 does not match its hash"},
		{"edit dataset", editCol("dataset", "'fia.income'"), 3, "row 3 does not match its hash"},
		{"edit counterpart", editCol("counterpart", "'spiffe://mydata.test/org/x/connector/y'"), 3, "row 3 does not match its hash"},
		{"edit consent", editCol("consent_id", "'consent-x'"), 3, "row 3 does not match its hash"},
		{"edit ticket", editCol("ticket_id", "'ticket-x'"), 3, "row 3 does not match its hash"},
		{"edit subject", editCol("subject", "'"+strings.Repeat("ab", 32)+"'"), 3, "row 3 does not match its hash"},
		{"edit bytes", editCol("bytes", "bytes * 2"), 3, "row 3 does not match its hash"},
		{"edit outcome", editCol("outcome", "'failed'"), 3, "row 3 does not match its hash"},
		{"edit detail", editCol("detail", "'timeout'"), 3, "row 3 does not match its hash"},
		{"edit hash", editCol("hash", "'"+strings.Repeat("0", 64)+"'"), 3, "row 3 does not match its hash"},
		{"edit prev_hash", editCol("prev_hash", "'"+strings.Repeat("1", 64)+"'"), 3, "row 3 does not link to row 2"},
		{"delete a middle row", func(t *testing.T, db *sql.DB, _ *Log, _ []Entry) {
			exec(t, db, `DELETE FROM entries WHERE seq = 3`)
		}, 3, "row 3 is missing"},
		{"delete two middle rows", func(t *testing.T, db *sql.DB, _ *Log, _ []Entry) {
			exec(t, db, `DELETE FROM entries WHERE seq IN (2, 3)`)
		}, 2, "rows 2..3 are missing"},
		{"delete the first row", func(t *testing.T, db *sql.DB, _ *Log, _ []Entry) {
			exec(t, db, `DELETE FROM entries WHERE seq = 1`)
		}, 1, "row 1 is missing"},
		{"delete the last row", deleteLast, 5, "rows after seq 4 were removed"},
		{"delete the last row and fix meta", func(t *testing.T, db *sql.DB, l *Log, es []Entry) {
			deleteLast(t, db, l, es)
			setMeta(t, db, head{es[3].Seq, es[3].Hash})
		}, 5, "head file says seq=5"},
		{"delete the last row and fix the head file only", func(t *testing.T, db *sql.DB, l *Log, es []Entry) {
			deleteLast(t, db, l, es)
			if err := writeHead(l.headPath, head{es[3].Seq, es[3].Hash}); err != nil {
				t.Fatal(err)
			}
		}, 5, "meta row says seq=5"},
		{"delete the last row, fix meta, delete the head file", func(t *testing.T, db *sql.DB, l *Log, es []Entry) {
			deleteLast(t, db, l, es)
			setMeta(t, db, head{es[3].Seq, es[3].Hash})
			if err := os.Remove(l.headPath); err != nil {
				t.Fatal(err)
			}
		}, 5, "head file is unreadable"},
		{"delete the head file", func(t *testing.T, _ *sql.DB, l *Log, _ []Entry) {
			if err := os.Remove(l.headPath); err != nil {
				t.Fatal(err)
			}
		}, 6, "head file is unreadable"},
		{"garble the head file", func(t *testing.T, _ *sql.DB, l *Log, _ []Entry) {
			if err := os.WriteFile(l.headPath, []byte(`{"seq":5,"hash":"x"}`), 0o600); err != nil {
				t.Fatal(err)
			}
		}, 6, "malformed"},
		{"delete the meta row", func(t *testing.T, db *sql.DB, _ *Log, _ []Entry) {
			exec(t, db, `DELETE FROM meta`)
		}, 6, "meta row is missing"},
		{"swap two rows' seq", func(t *testing.T, db *sql.DB, _ *Log, _ []Entry) {
			exec(t, db, `UPDATE entries SET seq = -4 WHERE seq = 4`)
			exec(t, db, `UPDATE entries SET seq = 4 WHERE seq = 2`)
			exec(t, db, `UPDATE entries SET seq = 2 WHERE seq = -4`)
		}, 2, "row 2 does not link to row 1"},
		{"swap two rows' contents", func(t *testing.T, db *sql.DB, _ *Log, es []Entry) {
			exec(t, db, `DELETE FROM entries WHERE seq IN (2, 3)`)
			a, b := es[1], es[2]
			a.Seq, b.Seq = 3, 2
			insertRow(t, db, a)
			insertRow(t, db, b)
		}, 2, "row 2 does not link to row 1"},
		{"insert a forged row at the end", func(t *testing.T, db *sql.DB, _ *Log, es []Entry) {
			f := testEntry(99)
			f.Seq, f.Time = 6, es[4].Time
			insertRow(t, db, forge(f, es[4].Hash))
		}, 6, "rows after seq 5 were added"},
		{"insert a forged row with a wrong hash", func(t *testing.T, db *sql.DB, _ *Log, es []Entry) {
			f := forge(testEntry(99), es[4].Hash)
			f.Seq, f.Time = 6, es[4].Time
			insertRow(t, db, f)
		}, 6, "row 6 does not match its hash"},
		{"insert a forged row before the first", func(t *testing.T, db *sql.DB, _ *Log, _ []Entry) {
			f := testEntry(99)
			f.Seq = -1
			insertRow(t, db, forge(f, genesisHash))
		}, -1, "row -1 lies at or before the chain base"},
		{"replace the last row and its hash", func(t *testing.T, db *sql.DB, l *Log, es []Entry) {
			deleteLast(t, db, l, es)
			f := es[4]
			f.Outcome = OutcomeFailed
			insertRow(t, db, forge(f, es[3].Hash))
		}, 5, "row 5 is not the row the anchors recorded"},
		{"delete a prefix and move the base as a purge would", func(t *testing.T, db *sql.DB, _ *Log, es []Entry) {
			exec(t, db, `DELETE FROM entries WHERE seq <= 2`)
			exec(t, db, `UPDATE meta SET base_seq = ?, base_hash = ?`, es[1].Seq, es[1].Hash)
		}, 1, "no purge record says so"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := openTest(t)
			es := appendN(t, l, n)
			wantOK(t, l, n)
			tt.tamper(t, rawDB(t, l), l, es)
			r := mustVerify(t, l)
			if r.OK || r.FirstBadSeq != tt.wantSeq || !strings.Contains(r.Problem, tt.want) {
				t.Fatalf("verify = %+v\nwant FirstBadSeq %d and a problem containing %q", r, tt.wantSeq, tt.want)
			}
			t.Logf("problem: %s", r.Problem)
		})
	}
}

// TestLimitConsistentRewrite documents the limit stated in the package comment: whoever rewrites the rows
// and both anchors consistently is not caught here; the hub's receipts are the witness for that.
func TestLimitConsistentRewrite(t *testing.T) {
	l, _ := openTest(t)
	es := appendN(t, l, 5)
	db := rawDB(t, l)
	exec(t, db, `DELETE FROM entries WHERE seq = 5`)
	setMeta(t, db, head{es[3].Seq, es[3].Hash})
	if err := writeHead(l.headPath, head{es[3].Seq, es[3].Hash}); err != nil {
		t.Fatal(err)
	}
	wantOK(t, l, 4)
}

// TestAppendKeepsEvidence: a removed last row must stay visible after the connector appends again, rather
// than the next append quietly moving the anchors past the gap.
func TestAppendKeepsEvidence(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(t *testing.T, db *sql.DB, l *Log, es []Entry)
		detail string
	}{
		{"last row and meta removed while closed", func(t *testing.T, db *sql.DB, l *Log, es []Entry) {
			exec(t, db, `DELETE FROM entries WHERE seq = 5`)
			setMeta(t, db, head{es[3].Seq, es[3].Hash})
		}, "head file seq=5"},
		{"last row removed", func(t *testing.T, db *sql.DB, l *Log, es []Entry) {
			exec(t, db, `DELETE FROM entries WHERE seq = 5`)
		}, "meta seq=5"},
		{"meta row removed", func(t *testing.T, db *sql.DB, l *Log, es []Entry) {
			exec(t, db, `DELETE FROM meta`)
		}, "meta missing"},
		{"head file removed", func(t *testing.T, db *sql.DB, l *Log, es []Entry) {
			if err := os.Remove(l.headPath); err != nil {
				t.Fatal(err)
			}
		}, "head file unreadable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := openTest(t)
			es := appendN(t, l, 5)
			cfg := l.cfg
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			db, err := sql.Open("sqlite3", "file:"+cfg.Path)
			if err != nil {
				t.Fatal(err)
			}
			tt.tamper(t, db, l, es)
			db.Close()

			l, err = Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			e, err := l.Append(t.Context(), testEntry(6))
			if err != nil {
				t.Fatal(err)
			}
			r := mustVerify(t, l)
			rec := e.Seq - 1 // the anchor_mismatch entry went in first
			if r.OK || r.FirstBadSeq != rec || !strings.Contains(r.Problem, "anchors disagreed") || !strings.Contains(r.Problem, tt.detail) {
				t.Fatalf("verify = %+v\nwant FirstBadSeq %d and the recorded mismatch (%q)", r, rec, tt.detail)
			}
			// And only once: the anchors are in step again, so the next append records nothing.
			e2, err := l.Append(t.Context(), testEntry(7))
			if err != nil || e2.Seq != e.Seq+1 {
				t.Fatalf("next append: %+v %v", e2, err)
			}
		})
	}
}
