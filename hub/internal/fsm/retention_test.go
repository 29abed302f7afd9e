package fsm

import (
	"path/filepath"
	"testing"
	"time"
)

// TestRecordsPurgeKeepsTheChain: entries older than two years go, the rest still verify from the anchor,
// and a removed first entry after the purge is still found; a purge of younger records is refused.
func TestRecordsPurgeKeepsTheChain(t *testing.T) {
	a := &applier{t: t, f: open(t, filepath.Join(t.TempDir(), "state.db"))}
	now := time.Now().UTC()
	old := now.AddDate(-3, 0, 0)
	for i, at := range []time.Time{old, old.Add(time.Hour), now.Add(-time.Hour), now} {
		w, err := Act(testAdmin, "org add", map[string]string{"i": string(rune('a' + i))}, &OrgAdd{Code: "org" + string(rune('a'+i)), NameZh: "機關", NameEn: "Org", Type: "other", Now: at}, at)
		if err != nil {
			t.Fatal(err)
		}
		if r := a.apply(w); r.Code != OK {
			t.Fatal(r)
		}
	}
	if r := a.apply(&RecordsPurge{Before: now.AddDate(-1, 0, 0), Now: now}); r.Code != Invalid {
		t.Fatalf("a purge of one-year-old records: %+v", r)
	}
	if due, _ := a.f.PurgeDue(now.Add(-RecordRetention)); !due {
		t.Fatal("nothing due")
	}
	if r := a.apply(&RecordsPurge{Before: now.Add(-RecordRetention), Now: now}); r.Code != OK {
		t.Fatal(r)
	}
	entries, _ := a.f.OperatorLog(time.Time{})
	if len(entries) != 2 || entries[0].Seq != 3 {
		t.Fatalf("after the purge: %+v", entries)
	}
	if rep, err := a.f.VerifyOperatorLog(); err != nil || !rep.OK {
		t.Fatalf("verify after the purge: %+v %v", rep, err)
	}
	if _, err := a.f.db.Exec(`DELETE FROM oplog WHERE seq = 3`); err != nil {
		t.Fatal(err)
	}
	if rep, _ := a.f.VerifyOperatorLog(); rep.OK {
		t.Fatal("a removed entry after the anchor verifies")
	}
}
