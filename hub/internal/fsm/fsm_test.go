package fsm

import (
	"bytes"
	"io"
	"log/slog"
	"maps"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

type applier struct {
	t     *testing.T
	f     *FSM
	index uint64
}

// apply does what the cluster does: validate, then apply through the log.
func (a *applier) apply(cmd Command) Result {
	a.t.Helper()
	if err := cmd.Validate(); err != nil {
		return refuse(Invalid, "%v", err)
	}
	data, err := Encode(cmd)
	if err != nil {
		a.t.Fatal(err)
	}
	a.index++
	return a.f.Apply(&raft.Log{Index: a.index, Type: raft.LogCommand, Data: data}).(Result)
}

func open(t *testing.T, path string) *FSM {
	t.Helper()
	f, err := Open(path, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestCommands(t *testing.T) {
	a := &applier{t: t, f: open(t, filepath.Join(t.TempDir(), "state.db"))}
	now := time.Now().UTC()
	steps := []struct {
		name string
		cmd  Command
		want Code
		msg  string
	}{
		{"org", &OrgAdd{Code: "moi", NameZh: "內政部", NameEn: "Ministry of the Interior", Type: "central-agency", Now: now}, OK, ""},
		{"org again", &OrgAdd{Code: "moi", NameZh: "x", NameEn: "x", Type: "other", Now: now}, Conflict, "already exists"},
		{"org invalid", &OrgAdd{Code: "x", NameZh: "x", NameEn: "x", Type: "club", Now: now}, Invalid, "type"},
		{"connector", &ConnectorAdd{Org: "moi", Name: "dp1", Roles: []string{"dp"}, Address: "127.0.0.1:7001", Now: now}, OK, ""},
		{"connector of unknown org", &ConnectorAdd{Org: "fia", Name: "dp1", Roles: []string{"dp"}, Address: "a:1", Now: now}, NotFound, "fia"},
		{"token", &TokenCreate{Hash: "h1", Org: "moi", Connector: "dp1", ExpiresAt: now.Add(time.Hour), Now: now}, OK, ""},
		{"token for unknown connector", &TokenCreate{Hash: "h2", Org: "moi", Connector: "dp9", ExpiresAt: now.Add(time.Hour), Now: now}, NotFound, "dp9"},
		{"expired token", &TokenCreate{Hash: "h3", Org: "moi", Connector: "dp1", ExpiresAt: now.Add(-time.Second), Now: now}, Invalid, "expire"},
		{"enroll", &Enroll{TokenHash: "h1", Cert: CertRecord{Serial: "1", SPIFFEID: "spiffe://t/org/moi/connector/dp1", Kind: "enroll", Now: now}}, OK, ""},
		{"enroll replay", &Enroll{TokenHash: "h1", Cert: CertRecord{Serial: "2", SPIFFEID: "spiffe://t/org/moi/connector/dp1", Kind: "enroll", Now: now}}, Forbidden, "already used"},
		{"renew while active", &Renew{Org: "moi", Name: "dp1", Cert: CertRecord{Serial: "r0", SPIFFEID: "spiffe://t/org/moi/connector/dp1", Kind: "renew", Now: now}}, OK, ""},
		{"suspend", &ConnectorStatus{Org: "moi", Name: "dp1", Status: "suspended", Now: now}, OK, ""},
		{"suspend again", &ConnectorStatus{Org: "moi", Name: "dp1", Status: "suspended", Now: now}, Conflict, "already"},
		{"token while suspended", &TokenCreate{Hash: "h4", Org: "moi", Connector: "dp1", ExpiresAt: now.Add(time.Hour), Now: now}, OK, ""},
		{"enroll while suspended", &Enroll{TokenHash: "h4", Cert: CertRecord{Serial: "3", SPIFFEID: "spiffe://t/org/moi/connector/dp1", Kind: "enroll", Now: now}}, Forbidden, "suspended"},
		{"renew while suspended", &Renew{Org: "moi", Name: "dp1", Cert: CertRecord{Serial: "r1", SPIFFEID: "spiffe://t/org/moi/connector/dp1", Kind: "renew", Now: now}}, Forbidden, "suspended"},
		{"revoke", &ConnectorStatus{Org: "moi", Name: "dp1", Status: "revoked", Now: now}, OK, ""},
		{"unrevoke", &ConnectorStatus{Org: "moi", Name: "dp1", Status: "active", Now: now}, Gone, "revoked"},
		{"token after revoke", &TokenCreate{Hash: "h5", Org: "moi", Connector: "dp1", ExpiresAt: now.Add(time.Hour), Now: now}, Gone, "revoked"},
		{"enroll after revoke", &Enroll{TokenHash: "h4", Cert: CertRecord{Serial: "4", SPIFFEID: "spiffe://t/org/moi/connector/dp1", Kind: "enroll", Now: now}}, Forbidden, "revoked"},
	}
	for _, s := range steps {
		r := a.apply(s.cmd)
		if r.Code != s.want || !strings.Contains(r.Message, s.msg) {
			t.Fatalf("%s: got %+v, want code %d with %q", s.name, r, s.want, s.msg)
		}
	}
	c, err := a.f.Connector("moi", "dp1")
	if err != nil || c.Status != "revoked" {
		t.Fatalf("connector %+v %v", c, err)
	}
	// The enrollment's and the renewal while active: the refused ones recorded nothing.
	certs, _ := a.f.Certificates("spiffe://t/org/moi/connector/dp1")
	if len(certs) != 2 {
		t.Fatalf("certificates: %v", certs)
	}
}

func TestReplayAfterRestartIsSkipped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	f := open(t, path)
	a := &applier{t: t, f: f}
	a.apply(&OrgAdd{Code: "moi", NameZh: "x", NameEn: "x", Type: "other"})
	f.Close()

	f2 := open(t, path)
	if f2.AppliedIndex() != 1 {
		t.Fatalf("applied index %d after reopen", f2.AppliedIndex())
	}
	// Raft hands the same entry again after a restart; it must not be refused as a duplicate.
	data, _ := Encode(&OrgAdd{Code: "moi", NameZh: "x", NameEn: "x", Type: "other"})
	if r := f2.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: data}).(Result); r.Code != OK {
		t.Fatalf("replayed entry: %+v", r)
	}
}

