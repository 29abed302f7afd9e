package fsm

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/hubapi"
)

const calendar2027 = `# 2027, Taiwan (example)
2027-01-01 holiday 開國紀念日
2027-01-04 holiday 彈性放假
2027-01-09 workday 補行上班
`

func TestParseCalendar(t *testing.T) {
	for _, tc := range []struct {
		name, in, err string
	}{
		{"good", calendar2027, ""},
		{"two years", "2027-01-01 holiday\n2028-01-03 holiday\n", "one year"},
		{"weekend holiday", "2027-01-02 holiday\n", "weekend"},
		{"weekday workday", "2027-01-05 workday\n", "make-up"},
		{"twice", "2027-01-01 holiday\n2027-01-01 holiday\n", "twice"},
		{"not a date", "2027-13-01 holiday\n", "not a date"},
		{"empty", "# nothing\n", "names no day"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseCalendar(strings.NewReader(tc.in))
			if tc.err == "" {
				if err != nil || c.Year != 2027 || len(c.Days) != 3 || c.Days[0].Note != "開國紀念日" {
					t.Fatalf("%+v %v", c, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("got %v, want %q", err, tc.err)
			}
		})
	}
}

func TestNoticeDeadline(t *testing.T) {
	a := &applier{t: t, f: open(t, filepath.Join(t.TempDir(), "state.db"))}
	day := func(s string) time.Time { d, _ := Day(s); return d }
	if _, err := a.f.NoticeDeadline(day("2027-01-12")); err == nil || !strings.Contains(err.Error(), "no working-day calendar for 2027") {
		t.Fatalf("without a calendar: %v", err)
	}
	cal, _ := ParseCalendar(strings.NewReader(calendar2027))
	cal.Now = time.Now()
	if r := a.apply(cal); r.Code != OK {
		t.Fatal(r)
	}
	for _, tc := range []struct{ effective, deadline, err string }{
		// Back from Tue 12 Jan: 11, (Sat 9 is a workday) 9, 8, 7, 6, 5, (4 holiday, 3, 2, 1 holiday) 2026...
		{"2027-01-12", "", "no working-day calendar for 2026"},
		// Back from Wed 20 Jan: 19, 18, 15, 14, 13, 12, 11.
		{"2027-01-20", "2027-01-11", ""},
		// Back from Fri 15 Jan: 14, 13, 12, 11, (Sat 9 is a workday) 9, 8, 7.
		{"2027-01-15", "2027-01-07", ""},
	} {
		got, err := a.f.NoticeDeadline(day(tc.effective))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("%s: %v %v", tc.effective, got, err)
			}
			continue
		}
		if err != nil || got.Format(time.DateOnly) != tc.deadline {
			t.Fatalf("%s: deadline %v %v, want %s", tc.effective, got, err, tc.deadline)
		}
	}
}

// lifecycleFederation is a state with the working-day calendars of 2026 (Christmas) and 2027, the
// Ministry of the Interior (a central agency, no supervising authority) with its dataset, and a bank (a
// financial institution, reviewed by the FSC) with its service; now is Thu 7 Jan 2027, 11:00 in Taipei.
func lifecycleFederation(t *testing.T) (*applier, time.Time) {
	a := &applier{t: t, f: open(t, filepath.Join(t.TempDir(), "state.db"))}
	now := time.Date(2027, 1, 7, 3, 0, 0, 0, time.UTC)
	for _, y := range []string{calendar2027, "2026-12-25 holiday 行憲紀念日\n"} {
		cal, _ := ParseCalendar(strings.NewReader(y))
		cal.Now = now
		if r := a.apply(cal); r.Code != OK {
			t.Fatal(r)
		}
	}
	for _, cmd := range []Command{
		&OrgAdd{Code: "moi", NameZh: "內政部", NameEn: "MOI", Type: "central-agency", Now: now},
		&OrgAdd{Code: "bank", NameZh: "銀行", NameEn: "Bank", Type: "financial-institution", Now: now},
		&ConnectorAdd{Org: "moi", Name: "dp1", Roles: []string{"dp"}, Address: "a:1", Now: now},
		&ConnectorAdd{Org: "bank", Name: "sp1", Roles: []string{"sp"}, Address: "a:2", Now: now},
		&DatasetAdd{Dataset: Dataset{ID: "moi.household", NameZh: "戶籍", NameEn: "Household", DPOrg: "moi", DPConnector: "dp1", MinAAL: 2, ContentType: "application/json"}, Now: now},
		&ServiceAdd{Service: Service{ID: "bank.card", NameZh: "卡", NameEn: "Card", SPOrg: "bank", SPConnector: "sp1", Modes: []string{"online"},
			Datasets: []string{"moi.household"}, Purpose: "p", Terms: "t", TermsVersion: "1", RedirectURIs: []string{"https://b.example/cb"}}, Now: now},
	} {
		if r := a.apply(cmd); r.Code != OK {
			t.Fatal(r)
		}
	}
	return a, now
}

