package api

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"

	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/pkg/hubapi"
)

// PathApplications is where organisations, services and datasets apply, and are reviewed and decided.
const PathApplications = "/v1/admin/applications"

// Access to the application endpoints. The scope (which organisation an applicant files for, which sector
// a reviewer reviews) is checked again on apply, against the application's state.
var (
	accessApply  = []string{fsm.RoleFederationAdmin, fsm.RoleApplicant}
	accessReview = []string{fsm.RoleReviewer}
)

// ApplicationRequest files an application: one of Org, Service or Dataset, by Kind. TestSubjects are a
// pilot's citizens by national ID; the hub keeps only their keyed hashes.
type ApplicationRequest struct {
	Kind         string          `json:"kind"`
	Stage        string          `json:"stage,omitempty"`
	Authority    string          `json:"authority,omitempty"`
	Note         string          `json:"note,omitempty"`
	Org          *hubapi.Org     `json:"org,omitempty"`
	Service      *hubapi.Service `json:"service,omitempty"`
	Dataset      *hubapi.Dataset `json:"dataset,omitempty"`
	TestSubjects []string        `json:"test_subjects,omitempty"`
	// On, Target and EffectiveOn are a change's, suspension's, resumption's or termination's: service or
	// dataset, its id, and the day (YYYY-MM-DD, Taipei) it takes effect.
	On          string `json:"on,omitempty"`
	Target      string `json:"target,omitempty"`
	EffectiveOn string `json:"effective_on,omitempty"`
	// ContactEmail is where the hub e-mails the applicant the decisions and the day it takes effect; an
	// organisation's joining or change application makes it the organisation's contact.
	ContactEmail string `json:"contact_email,omitempty"`
}

// DecisionRequest is a reviewer's or the administrator's decision.
type DecisionRequest struct {
	Approve bool   `json:"approve"`
	Reason  string `json:"reason"`
}

// ApplicationView is an application as the API shows it: the test subjects counted, not listed.
type ApplicationView struct {
	fsm.Application
	TestSubjects int `json:"test_subjects"`
	// DatasetCount and OverLimit are the five-dataset rule as the reviewer sees it.
	DatasetCount int  `json:"dataset_count,omitempty"`
	OverLimit    bool `json:"over_limit,omitempty"`
}

func viewOf(a fsm.Application) ApplicationView {
	v := ApplicationView{Application: a, TestSubjects: len(a.TestSubjects)}
	v.Application.TestSubjects = nil
	if a.Service != nil {
		v.DatasetCount = len(a.Service.Datasets)
		v.OverLimit = v.DatasetCount > hubapi.MaxDatasetsWithoutBasis
	}
	return v
}

// sees says whether an operator may read an application: the administrator and the auditor read all,
// an applicant its organisation's, a reviewer its sector's.
func sees(roles []string, a *fsm.Application) bool {
	return fsm.Holds(roles, fsm.RoleFederationAdmin) || fsm.Holds(roles, fsm.RoleAuditor) ||
		fsm.Holds(roles, fsm.RoleApplicant+":"+a.Org) || a.Sector != "" && fsm.Holds(roles, fsm.RoleReviewer+":"+a.Sector)
}

func newApplicationID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "app-" + hex.EncodeToString(b)
}

func (s *Server) submitApplication(w http.ResponseWriter, r *http.Request) {
	var req ApplicationRequest
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	app := fsm.Application{ID: newApplicationID(), Kind: req.Kind, Stage: req.Stage, Authority: req.Authority, Note: req.Note,
		On: req.On, Target: req.Target, EffectiveOn: req.EffectiveOn, ContactEmail: req.ContactEmail}
	if req.Org != nil {
		if req.Org.ContactEmail != "" {
			// Not dropped in silence: the application's address is the one the organisation gets.
			writeError(w, http.StatusBadRequest, "org.contact_email: give the application's contact_email; it becomes the organisation's")
			return
		}
		app.OrgInfo = &fsm.OrgAdd{Code: req.Org.Code, NameZh: req.Org.NameZh, NameEn: req.Org.NameEn, Type: req.Org.Type}
	}
	if req.Service != nil {
		svc := fsm.ServiceFrom(*req.Service)
		app.Service = &svc
	}
	if req.Dataset != nil {
		d := fsm.DatasetFrom(*req.Dataset)
		app.Dataset = &d
	}
	for _, id := range req.TestSubjects {
		if id == "" || len(id) > 64 {
			writeError(w, http.StatusBadRequest, "test_subjects: a national ID each")
			return
		}
		h, err := s.cfg.Keyring.LookupHash(id)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if !slices.Contains(app.TestSubjects, h) {
			app.TestSubjects = append(app.TestSubjects, h)
		}
	}
	cmd := &fsm.ApplicationSubmit{Application: app, Actor: actorOf(r), Now: s.now()}
	target := req.Target
	switch {
	case req.Org != nil:
		target = req.Org.Code
	case req.Service != nil:
		target = req.Service.ID
	case req.Dataset != nil:
		target = req.Dataset.ID
	}
	params := map[string]string{"id": app.ID, "kind": req.Kind, "target": target, "stage": req.Stage, "on": req.On, "effective_on": req.EffectiveOn}
	if len(app.TestSubjects) > 0 {
		params["test_subjects"] = fmt.Sprint(len(app.TestSubjects))
	}
	if err := s.act(r, "application submit", params, cmd); err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, "application submit", "application", app.ID, "kind", req.Kind, "target", target)
	s.respondApplication(w, r, http.StatusCreated, app.ID)
}

