package fsm

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mydatafed/mydata/hub/internal/oplog"
)

var testAdmin = Actor{SPIFFEID: "spiffe://t/operator/admin", Roles: []string{RoleFederationAdmin}}

// act applies cmd as testAdmin's action and returns the result.
func (a *applier) act(op string, params map[string]string, cmd Command) Result {
	a.t.Helper()
	w, err := Act(testAdmin, op, params, cmd, time.Now())
	if err != nil {
		a.t.Fatal(err)
	}
	return a.apply(w)
}

func TestOperatorCommands(t *testing.T) {
	a := &applier{t: t, f: open(t, filepath.Join(t.TempDir(), "state.db"))}
	now := time.Now().UTC()
	cert := func(serial string) CertRecord {
		return CertRecord{Serial: serial, SPIFFEID: "spiffe://t/operator/amy", Kind: "operator", NotAfter: now.Add(time.Hour), Now: now}
	}
	steps := []struct {
		name string
		cmd  Command
		want Code
		msg  string
	}{
		{"org", &OrgAdd{Code: "nccu", NameZh: "政治大學", NameEn: "NCCU", Type: "university", Now: now}, OK, ""},
		{"bootstrap name", &OperatorAdd{Name: BootstrapOperator, Roles: []string{RoleAuditor}, Now: now}, Invalid, "bootstrap"},
		{"bad role", &OperatorAdd{Name: "amy", Roles: []string{"reviewer:sports"}, Now: now}, Invalid, "sector"},
		{"scoped admin", &OperatorAdd{Name: "amy", Roles: []string{"federation-admin:x"}, Now: now}, Invalid, "no scope"},
		{"twice the role", &OperatorAdd{Name: "amy", Roles: []string{"auditor", "auditor"}, Now: now}, Invalid, "twice"},
		{"applicant of unknown org", &OperatorAdd{Name: "amy", Roles: []string{"applicant:ntu"}, Now: now}, NotFound, "ntu"},
		{"add", &OperatorAdd{Name: "amy", Roles: []string{"applicant:nccu", "reviewer:education"}, Now: now}, OK, ""},
		{"add again", &OperatorAdd{Name: "amy", Roles: []string{"auditor"}, Now: now}, Conflict, "exists"},
		{"token", &OperatorTokenCreate{Hash: "t1", Name: "amy", ExpiresAt: now.Add(time.Hour), Now: now}, OK, ""},
		{"token for nobody", &OperatorTokenCreate{Hash: "t2", Name: "bob", ExpiresAt: now.Add(time.Hour), Now: now}, NotFound, "bob"},
		{"enroll as another", &OperatorEnroll{TokenHash: "t1", Name: "bob", Cert: cert("1")}, Forbidden, "issued for operator"},
		{"enroll", &OperatorEnroll{TokenHash: "t1", Name: "amy", Cert: cert("2")}, OK, ""},
		{"enroll replay", &OperatorEnroll{TokenHash: "t1", Name: "amy", Cert: cert("3")}, Forbidden, "already used"},
		{"renew", &OperatorRenew{Name: "amy", Cert: cert("4")}, OK, ""},
		{"token before disable", &OperatorTokenCreate{Hash: "t3", Name: "amy", ExpiresAt: now.Add(time.Hour), Now: now}, OK, ""},
		{"disable", &OperatorStatus{Name: "amy", Status: OperatorDisabled, Now: now}, OK, ""},
		{"disable again", &OperatorStatus{Name: "amy", Status: OperatorDisabled, Now: now}, Conflict, "already"},
		{"enroll while disabled", &OperatorEnroll{TokenHash: "t3", Name: "amy", Cert: cert("5")}, Forbidden, "unknown or already used"},
		{"renew while disabled", &OperatorRenew{Name: "amy", Cert: cert("6")}, Forbidden, "not active"},
		{"token while disabled", &OperatorTokenCreate{Hash: "t4", Name: "amy", ExpiresAt: now.Add(time.Hour), Now: now}, Forbidden, "disabled"},
	}
	for _, s := range steps {
		r := a.apply(s.cmd)
		if r.Code != s.want || !strings.Contains(r.Message, s.msg) {
			t.Fatalf("%s: got %+v, want code %d with %q", s.name, r, s.want, s.msg)
		}
	}
	op, err := a.f.Operator("amy")
	if err != nil || op.Status != OperatorDisabled || op.ActsFor != "nccu,education" {
		t.Fatalf("operator %+v %v", op, err)
	}
	// The enrollment is in the operator log, with the operator as its own actor.
	entries, _ := a.f.OperatorLog(time.Time{})
	if len(entries) != 1 || entries[0].Op != "operator enroll" || entries[0].Actor != "spiffe://t/operator/amy" {
		t.Fatalf("log %+v", entries)
	}
}

