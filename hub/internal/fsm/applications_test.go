package fsm

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/hubapi"
)

// TestApplicationPaths walks every path through the application states: an agency straight to the
// administrator; a university through the Ministry of Education, refused there (back to the applicant,
// the administrator never decides) and approved on a second application; a service's sandbox, pilot and
// production steps; a dataset's first step; refusals by role, by state and by stage.
func TestApplicationPaths(t *testing.T) {
	a := &applier{t: t, f: open(t, filepath.Join(t.TempDir(), "state.db"))}
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	admin := testAdmin
	moe := Actor{SPIFFEID: "spiffe://t/operator/moe", Roles: []string{"reviewer:education"}}
	fsc := Actor{SPIFFEID: "spiffe://t/operator/fsc", Roles: []string{"reviewer:financial"}}
	nccu := Actor{SPIFFEID: "spiffe://t/operator/nccu", Roles: []string{"applicant:nccu"}}
	moiApp := Actor{SPIFFEID: "spiffe://t/operator/moi", Roles: []string{"applicant:moi"}}
	aud := Actor{SPIFFEID: "spiffe://t/operator/aud", Roles: []string{"auditor"}}

	orgApp := func(id, code, typ string, by Actor) *ApplicationSubmit {
		return &ApplicationSubmit{Application: Application{ID: id, Kind: ApplyOrg, OrgInfo: &OrgAdd{Code: code, NameZh: code + "中文", NameEn: code, Type: typ}}, Actor: by, Now: now}
	}
	svc := Service{ID: "nccu.aid", NameZh: "助學金", NameEn: "Student aid", SPOrg: "nccu", SPConnector: "sp1", Modes: []string{"online"},
		Datasets: []string{"moi.household"}, Purpose: "aid", Terms: "terms", TermsVersion: "1", RedirectURIs: []string{"https://aid.example/cb"}}
	svcApp := func(id, stage string, subjects ...string) *ApplicationSubmit {
		return &ApplicationSubmit{Application: Application{ID: id, Kind: ApplyService, Stage: stage, Service: &svc, TestSubjects: subjects}, Actor: nccu, Now: now}
	}
	ds := Dataset{ID: "moi.household", NameZh: "戶籍", NameEn: "Household", DPOrg: "moi", DPConnector: "dp1", MinAAL: 2, ContentType: "application/json"}
	review := func(id string, by Actor, ok bool) *ApplicationReview {
		return &ApplicationReview{ID: id, Actor: by, Approve: ok, Reason: "because", Now: now}
	}
	decide := func(id string, by Actor, ok bool) *ApplicationDecide {
		return &ApplicationDecide{ID: id, Actor: by, Approve: ok, Reason: "because", Now: now}
	}
	steps := []struct {
		name string
		cmd  Command
		want Code
		msg  string
	}{
		// An agency: no authority, the administrator decides.
		{"agency applies", orgApp("app-moi1", "moi", "central-agency", admin), OK, ""},
		{"agency twice", orgApp("app-moi2", "moi", "central-agency", admin), Conflict, "under review"},
		{"no authority to review", review("app-moi1", moe, true), Conflict, "does not wait"},
		{"auditor decides", decide("app-moi1", aud, true), Forbidden, "needs the role federation-admin"},
		{"admin approves agency", decide("app-moi1", admin, true), OK, ""},
		{"decided twice", decide("app-moi1", admin, false), Conflict, "approved already"},
		{"existing org applies", orgApp("app-moi3", "moi", "central-agency", admin), Conflict, "already exists"},
		// A university: the Ministry of Education first; its refusal ends the application.
		{"university applies", orgApp("app-nccu1", "nccu", "university", admin), OK, ""},
		{"admin before authority", decide("app-nccu1", admin, true), Conflict, "reviewer:education first"},
		{"wrong sector reviews", review("app-nccu1", fsc, true), Forbidden, "needs the role reviewer:education"},
		{"authority refuses", review("app-nccu1", moe, false), OK, ""},
		{"admin after refusal", decide("app-nccu1", admin, true), Conflict, "refused already"},
		{"review after refusal", review("app-nccu1", moe, true), Conflict, "is refused"},
		{"university again", orgApp("app-nccu2", "nccu", "university", admin), OK, ""},
		{"authority approves", review("app-nccu2", moe, true), OK, ""},
		{"admin approves university", decide("app-nccu2", admin, true), OK, ""},
		// A state-owned enterprise names its ministry; the administrator may refuse after the authority.
		{"soe without ministry", orgApp("app-cpc1", "cpc", "state-owned-enterprise", admin), Invalid, "ministry"},
		// A service: the applicant for its own organisation only, sandbox first, each step approved.
		{"another org's applicant", &ApplicationSubmit{Application: Application{ID: "app-x1", Kind: ApplyService, Stage: "sandbox", Service: &svc}, Actor: moiApp, Now: now}, Forbidden, "applicant:nccu"},
		{"pilot before sandbox", svcApp("app-s0", "pilot", "h1"), Conflict, "does not exist yet: it may apply for sandbox"},
		{"pilot without subjects", svcApp("app-s0", "pilot"), Invalid, "test_subjects"},
		{"sandbox", svcApp("app-s1", "sandbox"), OK, ""},
		{"sandbox through the authority", review("app-s1", moe, true), OK, ""},
		{"sandbox cannot take effect", decide("app-s1", admin, true), NotFound, "cannot take effect"},
		{"dataset applies", &ApplicationSubmit{Application: Application{ID: "app-d1", Kind: ApplyDataset, Stage: "sandbox", Dataset: &ds}, Actor: moiApp, Now: now}, OK, ""},
		{"dataset's DP has no connector", decide("app-d1", admin, true), NotFound, "dp_connector"},
	}
	run := func(steps []struct {
		name string
		cmd  Command
		want Code
		msg  string
	}) {
		t.Helper()
		for _, s := range steps {
			r := a.apply(s.cmd)
			if r.Code != s.want || !strings.Contains(r.Message, s.msg) {
				t.Fatalf("%s: got %+v, want code %d with %q", s.name, r, s.want, s.msg)
			}
		}
	}
	run(steps)
	a.apply(&ConnectorAdd{Org: "moi", Name: "dp1", Roles: []string{"dp"}, Address: "a:1", Now: now})
	a.apply(&ConnectorAdd{Org: "nccu", Name: "sp1", Roles: []string{"sp"}, Address: "a:2", Now: now})
	run([]struct {
		name string
		cmd  Command
		want Code
		msg  string
	}{
		{"dataset sandbox approved", decide("app-d1", admin, true), OK, ""},
		{"sandbox approved", decide("app-s1", admin, true), OK, ""},
		{"sandbox again", svcApp("app-s2", "sandbox"), Conflict, "is at sandbox: it may apply for pilot"},
		{"pilot", svcApp("app-s3", "pilot", "h1", "h2"), OK, ""},
		{"pilot reviewed", review("app-s3", moe, true), OK, ""},
		{"pilot approved", decide("app-s3", admin, true), OK, ""},
		{"production", svcApp("app-s4", "production"), OK, ""},
		{"production reviewed", review("app-s4", moe, true), OK, ""},
		{"production refused by admin", decide("app-s4", admin, false), OK, ""},
		{"production again", svcApp("app-s5", "production"), OK, ""},
		{"production reviewed again", review("app-s5", moe, true), OK, ""},
		{"production approved", decide("app-s5", admin, true), OK, ""},
		{"beyond production", svcApp("app-s6", "production"), Conflict, "in production already"},
	})

	check := func(id, status string, steps ...string) *Application {
		t.Helper()
		app, err := a.f.Application(id)
		if err != nil || app == nil || app.Status != status || len(app.Decisions) != len(steps) {
			t.Fatalf("%s: %+v %v, want %s after %v", id, app, err, status, steps)
		}
		for i, s := range steps {
			if d := app.Decisions[i]; d.Step != s || d.Reason != "because" || d.Reviewer == "" {
				t.Fatalf("%s decision %d: %+v", id, i, d)
			}
		}
		return app
	}
	check("app-moi1", AppApproved, StepAdmin)
	if app := check("app-nccu1", AppRefused, StepAuthority); app.Decisions[0].Approve || app.Sector != "education" {
		t.Fatalf("authority refusal: %+v", app)
	}
	check("app-nccu2", AppApproved, StepAuthority, StepAdmin)
	check("app-s4", AppRefused, StepAuthority, StepAdmin)
	check("app-s5", AppApproved, StepAuthority, StepAdmin)
	if o, _ := a.f.Org("nccu"); o == nil || o.Type != "university" {
		t.Fatalf("approved org: %+v", o)
	}
	if s, _ := a.f.Service("nccu.aid"); s == nil || s.Stage != hubapi.StageProduction {
		t.Fatalf("service after production: %+v", s)
	}
	if d, _ := a.f.Dataset("moi.household"); d == nil || d.Stage != hubapi.StageSandbox {
		t.Fatalf("dataset after sandbox: %+v", d)
	}
	// Production serves everyone: the pilot's subjects are gone.
	if ok, err := a.f.PilotSubject(ApplyService, "nccu.aid", "h1"); ok || err != nil {
		t.Fatalf("pilot subject kept in production: %v %v", ok, err)
	}
	if l, _ := a.f.Applications(ApplicationFilter{Sector: "education", Status: AppRefused}); len(l) != 2 {
		t.Fatalf("refused education applications: %+v", l)
	}
}