func (s *Server) respondApplication(w http.ResponseWriter, r *http.Request, status int, id string) {
	a, err := s.cfg.State.Application(id)
	if err != nil || a == nil {
		s.fail(w, r, fmt.Errorf("read back application: %v", err))
		return
	}
	writeJSON(w, status, viewOf(*a))
}

func (s *Server) listApplications(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	apps, err := s.cfg.State.Applications(fsm.ApplicationFilter{Org: q.Get("org"), Sector: q.Get("sector"), Status: q.Get("status"), Kind: q.Get("kind")})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	roles := actorOf(r).Roles
	out := []ApplicationView{}
	for i := range apps {
		if sees(roles, &apps[i]) {
			out = append(out, viewOf(apps[i]))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) showApplication(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	a, err := s.cfg.State.Application(id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// Another organisation's or sector's application is answered as one that does not exist.
	if a == nil || !sees(actorOf(r).Roles, a) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("application %s does not exist", id))
		return
	}
	writeJSON(w, http.StatusOK, viewOf(*a))
}

func (s *Server) reviewApplication(w http.ResponseWriter, r *http.Request) {
	s.decideApplication(w, r, "application review")
}

func (s *Server) decideApplicationAdmin(w http.ResponseWriter, r *http.Request) {
	s.decideApplication(w, r, "application decide")
}

func (s *Server) decideApplication(w http.ResponseWriter, r *http.Request, op string) {
	id := r.PathValue("id")
	var req DecisionRequest
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var cmd fsm.Command
	if op == "application review" {
		cmd = &fsm.ApplicationReview{ID: id, Actor: actorOf(r), Approve: req.Approve, Reason: req.Reason, Now: s.now()}
	} else {
		cmd = &fsm.ApplicationDecide{ID: id, Actor: actorOf(r), Approve: req.Approve, Reason: req.Reason, Now: s.now()}
	}
	if err := s.act(r, op, map[string]string{"id": id, "approve": fmt.Sprint(req.Approve), "reason": req.Reason}, cmd); err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, op, "application", id, "approve", req.Approve)
	s.respondApplication(w, r, http.StatusOK, id)
}

// Paths of the calendar and of emergency suspensions.
const (
	PathCalendar = "/v1/admin/calendar"
	PathSuspend  = "/v1/admin/suspend"
)

// SuspendRequest is an emergency suspension of a service or a dataset: at once, without notice.
type SuspendRequest struct {
	On     string `json:"on"`
	Target string `json:"target"`
	Reason string `json:"reason"`
}

func (s *Server) loadCalendar(w http.ResponseWriter, r *http.Request) {
	var c fsm.CalendarLoad
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &c); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	c.Now = s.now()
	if err := s.act(r, "calendar load", map[string]string{"year": fmt.Sprint(c.Year), "days": fmt.Sprint(len(c.Days))}, &c); err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, "calendar load", "year", c.Year)
	s.showCalendar(w, r, c.Year)
}

func (s *Server) getCalendar(w http.ResponseWriter, r *http.Request) {
	var year int
	if _, err := fmt.Sscan(r.URL.Query().Get("year"), &year); err != nil {
		writeError(w, http.StatusBadRequest, "year: required")
		return
	}
	s.showCalendar(w, r, year)
}

func (s *Server) showCalendar(w http.ResponseWriter, r *http.Request, year int) {
	days, err := s.cfg.State.CalendarDays(year)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, fsm.CalendarLoad{Year: year, Days: days})
}

func (s *Server) suspendNow(w http.ResponseWriter, r *http.Request) {
	var req SuspendRequest
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	cmd := &fsm.Suspend{On: req.On, Target: req.Target, Reason: req.Reason, Now: s.now()}
	if err := s.act(r, req.On+" suspend", map[string]string{"on": req.On, "target": req.Target, "reason": req.Reason, "emergency": "true"}, cmd); err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, "emergency suspend", "on", req.On, "target", req.Target)
	writeJSON(w, http.StatusOK, req)
}