func TestOperatorActionIsLogged(t *testing.T) {
	a := &applier{t: t, f: open(t, filepath.Join(t.TempDir(), "state.db"))}
	now := time.Now()
	if r := a.act("org add", map[string]string{"code": "moi"}, &OrgAdd{Code: "moi", NameZh: "內政部", NameEn: "MOI", Type: "central-agency", Now: now}); r.Code != OK {
		t.Fatal(r)
	}
	// Refused by the state: logged as refused, and nothing changed.
	if r := a.act("org add", map[string]string{"code": "moi"}, &OrgAdd{Code: "moi", NameZh: "x", NameEn: "x", Type: "other", Now: now}); r.Code != Conflict {
		t.Fatal(r)
	}
	if r := a.act("connector add", nil, &ConnectorAdd{Org: "moi", Name: "dp1", Roles: []string{"dp"}, Address: "127.0.0.1:1", Now: now}); r.Code != OK {
		t.Fatal(r)
	}
	if r := a.act("connector suspend", nil, &ConnectorStatus{Org: "moi", Name: "dp1", Status: "suspended", Now: now}); r.Code != OK {
		t.Fatal(r)
	}
	if r := a.act("backup", nil, nil); r.Code != OK {
		t.Fatal(r)
	}
	// An action that would not validate is refused before it is proposed.
	if _, err := Act(testAdmin, "org add", nil, &OrgAdd{Code: "x", Type: "club"}, now); err == nil {
		t.Fatal("Act took an invalid command")
	}
	entries, err := a.f.OperatorLog(time.Time{})
	if err != nil || len(entries) != 5 {
		t.Fatalf("%d entries, %v", len(entries), err)
	}
	want := []struct{ op, outcome string }{{"org add", "ok"}, {"org add", "refused"}, {"connector add", "ok"}, {"connector suspend", "ok"}, {"backup", "ok"}}
	for i, w := range want {
		e := entries[i]
		if e.Seq != int64(i+1) || e.Op != w.op || e.Outcome != w.outcome || e.Actor != testAdmin.SPIFFEID {
			t.Errorf("entry %d: %+v, want %v", i+1, e, w)
		}
	}
	if e := entries[0]; e.Before != "" || !strings.Contains(e.After, `"name_zh":"內政部"`) {
		t.Errorf("org add before %q after %q", e.Before, e.After)
	}
	if e := entries[3]; !strings.Contains(e.Before, `"status":"active"`) || !strings.Contains(e.After, `"status":"suspended"`) {
		t.Errorf("suspend before %q after %q", e.Before, e.After)
	}
	if !strings.Contains(entries[1].Detail, "already exists") {
		t.Errorf("refusal detail %q", entries[1].Detail)
	}
	if r, err := a.f.VerifyOperatorLog(); err != nil || !r.OK || r.Entries != 5 || r.Head.Seq != 5 {
		t.Fatalf("verify %+v %v", r, err)
	}
}