// TestLifecyclePaths: a termination filed too late is refused; filed on its last day, across a holiday, it
// is approved, scheduled, and takes effect on its day and not before; an emergency suspension takes effect
// at once; a resumption on application; the hub's effect in the operator log.
func TestLifecyclePaths(t *testing.T) {
	a, now := lifecycleFederation(t)
	bank := Actor{SPIFFEID: "spiffe://t/operator/bank", Roles: []string{"applicant:bank"}}
	fsc := Actor{SPIFFEID: "spiffe://t/operator/fsc", Roles: []string{"reviewer:financial"}}
	lifecycle := func(id, kind, on, target, effective string) *ApplicationSubmit {
		return &ApplicationSubmit{Application: Application{ID: id, Kind: kind, On: on, Target: target, EffectiveOn: effective}, Actor: bank, Now: now}
	}
	approve := func(id string) {
		t.Helper()
		for _, cmd := range []Command{
			&ApplicationReview{ID: id, Actor: fsc, Approve: true, Reason: "ok", Now: now},
			&ApplicationDecide{ID: id, Actor: testAdmin, Approve: true, Reason: "ok", Now: now},
		} {
			if r := a.apply(cmd); r.Code != OK {
				t.Fatalf("%s: %+v", id, r)
			}
		}
	}
	status := func() string {
		s, _ := a.f.Service("bank.card")
		return s.Status
	}
	// Fri 15 Jan needs filing by Thu 7 Jan (the make-up Saturday counts; the holiday on the 4th does not
	// matter); Thu 14 Jan needs Wed 6 Jan: too late today.
	steps := []struct {
		name string
		cmd  Command
		want Code
		msg  string
	}{
		{"too late", lifecycle("app-t1", ApplyTerminate, OnService, "bank.card", "2027-01-14"), Invalid, "by 2027-01-06; today is 2027-01-07"},
		{"no day", lifecycle("app-t2", ApplyTerminate, OnService, "bank.card", ""), Invalid, "effective_on"},
		{"unknown service", lifecycle("app-t3", ApplyTerminate, OnService, "bank.none", "2027-01-15"), NotFound, "does not exist"},
		{"resume an active one", lifecycle("app-t4", ApplyResume, OnService, "bank.card", ""), Conflict, "active already"},
		{"on its last day", lifecycle("app-t5", ApplyTerminate, OnService, "bank.card", "2027-01-15"), OK, ""},
	}
	for _, s := range steps {
		if r := a.apply(s.cmd); r.Code != s.want || !strings.Contains(r.Message, s.msg) {
			t.Fatalf("%s: got %+v, want %d with %q", s.name, r, s.want, s.msg)
		}
	}
	approve("app-t5")
	if app, _ := a.f.Application("app-t5"); app.Status != AppScheduled {
		t.Fatalf("approved termination: %+v", app)
	}
	// The evening before (Taipei), nothing happens; at midnight it takes effect.
	if r := a.apply(&LifecycleTick{Now: time.Date(2027, 1, 14, 15, 59, 0, 0, time.UTC)}); r.Code != OK || status() != hubapi.StatusActive {
		t.Fatalf("the day before: %+v %s", r, status())
	}
	if r := a.apply(&LifecycleTick{Now: time.Date(2027, 1, 14, 16, 0, 0, 0, time.UTC)}); r.Code != OK || status() != hubapi.StatusTerminated {
		t.Fatalf("on its day: %+v %s", r, status())
	}
	if app, _ := a.f.Application("app-t5"); app.Status != AppApproved || app.EffectedAt.IsZero() {
		t.Fatalf("effected termination: %+v", app)
	}
	// Terminated: resumption on application, no notice needed, at once on approval.
	if r := a.apply(lifecycle("app-t6", ApplySuspend, OnService, "bank.card", "2027-01-20")); r.Code != Conflict {
		t.Fatalf("suspend a terminated service: %+v", r)
	}
	if r := a.apply(lifecycle("app-t7", ApplyResume, OnService, "bank.card", "")); r.Code != OK {
		t.Fatal(r)
	}
	approve("app-t7")
	if status() != hubapi.StatusActive {
		t.Fatalf("resumed: %s", status())
	}
	// A change: the service as it will be (new terms), from its day; the stage stays.
	changed := Service{ID: "bank.card", NameZh: "卡", NameEn: "Card", SPOrg: "bank", SPConnector: "sp1", Modes: []string{"online"},
		Datasets: []string{"moi.household"}, Purpose: "p", Terms: "new terms", TermsVersion: "2", RedirectURIs: []string{"https://b.example/cb"}}
	if r := a.apply(&ApplicationSubmit{Application: Application{ID: "app-c1", Kind: ApplyChange, On: OnService, Service: &changed, EffectiveOn: "2027-01-20"}, Actor: bank, Now: now}); r.Code != OK {
		t.Fatal(r)
	}
	approve("app-c1")
	if r := a.apply(&LifecycleTick{Now: time.Date(2027, 1, 19, 16, 0, 0, 0, time.UTC)}); r.Code != OK {
		t.Fatal(r)
	}
	if s, _ := a.f.Service("bank.card"); s.TermsVersion != "2" || s.Terms != "new terms" || s.Status != hubapi.StatusActive || hubapi.StageOf(s.Stage) != hubapi.StageProduction {
		t.Fatalf("changed service: %+v", s)
	}
	// Emergency: at once, the administrator's.
	if r := a.act("dataset suspend", nil, &Suspend{On: OnDataset, Target: "moi.household", Reason: "資安事件", Now: now}); r.Code != OK {
		t.Fatal(r)
	}
	if d, _ := a.f.Dataset("moi.household"); d.Status != hubapi.StatusSuspended {
		t.Fatalf("emergency suspension: %+v", d)
	}
	entries, _ := a.f.OperatorLog(time.Time{})
	var effected bool
	for _, e := range entries {
		effected = effected || e.Op == "application effect" && e.Params["id"] == "app-t5" && e.Actor == "hub"
	}
	if !effected {
		t.Fatalf("no effect entry in %+v", entries)
	}
	if rep, _ := a.f.VerifyOperatorLog(); !rep.OK {
		t.Fatalf("operator log: %+v", rep)
	}
}