// TestPilotSubjectsKept checks a pilot's test subjects are kept while it is at pilot.
func TestPilotSubjectsKept(t *testing.T) {
	a := &applier{t: t, f: open(t, filepath.Join(t.TempDir(), "state.db"))}
	now := time.Now()
	a.apply(&OrgAdd{Code: "moi", NameZh: "內政部", NameEn: "MOI", Type: "central-agency", Now: now})
	a.apply(&ConnectorAdd{Org: "moi", Name: "dp1", Roles: []string{"dp"}, Address: "a:1", Now: now})
	ds := Dataset{ID: "moi.household", NameZh: "戶籍", NameEn: "Household", DPOrg: "moi", DPConnector: "dp1", MinAAL: 2, ContentType: "application/json"}
	for i, stage := range []string{"sandbox", "pilot"} {
		id := []string{"app-a1", "app-a2"}[i]
		var subjects []string
		if stage == "pilot" {
			subjects = []string{"k1:aa", "k1:bb"}
		}
		if r := a.apply(&ApplicationSubmit{Application: Application{ID: id, Kind: ApplyDataset, Stage: stage, Dataset: &ds, TestSubjects: subjects}, Actor: testAdmin, Now: now}); r.Code != OK {
			t.Fatal(r)
		}
		if r := a.apply(&ApplicationDecide{ID: id, Actor: testAdmin, Approve: true, Reason: "ok", Now: now}); r.Code != OK {
			t.Fatal(r)
		}
	}
	for h, want := range map[string]bool{"k1:aa": true, "k1:bb": true, "k1:cc": false} {
		if ok, err := a.f.PilotSubject(ApplyDataset, "moi.household", h); ok != want || err != nil {
			t.Errorf("%s: %v %v", h, ok, err)
		}
	}
}