func TestUnknownCommandStopsTheNode(t *testing.T) {
	f := open(t, filepath.Join(t.TempDir(), "state.db"))
	defer func() {
		if recover() == nil {
			t.Fatal("unknown command applied silently")
		}
	}()
	f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte{0x7f, 1, '{', '}'}})
}

func TestIgnorableUnknownCommandIsSkipped(t *testing.T) {
	f := open(t, filepath.Join(t.TempDir(), "state.db"))
	f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte{0x7f | ignorable, 1, '{', '}'}})
	if f.AppliedIndex() != 1 {
		t.Fatal("ignorable entry not recorded as applied")
	}
}

type sink struct {
	bytes.Buffer
	cancelled bool
}

func (s *sink) ID() string    { return "test" }
func (s *sink) Cancel() error { s.cancelled = true; return nil }
func (s *sink) Close() error  { return nil }

func TestSnapshotRestore(t *testing.T) {
	src := open(t, filepath.Join(t.TempDir(), "state.db"))
	a := &applier{t: t, f: src}
	a.apply(&OrgAdd{Code: "moi", NameZh: "內政部", NameEn: "MOI", Type: "central-agency"})
	a.apply(&ConnectorAdd{Org: "moi", Name: "dp1", Roles: []string{"dp"}, Address: "a:1"})
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Changes after the snapshot must not leak into it.
	a.apply(&ConnectorAdd{Org: "moi", Name: "dp2", Roles: []string{"dp"}, Address: "a:2"})
	var s sink
	if err := snap.Persist(&s); err != nil || s.cancelled {
		t.Fatalf("persist: %v", err)
	}
	snap.Release()

	dst := open(t, filepath.Join(t.TempDir(), "state.db"))
	changed := dst.Changed()
	if err := dst.Restore(io.NopCloser(&s)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("restore did not wake watchers")
	}
	cs, _ := dst.Connectors()
	if len(cs) != 1 || cs[0].Name != "dp1" || dst.AppliedIndex() != 2 {
		t.Fatalf("restored %+v at %d", cs, dst.AppliedIndex())
	}
	if o, _ := dst.Org("moi"); o == nil || o.NameZh != "內政部" {
		t.Fatalf("restored org %+v", o)
	}
}