// TestOperatorLogTamper edits the database behind the state machine's back, as someone with the file would,
// and expects Verify to name the first entry that is wrong.
func TestOperatorLogTamper(t *testing.T) {
	cases := []struct {
		name    string
		sql     []string
		bad     int64
		problem string
	}{
		{"edited field", []string{`UPDATE oplog SET params = '{"code":"evil"}' WHERE seq = 2`}, 2, "changed"},
		{"edited actor", []string{`UPDATE oplog SET actor = 'spiffe://t/operator/someone' WHERE seq = 3`}, 3, "changed"},
		{"edited time", []string{`UPDATE oplog SET at = at + 1 WHERE seq = 1`}, 1, "changed"},
		{"removed", []string{`DELETE FROM oplog WHERE seq = 2`}, 2, "deleted"},
		{"removed last", []string{`DELETE FROM oplog WHERE seq = 4`}, 4, "deleted"},
		{"removed last and head moved", []string{`DELETE FROM oplog WHERE seq = 4`, `UPDATE oplog_head SET seq = 3, hash = (SELECT hash FROM oplog WHERE seq = 3)`}, 0, ""},
		{"reordered", []string{`UPDATE oplog SET seq = 100 WHERE seq = 2`, `UPDATE oplog SET seq = 2 WHERE seq = 3`, `UPDATE oplog SET seq = 3 WHERE seq = 100`}, 2, "link"},
		{"rehashed after edit", []string{`UPDATE oplog SET op = 'nothing', hash = 'ab' || substr(hash, 3) WHERE seq = 2`}, 2, "changed"},
		{"added outside", []string{`INSERT INTO oplog SELECT 5, at, actor, roles, op, params, outcome, detail, before, after, hash, hash FROM oplog WHERE seq = 4`}, 5, "entry 5"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := &applier{t: t, f: open(t, filepath.Join(t.TempDir(), "state.db"))}
			now := time.Now()
			for _, code := range []string{"a", "b", "c", "d"} {
				if r := a.act("org add", map[string]string{"code": code}, &OrgAdd{Code: code, NameZh: code, NameEn: code, Type: "other", Now: now}); r.Code != OK {
					t.Fatal(r)
				}
			}
			for _, q := range c.sql {
				if _, err := a.f.db.Exec(q); err != nil {
					t.Fatal(err)
				}
			}
			r, err := a.f.VerifyOperatorLog()
			if err != nil {
				t.Fatal(err)
			}
			if c.bad == 0 {
				// Removing the last entry and moving the head with it is what one chain and its head cannot
				// show; the other nodes' copies and their heads can (docs/operator-guide.md).
				if !r.OK || r.Head.Seq != 3 {
					t.Fatalf("%+v", r)
				}
				return
			}
			if r.OK || r.BadSeq != c.bad || !strings.Contains(r.Problem, c.problem) {
				t.Fatalf("report %+v, want entry %d with %q", r, c.bad, c.problem)
			}
			// The next action still appends: the log is evidence, and it grows on.
			if res := a.act("backup", nil, nil); res.Code != OK {
				t.Fatal(res)
			}
		})
	}
}

func TestVerifyExportSegment(t *testing.T) {
	a := &applier{t: t, f: open(t, filepath.Join(t.TempDir(), "state.db"))}
	for _, code := range []string{"a", "b", "c"} {
		a.act("org add", nil, &OrgAdd{Code: code, NameZh: code, NameEn: code, Type: "other", Now: time.Now()})
	}
	all, _ := a.f.OperatorLog(time.Time{})
	seg := all[1:]
	v := oplog.NewVerifier(oplog.Head{Seq: seg[0].Seq - 1, Hash: seg[0].PrevHash})
	for _, e := range seg {
		v.Add(e)
	}
	if r := v.Finish(nil); !r.OK || r.Entries != 2 {
		t.Fatalf("%+v", r)
	}
	seg[1].Params = map[string]string{"x": "y"}
	v = oplog.NewVerifier(oplog.Head{Seq: seg[0].Seq - 1, Hash: seg[0].PrevHash})
	for _, e := range seg {
		v.Add(e)
	}
	if r := v.Finish(nil); r.OK || r.BadSeq != 3 {
		t.Fatalf("%+v", r)
	}
}
