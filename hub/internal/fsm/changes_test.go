package fsm

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/hubapi"
)

func TestValidContactEmail(t *testing.T) {
	for in, ok := range map[string]bool{
		"":                                 true,
		"it@agency.gov.tw":                 true,
		"Desk <it@agency.gov.tw>":          false,
		"it@agency.gov.tw\r\nBcc: x@y.z":   false,
		"not an address":                   false,
		strings.Repeat("a", 250) + "@b.tw": false,
	} {
		if err := ValidContactEmail(in); (err == nil) != ok {
			t.Errorf("%q: %v", in, err)
		}
	}
}

// applicantNotices lists the applicant e-mails queued, as "<application>/<event>".
func applicantNotices(t *testing.T, a *applier) []string {
	t.Helper()
	rows, err := a.f.db.Query(`SELECT ref FROM outbox WHERE kind = ? ORDER BY created_at, ref`, OutboxKindApplication)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var ref string
		if err := rows.Scan(&ref); err != nil {
			t.Fatal(err)
		}
		out = append(out, ref)
	}
	return out
}

// TestOrgChangeAndTermination: a bank (the FSC reviews first) changes its name and contact on notice; the
// FSC refuses its first termination, which ends there; the second, approved, takes effect on its day after
// the notice across a holiday, and not before: its service and dataset are terminated, its connectors
// revoked, its open application closed by the hub, and nothing more can be filed for it. The applicant is
// e-mailed each decision and effect at its contact.
func TestOrgChangeAndTermination(t *testing.T) {
	a, now := lifecycleFederation(t)
	bank := Actor{SPIFFEID: "spiffe://t/operator/bank", Roles: []string{"applicant:bank"}}
	fsc := Actor{SPIFFEID: "spiffe://t/operator/fsc", Roles: []string{"reviewer:financial"}}
	mustApply := func(what string, cmd Command) {
		t.Helper()
		if r := a.apply(cmd); r.Code != OK {
			t.Fatalf("%s: %+v", what, r)
		}
	}
	mustApply("the bank's DP connector", &ConnectorAdd{Org: "bank", Name: "dp1", Roles: []string{"dp"}, Address: "a:3", Now: now})
	// The bank's operators: one that acts for the bank alone, one that also audits, and the ministry's.
	for _, op := range []*OperatorAdd{
		{Name: "bank-it", Roles: []string{"applicant:bank"}, Now: now},
		{Name: "bank-audit", Roles: []string{"auditor", "applicant:bank"}, Now: now},
		{Name: "moi-it", Roles: []string{"applicant:moi"}, Now: now},
	} {
		mustApply("operator "+op.Name, op)
	}
	mustApply("bank-it's join token", &OperatorTokenCreate{Hash: "h-bank-it", Name: "bank-it", ExpiresAt: now.Add(time.Hour), Now: now})
	mustApply("the bank's dataset", &DatasetAdd{Dataset: Dataset{ID: "bank.accounts", NameZh: "帳戶", NameEn: "Accounts", DPOrg: "bank", DPConnector: "dp1", MinAAL: 2, ContentType: "application/json"}, Now: now})
	submit := func(id, kind string, o *OrgAdd, effective, contact string) Command {
		return &ApplicationSubmit{Application: Application{ID: id, Kind: kind, On: OnOrg, Target: "bank", OrgInfo: o, EffectiveOn: effective, ContactEmail: contact}, Actor: bank, Now: now}
	}
	renamed := &OrgAdd{Code: "bank", NameZh: "新銀行", NameEn: "New Bank", Type: "financial-institution"}
	for _, tc := range []struct {
		name string
		res  Result
		want Code
		msg  string
	}{
		{"suspend an org", a.apply(&ApplicationSubmit{Application: Application{ID: "app-o0", Kind: ApplySuspend, On: OnOrg, Target: "bank", EffectiveOn: "2027-01-20"}, Actor: bank, Now: now}), Invalid, "changes or terminates"},
		{"a change without the org", a.apply(submit("app-o1", ApplyChange, nil, "2027-01-20", "")), Invalid, "carries the org as it will be"},
		{"a termination carrying the org", a.apply(submit("app-o2", ApplyTerminate, renamed, "2027-01-20", "")), Invalid, "carries no org"},
		{"a bad contact", a.apply(submit("app-o3", ApplyChange, renamed, "2027-01-20", "Bank <it@bank.tw>")), Invalid, "contact_email"},
		{"too late", a.apply(submit("app-o4", ApplyTerminate, nil, "2027-01-14", "")), Invalid, "at least 7 working days ahead"},
		{"another org's applicant", a.apply(&ApplicationSubmit{Application: Application{ID: "app-o5", Kind: ApplyTerminate, On: OnOrg, Target: "moi", EffectiveOn: "2027-01-20"}, Actor: bank, Now: now}), Forbidden, "needs the role applicant:moi"},
	} {
		if tc.res.Code != tc.want || !strings.Contains(tc.res.Message, tc.msg) {
			t.Errorf("%s: %+v, want %d with %q", tc.name, tc.res, tc.want, tc.msg)
		}
	}

	// The change: the FSC first, then the administrator; it takes effect on its day.
	mustApply("file the change", submit("app-o6", ApplyChange, renamed, "2027-01-15", "it@bank.tw"))
	if app, _ := a.f.Application("app-o6"); app.Status != AppAuthorityReview || app.Sector != "financial" {
		t.Fatalf("filed: %+v", app)
	}
	mustApply("the FSC", &ApplicationReview{ID: "app-o6", Actor: fsc, Approve: true, Reason: "ok", Now: now})
	mustApply("the administrator", &ApplicationDecide{ID: "app-o6", Actor: testAdmin, Approve: true, Reason: "ok", Now: now})
	mustApply("tick", &LifecycleTick{Now: time.Date(2027, 1, 14, 16, 0, 0, 0, time.UTC)})
	if o, _ := a.f.Org("bank"); o.NameEn != "New Bank" || o.Status != hubapi.StatusActive {
		t.Fatalf("changed org: %+v", o)
	}
	if c, _ := a.f.OrgContact("bank"); c != "it@bank.tw" {
		t.Fatalf("contact: %q", c)
	}

	// The authority refuses the first termination: it goes back to the applicant; the administrator has
	// nothing to decide.
	mustApply("file a termination", submit("app-o7", ApplyTerminate, nil, "2027-01-20", ""))
	mustApply("the FSC refuses", &ApplicationReview{ID: "app-o7", Actor: fsc, Approve: false, Reason: "金管會不同意：客戶權益未安排", Now: now})
	if r := a.apply(&ApplicationDecide{ID: "app-o7", Actor: testAdmin, Approve: true, Reason: "ok", Now: now}); r.Code != Conflict || !strings.Contains(r.Message, "refused already") {
		t.Fatalf("the administrator after the authority's refusal: %+v", r)
	}
	// An open application of the bank's, and the second termination, approved by both.
	svc := Service{ID: "bank.card", NameZh: "卡", NameEn: "Card", SPOrg: "bank", SPConnector: "sp1", Modes: []string{"online"},
		Datasets: []string{"moi.household"}, Purpose: "p", Terms: "t2", TermsVersion: "2", RedirectURIs: []string{"https://b.example/cb"}}
	mustApply("a service change", &ApplicationSubmit{Application: Application{ID: "app-o8", Kind: ApplyChange, On: OnService, Service: &svc, EffectiveOn: "2027-02-01"}, Actor: bank, Now: now})
	mustApply("file the termination again", submit("app-o9", ApplyTerminate, nil, "2027-01-20", ""))
	mustApply("the FSC", &ApplicationReview{ID: "app-o9", Actor: fsc, Approve: true, Reason: "ok", Now: now})
	mustApply("the administrator", &ApplicationDecide{ID: "app-o9", Actor: testAdmin, Approve: true, Reason: "依申請退出", Now: now})
	if app, _ := a.f.Application("app-o9"); app.Status != AppScheduled {
		t.Fatalf("approved: %+v", app)
	}
	if list, _ := a.f.ScheduledChanges(); !slices.ContainsFunc(list, func(x Application) bool { return x.ID == "app-o9" && x.On == OnOrg }) {
		t.Fatalf("not announced: %+v", list)
	}
	// The evening before, nothing; at midnight (Taipei) everything of the bank's ends.
	mustApply("the evening before", &LifecycleTick{Now: time.Date(2027, 1, 19, 15, 59, 0, 0, time.UTC)})
	if o, _ := a.f.Org("bank"); o.Status != hubapi.StatusActive {
		t.Fatalf("the evening before: %+v", o)
	}
	mustApply("its day", &LifecycleTick{Now: time.Date(2027, 1, 19, 16, 0, 0, 0, time.UTC)})
	if o, _ := a.f.Org("bank"); o.Status != hubapi.StatusTerminated {
		t.Fatalf("org: %+v", o)
	}
	if s, _ := a.f.Service("bank.card"); s.Status != hubapi.StatusTerminated {
		t.Fatalf("service: %+v", s)
	}
	if d, _ := a.f.Dataset("bank.accounts"); d.Status != hubapi.StatusTerminated {
		t.Fatalf("dataset: %+v", d)
	}
	for _, name := range []string{"sp1", "dp1"} {
		if c, _ := a.f.Connector("bank", name); c.Status != hubapi.StatusRevoked {
			t.Fatalf("connector: %+v", c)
		}
	}
	if c, _ := a.f.Connector("moi", "dp1"); c.Status != hubapi.StatusActive {
		t.Fatalf("another org's connector: %+v", c)
	}
	// Its applicants act for it no more: the one with no other role is disabled, its token gone; the
	// auditor keeps auditing; the ministry's is untouched. The operator log says so, as the hub's.
	if op, _ := a.f.Operator("bank-it"); op.Status != OperatorDisabled {
		t.Errorf("bank-it: %+v", op)
	}
	if tok, _ := operatorToken(a.f.db, "h-bank-it"); tok != nil {
		t.Errorf("bank-it's join token outlived its organisation: %+v", tok)
	}
	if op, _ := a.f.Operator("bank-audit"); op.Status != OperatorActive || !slices.Equal(op.Roles, []string{"auditor"}) || op.ActsFor != "" {
		t.Errorf("bank-audit: %+v", op)
	}
	if op, _ := a.f.Operator("moi-it"); op.Status != OperatorActive || !slices.Equal(op.Roles, []string{"applicant:moi"}) {
		t.Errorf("moi-it: %+v", op)
	}
	entries, err := a.f.OperatorLog(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var logged []string
	for _, e := range entries {
		if e.Actor == "hub" && strings.HasPrefix(e.Op, "operator ") {
			if !strings.Contains(e.Detail, "app-o9") || e.Before == "" || e.After == "" || e.Before == e.After {
				t.Errorf("log entry %+v", e)
			}
			logged = append(logged, e.Op+" "+e.Params["name"])
		}
	}
	if want := []string{"operator roles bank-audit", "operator status bank-it"}; !slices.Equal(logged, want) {
		t.Errorf("operator log: %v, want %v", logged, want)
	}
	if app, _ := a.f.Application("app-o8"); app.Status != AppRefused || !strings.Contains(app.Decisions[len(app.Decisions)-1].Reason, "left the federation") {
		t.Fatalf("the open application: %+v", app)
	}
	for _, tc := range []struct {
		name string
		cmd  Command
	}{
		{"resume its service", &ApplicationSubmit{Application: Application{ID: "app-p1", Kind: ApplyResume, On: OnService, Target: "bank.card"}, Actor: bank, Now: now}},
		{"a stage", &ApplicationSubmit{Application: Application{ID: "app-p2", Kind: ApplyService, Stage: hubapi.StageSandbox, Service: &Service{ID: "bank.loan", NameZh: "貸", NameEn: "Loan", SPOrg: "bank", SPConnector: "sp1",
			Modes: []string{"online"}, Datasets: []string{"moi.household"}, Purpose: "p", Terms: "t", TermsVersion: "1", RedirectURIs: []string{"https://b.example/cb"}}}, Actor: bank, Now: now}},
	} {
		if r := a.apply(tc.cmd); r.Code != Forbidden {
			t.Errorf("after leaving, %s: %+v", tc.name, r)
		}
	}
	// By time: the decisions today, then the effects on their days.
	want := []string{"app-o6/scheduled", "app-o7/authority-refused", "app-o9/scheduled", "app-o6/effected", "app-o8/closed", "app-o9/effected"}
	if got := applicantNotices(t, a); !slices.Equal(got, want) {
		t.Fatalf("applicant notices %v, want %v", got, want)
	}
	n, err := a.f.ApplicantNoticeOf("app-o7/authority-refused")
	if err != nil || n.To != "it@bank.tw" || n.OrgNameEn != "New Bank" || n.Application.Decisions[0].Reason != "金管會不同意：客戶權益未安排" {
		t.Fatalf("notice: %+v %v", n, err)
	}
	if rep, _ := a.f.VerifyOperatorLog(); !rep.OK {
		t.Fatalf("operator log: %+v", rep)
	}
}

// TestDatasetChange: a dataset in production changes its definition on notice; the change is announced
// (ScheduledChanges) until its day, when the new name and login take effect with stage and status kept.
// Before production, or by another organisation, a change is refused.
func TestDatasetChange(t *testing.T) {
	a, now := lifecycleFederation(t)
	moi := Actor{SPIFFEID: "spiffe://t/operator/moi", Roles: []string{"applicant:moi"}}
	bank := Actor{SPIFFEID: "spiffe://t/operator/bank", Roles: []string{"applicant:bank"}}
	next := Dataset{ID: "moi.household", NameZh: "戶籍謄本", NameEn: "Household transcript", Description: "全戶", DPOrg: "moi", DPConnector: "dp1", MinAAL: 3, ContentType: "application/pdf"}
	change := func(id string, d Dataset, actor Actor) Result {
		return a.apply(&ApplicationSubmit{Application: Application{ID: id, Kind: ApplyChange, On: OnDataset, Dataset: &d, EffectiveOn: "2027-01-15", ContactEmail: "it@moi.gov.tw"}, Actor: actor, Now: now})
	}
	other := next
	other.DPOrg = "bank"
	if r := change("app-d1", other, bank); r.Code != Forbidden {
		t.Fatalf("another org's dataset: %+v", r)
	}
	if r := a.apply(&ApplicationSubmit{Application: Application{ID: "app-d2", Kind: ApplyDataset, Stage: hubapi.StageSandbox,
		Dataset: &Dataset{ID: "moi.new", NameZh: "新", NameEn: "New", DPOrg: "moi", DPConnector: "dp1", MinAAL: 2, ContentType: "application/json"}}, Actor: moi, Now: now}); r.Code != OK {
		t.Fatal(r)
	}
	if r := a.apply(&ApplicationDecide{ID: "app-d2", Actor: testAdmin, Approve: true, Reason: "ok", Now: now}); r.Code != OK {
		t.Fatal(r)
	}
	sandboxed := next
	sandboxed.ID = "moi.new"
	if r := change("app-d3", sandboxed, moi); r.Code != Conflict || !strings.Contains(r.Message, "is at sandbox") {
		t.Fatalf("a change in the sandbox: %+v", r)
	}
	if r := change("app-d4", next, moi); r.Code != OK {
		t.Fatal(r)
	}
	if r := a.apply(&ApplicationDecide{ID: "app-d4", Actor: testAdmin, Approve: true, Reason: "ok", Now: now}); r.Code != OK {
		t.Fatal(r)
	}
	list, _ := a.f.ScheduledChanges()
	if len(list) != 1 || list[0].Dataset == nil || list[0].Dataset.NameEn != "Household transcript" {
		t.Fatalf("announced: %+v", list)
	}
	cur, _ := a.f.Dataset("moi.household")
	if d := (DatasetChange{Now: *cur, Next: list[0].Dataset.api()}).Differs(); !slices.Equal(d, []string{"name", "description", "login", "content_type"}) {
		t.Fatalf("differs: %v", d)
	}
	if r := a.apply(&LifecycleTick{Now: time.Date(2027, 1, 14, 16, 0, 0, 0, time.UTC)}); r.Code != OK {
		t.Fatal(r)
	}
	d, _ := a.f.Dataset("moi.household")
	if d.NameEn != "Household transcript" || d.MinAAL != 3 || d.ContentType != "application/pdf" || d.Status != hubapi.StatusActive || hubapi.StageOf(d.Stage) != hubapi.StageProduction {
		t.Fatalf("changed dataset: %+v", d)
	}
	if want, got := []string{"app-d4/scheduled", "app-d4/effected"}, applicantNotices(t, a); !slices.Equal(got, want) {
		t.Fatalf("applicant notices %v, want %v", got, want)
	}
}