// TestApplyBatch applies what raft hands over together: each entry answers on its own, in order, as
// Apply would, and the batch lands in one transaction with the last index recorded.
func TestApplyBatch(t *testing.T) {
	f := open(t, filepath.Join(t.TempDir(), "state.db"))
	now := time.Now().UTC().Truncate(time.Millisecond)
	entry := func(index uint64, cmd Command) *raft.Log {
		data, err := Encode(cmd)
		if err != nil {
			t.Fatal(err)
		}
		return &raft.Log{Index: index, Type: raft.LogCommand, Data: data}
	}
	changed := f.Changed()
	out := f.ApplyBatch([]*raft.Log{
		entry(1, &OrgAdd{Code: "moi", NameZh: "內政部", NameEn: "MOI", Type: "central-agency", Now: now}),
		{Index: 2, Type: raft.LogConfiguration},
		entry(3, &OrgAdd{Code: "moi", NameZh: "內政部", NameEn: "MOI", Type: "central-agency", Now: now}), // refused: exists
		{Index: 4, Type: raft.LogCommand, Data: []byte{0x7f | ignorable, 1, '{', '}'}},
		entry(5, &ConnectorAdd{Org: "moi", Name: "dp1", Roles: []string{"dp"}, Address: "a:1", Now: now}),
	})
	if len(out) != 5 || out[1] != nil {
		t.Fatalf("answers %#v", out)
	}
	for i, want := range []Code{OK, -1, Conflict, OK, OK} {
		if want < 0 {
			continue
		}
		if r, ok := out[i].(Result); !ok || r.Code != want {
			t.Errorf("entry %d: %#v, want code %d", i+1, out[i], want)
		}
	}
	if got := f.AppliedIndex(); got != 5 {
		t.Errorf("applied index %d, want 5", got)
	}
	select {
	case <-changed:
	default:
		t.Error("a connector added in a batch did not wake the directory's long-polls")
	}
	if c, _ := f.Connector("moi", "dp1"); c == nil {
		t.Error("the connector of the batch is not there")
	}
	// Replayed after a restart: entries at or below the applied index answer OK and change nothing.
	out = f.ApplyBatch([]*raft.Log{entry(5, &ConnectorAdd{Org: "moi", Name: "dp1", Roles: []string{"dp"}, Address: "a:1", Now: now})})
	if r, ok := out[0].(Result); !ok || r.Code != OK {
		t.Errorf("replayed entry: %#v", out[0])
	}
}

// unregistered is a Command the registry does not know.
type unregistered struct{}

func (unregistered) Validate() error { return nil }

func TestRegistry(t *testing.T) {
	for typ, e := range registry {
		// Every payload encodes under its own type and decodes back through its handler's payload type.
		cmd := reflect.New(e.payload.Elem()).Interface().(Command)
		data, err := Encode(cmd)
		if err != nil {
			t.Fatalf("type %d: %v", typ, err)
		}
		if Type(data[0]) != typ || data[1] != payloadV1 {
			t.Errorf("%T encodes as type %d version %d, registered as %d", cmd, data[0], data[1], typ)
		}
		if typ&ignorable != 0 {
			t.Errorf("type %d carries the ignorable bit; registry keys are the bare type", typ)
		}
	}
	if _, err := Encode(unregistered{}); err == nil || !strings.Contains(err.Error(), "not in the command registry") {
		t.Errorf("Encode of an unregistered command = %v", err)
	}
	if err := Validate(&OrgAdd{Code: "moi", NameZh: "x", NameEn: "x", Type: "club"}); err == nil {
		t.Error("an invalid command validated")
	} else if fe, ok := err.(*Error); !ok || fe.Code != Invalid {
		t.Errorf("Validate = %#v, want an *Error with code Invalid", err)
	}
}

// TestOrgAddContactEmail: an organisation registered with a contact address shows it; one from a log
// written before the address existed (no contact_email in the payload) has none; an address with a
// display name is refused as an application's is.
func TestOrgAddContactEmail(t *testing.T) {
	a := &applier{t: t, f: open(t, filepath.Join(t.TempDir(), "state.db"))}
	now := time.Now().UTC()
	if r := a.apply(&OrgAdd{Code: "moi", NameZh: "內政部", NameEn: "Ministry of the Interior", Type: "central-agency", ContactEmail: "it@moi.gov.tw", Now: now}); r.Code != OK {
		t.Fatal(r)
	}
	if r := a.apply(&OrgAdd{Code: "fia", NameZh: "財政資訊中心", NameEn: "FIA", Type: "central-agency", ContactEmail: "FIA <it@fia.gov.tw>", Now: now}); r.Code != Invalid || !strings.Contains(r.Message, "contact_email") {
		t.Fatalf("a display name: %+v", r)
	}
	old := append([]byte{byte(TypeOrgAdd), payloadV1}, `{"code":"old","name_zh":"舊","name_en":"Old","type":"other","now":"2026-01-01T00:00:00Z"}`...)
	a.index++
	if r := a.f.Apply(&raft.Log{Index: a.index, Type: raft.LogCommand, Data: old}).(Result); r.Code != OK {
		t.Fatalf("an old payload: %+v", r)
	}
	if data, _ := Encode(&OrgAdd{Code: "x", NameZh: "x", NameEn: "x", Type: "other"}); strings.Contains(string(data), "contact_email") {
		t.Errorf("no address, yet the payload names one: %s", data)
	}
	orgs, err := a.f.Orgs()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, o := range orgs {
		got[o.Code] = o.ContactEmail
	}
	if want := map[string]string{"moi": "it@moi.gov.tw", "old": ""}; !maps.Equal(got, want) {
		t.Fatalf("orgs' contacts %v, want %v", got, want)
	}
	if o, _ := a.f.Org("moi"); o.ContactEmail != "it@moi.gov.tw" {
		t.Fatalf("org: %+v", o)
	}
	if c, _ := a.f.OrgContact("moi"); c != "it@moi.gov.tw" {
		t.Fatalf("the applicant's e-mails go to %q", c)
	}
}
