package fsm

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/hubapi"
)

// haFederation is an agency with three DP connectors (one without the dp role) and a dataset served by one.
func haFederation(t *testing.T, now time.Time) *applier {
	a := &applier{t: t, f: open(t, filepath.Join(t.TempDir(), "state.db"))}
	for _, cmd := range []Command{
		&OrgAdd{Code: "moi", NameZh: "內政部", NameEn: "Ministry of the Interior", Type: "central-agency", Now: now},
		&ConnectorAdd{Org: "moi", Name: "dp1", Roles: []string{"dp"}, Address: "127.0.0.1:7001", Now: now},
		&ConnectorAdd{Org: "moi", Name: "dp2", Roles: []string{"dp"}, Address: "127.0.0.1:7002", Now: now},
		&ConnectorAdd{Org: "moi", Name: "sp1", Roles: []string{"sp"}, Address: "127.0.0.1:7003", Now: now},
		&DatasetAdd{Dataset: Dataset{ID: "moi.household", NameZh: "戶籍", NameEn: "Household", DPOrg: "moi", DPConnector: "dp1", MinAAL: 1}, Now: now},
	} {
		if r := a.apply(cmd); r.Code != OK {
			t.Fatalf("%T: %+v", cmd, r)
		}
	}
	return a
}

func TestDatasetConnectors(t *testing.T) {
	now := time.Now().UTC()
	a := haFederation(t, now)
	steps := []struct {
		name string
		cmd  Command
		want Code
		msg  string
	}{
		{"add a second", &DatasetConnectors{ID: "moi.household", Connectors: []string{"dp1", "dp2"}, Now: now}, OK, ""},
		{"the same again", &DatasetConnectors{ID: "moi.household", Connectors: []string{"dp1", "dp2"}, Now: now}, Conflict, "already served by dp1, dp2"},
		{"unknown connector", &DatasetConnectors{ID: "moi.household", Connectors: []string{"dp1", "dp9"}, Now: now}, NotFound, "more_dp_connectors[0]: connector moi/dp9 does not exist"},
		{"not a dp", &DatasetConnectors{ID: "moi.household", Connectors: []string{"sp1"}, Now: now}, Invalid, "dp_connector: connector moi/sp1 does not have the dp role"},
		{"twice", &DatasetConnectors{ID: "moi.household", Connectors: []string{"dp1", "dp1"}, Now: now}, Invalid, "named twice"},
		{"too many", &DatasetConnectors{ID: "moi.household", Connectors: []string{"a", "b", "c", "d", "e"}, Now: now}, Invalid, "at most 4"},
		{"none", &DatasetConnectors{ID: "moi.household", Now: now}, Invalid, "at least one"},
		{"unknown dataset", &DatasetConnectors{ID: "moi.nothing", Connectors: []string{"dp1"}, Now: now}, NotFound, "does not exist"},
		{"add with two", &DatasetAdd{Dataset: Dataset{ID: "moi.address", NameZh: "地址", NameEn: "Address", DPOrg: "moi", DPConnector: "dp2", MoreDP: []string{"dp1"}, MinAAL: 1}, Now: now}, OK, ""},
		{"add with one that is not a dp", &DatasetAdd{Dataset: Dataset{ID: "moi.other", NameZh: "x", NameEn: "x", DPOrg: "moi", DPConnector: "dp2", MoreDP: []string{"sp1"}, MinAAL: 1}, Now: now}, Invalid, "more_dp_connectors[0]"},
	}
	for _, s := range steps {
		r := a.apply(s.cmd)
		if r.Code != s.want || !strings.Contains(r.Message, s.msg) {
			t.Fatalf("%s: got %+v, want code %d with %q", s.name, r, s.want, s.msg)
		}
	}
	for id, want := range map[string][]string{"moi.household": {"dp1", "dp2"}, "moi.address": {"dp2", "dp1"}} {
		d, err := a.f.Dataset(id)
		if err != nil || d == nil || !slices.Equal(d.Connectors(), want) {
			t.Fatalf("%s: %+v %v, want connectors %v", id, d, err, want)
		}
	}
	// Moving back to one connector leaves no others.
	if r := a.apply(&DatasetConnectors{ID: "moi.household", Connectors: []string{"dp2"}, Now: now}); r.Code != OK {
		t.Fatal(r)
	}
	if d, _ := a.f.Dataset("moi.household"); d.DPConnector != "dp2" || len(d.MoreDPConnectors) != 0 {
		t.Fatalf("after moving: %+v", d)
	}
}

