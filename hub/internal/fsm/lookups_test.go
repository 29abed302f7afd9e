package fsm

import (
	"path/filepath"
	"testing"
	"time"
)

// TestLookupsFollowCommands checks the registry cache against what a reader must see: a change by any
// registry or catalogue command at once, and copies that a caller may modify freely.
func TestLookupsFollowCommands(t *testing.T) {
	a := &applier{t: t, f: open(t, filepath.Join(t.TempDir(), "state.db"))}
	now := time.Now().UTC().Truncate(time.Millisecond)
	a.apply(&OrgAdd{Code: "moi", NameZh: "內政部", NameEn: "MOI", Type: "central-agency", Now: now})

	if o, err := a.f.Org("nope"); err != nil || o != nil {
		t.Fatalf("unknown org: %v %v", o, err)
	}
	o, err := a.f.Org("moi")
	if err != nil || o == nil || o.NameEn != "MOI" {
		t.Fatalf("org: %+v %v", o, err)
	}
	o.NameEn = "changed by a caller"
	if o2, _ := a.f.Org("moi"); o2.NameEn != "MOI" {
		t.Fatalf("a caller's change reached the cache: %q", o2.NameEn)
	}

	// A write behind the state machine's back is not seen while the cache holds the row: proof that it is
	// cached, so that the steps below test the invalidation rather than a fresh read.
	if _, err := a.f.db.Exec(`UPDATE orgs SET name_en = 'Behind the back' WHERE code = 'moi'`); err != nil {
		t.Fatal(err)
	}
	if o, _ := a.f.Org("moi"); o.NameEn != "MOI" {
		t.Fatalf("the org was read again: %q", o.NameEn)
	}
	// An exchange's commands keep the cache ...
	a.apply(&ReceiptsAdd{Receipts: []Receipt{{TicketID: "t", Role: "dp", ConsentID: "none", Dataset: "d", Outcome: "delivered"}}})
	if o, _ := a.f.Org("moi"); o.NameEn != "MOI" {
		t.Fatalf("a receipt emptied the cache: %q", o.NameEn)
	}
	// ... and a registry command empties it, so the unknown org now added is found too.
	a.apply(&OrgAdd{Code: "fia", NameZh: "財政資訊中心", NameEn: "FIA", Type: "central-agency", Now: now})
	if o, _ := a.f.Org("moi"); o.NameEn != "Behind the back" {
		t.Fatalf("after a registry command the org is still %q", o.NameEn)
	}
	if o, _ := a.f.Org("fia"); o == nil {
		t.Fatal("an org added after a miss was cached is not found")
	}
}

// A value read before a command committed must not be stored after it: it may be stale.
func TestLookupsDropStaleValues(t *testing.T) {
	var l lookups
	_, _, gen := l.get("k")
	l.invalidate()
	l.put("k", gen, "stale")
	if v, ok, _ := l.get("k"); ok {
		t.Fatalf("a value read before the change is served: %v", v)
	}
	_, _, gen = l.get("k")
	l.put("k", gen, "fresh")
	if v, ok, _ := l.get("k"); !ok || v != "fresh" {
		t.Fatalf("got %v %v", v, ok)
	}
}