// TestTicketClaims: the first connector to claim a ticket serves it; another is refused while it serves and
// after it has sent; a release with nothing sent lets the next one serve it.
func TestTicketClaims(t *testing.T) {
	now := time.Now().UTC()
	a := haFederation(t, now)
	const dp1, dp2 = "spiffe://t/org/moi/connector/dp1", "spiffe://t/org/moi/connector/dp2"
	exp := now.Add(5 * time.Minute)
	claim := func(id, dp string) Command { return &TicketClaim{TicketID: id, DP: dp, Expires: exp, Now: now} }
	steps := []struct {
		name string
		cmd  Command
		want Code
		msg  string
	}{
		{"dp1 claims", claim("t1", dp1), OK, ""},
		{"dp1 claims again", claim("t1", dp1), OK, ""},
		{"dp2 while dp1 serves", claim("t1", dp2), Conflict, "being served by " + dp1},
		{"dp2 releases what it does not hold", &TicketRelease{TicketID: "t1", DP: dp2, Now: now}, Forbidden, "claimed by " + dp1},
		{"dp1 failed before sending", &TicketRelease{TicketID: "t1", DP: dp1, Now: now}, OK, ""},
		{"dp2 takes over", claim("t1", dp2), OK, ""},
		{"dp2 sent it", &TicketRelease{TicketID: "t1", DP: dp2, Spent: true, Now: now}, OK, ""},
		{"dp1 after it was used", claim("t1", dp1), Gone, "already used by " + dp2},
		{"dp2 replays", claim("t1", dp2), Gone, "already used"},
		{"release a used ticket", &TicketRelease{TicketID: "t1", DP: dp2, Now: now}, Gone, "already used"},
		{"release an unclaimed ticket", &TicketRelease{TicketID: "t9", DP: dp2, Now: now}, NotFound, "not claimed"},
		{"an expired ticket", &TicketClaim{TicketID: "t2", DP: dp1, Expires: now.Add(-time.Second), Now: now}, Invalid, "expired"},
		{"no dp", &TicketClaim{TicketID: "t2", Expires: exp, Now: now}, Invalid, "required"},
	}
	for _, s := range steps {
		r := a.apply(s.cmd)
		if r.Code != s.want || !strings.Contains(r.Message, s.msg) {
			t.Fatalf("%s: got %+v, want code %d with %q", s.name, r, s.want, s.msg)
		}
	}
	// Just past the ticket's expiry, by a node whose clock runs ahead, its claim is kept: the connector
	// may still accept the ticket by its own clock, and it must stay used.
	soon := exp.Add(time.Minute)
	if r := a.apply(&TicketClaim{TicketID: "t3", DP: dp1, Expires: soon.Add(time.Minute), Now: soon}); r.Code != OK {
		t.Fatal(r)
	}
	if r := a.apply(&TicketClaim{TicketID: "t1", DP: dp1, Expires: soon.Add(time.Minute), Now: soon}); r.Code != Gone {
		t.Fatalf("a used ticket claimed a minute after its expiry: %+v, want gone", r)
	}
	// An hour after, its claim goes with the next claim, and takes no room.
	later := exp.Add(claimRetention + 5*time.Minute)
	if r := a.apply(&TicketClaim{TicketID: "t4", DP: dp1, Expires: later.Add(time.Minute), Now: later}); r.Code != OK {
		t.Fatal(r)
	}
	var n int
	if err := a.f.db.QueryRow(`SELECT count(*) FROM ticket_claims`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("claims left: %d %v", n, err)
	}
}

// TestConnectorsLiveness: connectors no node has heard from are marked down, and up when heard from again;
// the directory version moves only then.
func TestConnectorsLiveness(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	a := haFederation(t, now)
	version := func() uint64 { v, _ := a.f.DirectoryVersion(); return v }
	down := func() (out []string) {
		cs, _ := a.f.Connectors()
		for _, c := range cs {
			if c.Down {
				out = append(out, c.Name)
			}
		}
		return out
	}
	t0 := now.Add(time.Minute)
	if r := a.apply(&ConnectorsSeen{Connectors: []string{"moi/dp1", "moi/sp1"}, Now: t0}); r.Code != OK {
		t.Fatal(r)
	}
	if due, _ := a.f.LivenessDue(now); due {
		t.Fatal("a check as of the connectors' creation would change something")
	}
	v0 := version()
	// 30 s later no one has heard from dp2 since it was made.
	before := t0.Add(-time.Second)
	if due, err := a.f.LivenessDue(before); !due || err != nil {
		t.Fatalf("due = %v %v", due, err)
	}
	if r := a.apply(&ConnectorsLiveness{Before: before, Now: t0.Add(30 * time.Second)}); r.Code != OK {
		t.Fatal(r)
	}
	if got := down(); !slices.Equal(got, []string{"dp2"}) || version() == v0 {
		t.Fatalf("down = %v, version %d → %d", got, v0, version())
	}
	if due, _ := a.f.LivenessDue(before); due {
		t.Fatal("a second check at the same time would change something")
	}
	// dp2 reports in; dp1 goes quiet.
	t1 := t0.Add(time.Minute)
	a.apply(&ConnectorsSeen{Connectors: []string{"moi/dp2", "moi/sp1", "moi/gone"}, Now: t1})
	v1 := version()
	a.apply(&ConnectorsLiveness{Before: t1.Add(-time.Second), Now: t1.Add(time.Second)})
	if got := down(); !slices.Equal(got, []string{"dp1"}) || version() == v1 {
		t.Fatalf("down = %v", got)
	}
	// A late report from an earlier time does not move last_seen back.
	a.apply(&ConnectorsSeen{Connectors: []string{"moi/dp2"}, Now: t0})
	seen := 0
	_ = a.f.db.QueryRow(`SELECT count(*) FROM connector_seen WHERE name = 'dp2' AND last_seen = ?`, ms(t1)).Scan(&seen)
	if seen != 1 {
		t.Fatal("a late report moved last_seen back")
	}
	// A revoked connector is never marked down (it is out of the directory's concern).
	a.apply(&ConnectorStatus{Org: "moi", Name: "sp1", Status: hubapi.StatusRevoked, Now: t1})
	a.apply(&ConnectorsLiveness{Before: t1.Add(time.Hour), Now: t1.Add(2 * time.Hour)})
	if got := down(); !slices.Equal(got, []string{"dp1", "dp2"}) {
		t.Fatalf("down = %v", got)
	}
	if r := a.apply(&ConnectorsSeen{Connectors: []string{"nonsense"}, Now: t1}); r.Code != Invalid {
		t.Fatalf("bad id: %+v", r)
	}
}

// TestConnectorAddress: a connector moves to new addresses, which changes the directory; a revoked or
// unknown one does not, nor does a bad address.
func TestConnectorAddress(t *testing.T) {
	now := time.Now().UTC()
	a := haFederation(t, now)
	v0, _ := a.f.DirectoryVersion()
	steps := []struct {
		name string
		cmd  Command
		want Code
		msg  string
	}{
		{"move", &ConnectorAddress{Org: "moi", Name: "dp2", Address: "10.0.0.2:7443", TCPAddress: "10.0.0.2:7443", Now: now}, OK, ""},
		{"the same again", &ConnectorAddress{Org: "moi", Name: "dp2", Address: "10.0.0.2:7443", TCPAddress: "10.0.0.2:7443", Now: now}, Conflict, "already has"},
		{"no port", &ConnectorAddress{Org: "moi", Name: "dp2", Address: "10.0.0.2", Now: now}, Invalid, "address"},
		{"bad tcp port", &ConnectorAddress{Org: "moi", Name: "dp2", Address: "10.0.0.2:7443", TCPAddress: "10.0.0.2:99999", Now: now}, Invalid, "tcp_address"},
		{"unknown", &ConnectorAddress{Org: "moi", Name: "dp9", Address: "10.0.0.2:7443", Now: now}, NotFound, "does not exist"},
		{"revoke sp1", &ConnectorStatus{Org: "moi", Name: "sp1", Status: hubapi.StatusRevoked, Now: now}, OK, ""},
		{"move a revoked one", &ConnectorAddress{Org: "moi", Name: "sp1", Address: "10.0.0.3:7443", Now: now}, Gone, "revoked"},
	}
	for _, s := range steps {
		r := a.apply(s.cmd)
		if r.Code != s.want || !strings.Contains(r.Message, s.msg) {
			t.Fatalf("%s: got %+v, want code %d with %q", s.name, r, s.want, s.msg)
		}
	}
	c, _ := a.f.Connector("moi", "dp2")
	if v, _ := a.f.DirectoryVersion(); c.Address != "10.0.0.2:7443" || c.TCPAddress != "10.0.0.2:7443" || v == v0 {
		t.Fatalf("after the move: %+v, directory version %d → %d", c, v0, v)
	}
}
