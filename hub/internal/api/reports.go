package api

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/mydatafed/mydata/hub/internal/fsm"
)

// Paths of the reports.
const (
	PathReportTransfers = "/v1/admin/reports/transfers"
	PathReportReview    = "/v1/admin/reports/review"
	PathReportChanges   = "/v1/admin/reports/changes"
)

// accessReports are the reports the authorities ask for: the administrator, the auditor, the reviewers.
// An applicant reads its own organisation's review material only.
var (
	accessReports      = []string{fsm.RoleFederationAdmin, fsm.RoleAuditor, fsm.RoleReviewer}
	accessReviewReport = []string{fsm.RoleFederationAdmin, fsm.RoleAuditor, fsm.RoleReviewer, fsm.RoleApplicant}
)

// period reads from and to (YYYY-MM-DD, Taipei days; to exclusive, default tomorrow); ok false when it
// has answered.
func period(w http.ResponseWriter, r *http.Request) (from, to time.Time, ok bool) {
	q := r.URL.Query()
	from, ok = fsm.Day(q.Get("from"))
	if !ok {
		writeError(w, http.StatusBadRequest, "from: want a day YYYY-MM-DD")
		return from, to, false
	}
	to = fsm.DayOf(time.Now()).AddDate(0, 0, 1)
	if v := q.Get("to"); v != "" {
		if to, ok = fsm.Day(v); !ok {
			writeError(w, http.StatusBadRequest, "to: want a day YYYY-MM-DD")
			return from, to, false
		}
	}
	return from, to, true
}

func (s *Server) reportTransfers(w http.ResponseWriter, r *http.Request) {
	from, to, ok := period(w, r)
	if !ok {
		return
	}
	if err := s.act(r, "report transfers", map[string]string{"from": r.URL.Query().Get("from"), "to": to.Format(time.DateOnly)}, nil); err != nil {
		s.fail(w, r, err)
		return
	}
	rows, err := s.cfg.State.TransferReport(from, to)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rows)
}

func (s *Server) reportChanges(w http.ResponseWriter, r *http.Request) {
	from, to, ok := period(w, r)
	if !ok {
		return
	}
	if err := s.act(r, "report changes", map[string]string{"from": r.URL.Query().Get("from"), "to": to.Format(time.DateOnly)}, nil); err != nil {
		s.fail(w, r, err)
		return
	}
	rows, err := s.cfg.State.ChangeReport(from, to)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rows)
}

func (s *Server) reportReview(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	org := q.Get("org")
	year, err := strconv.Atoi(q.Get("year"))
	if err != nil || org == "" {
		writeError(w, http.StatusBadRequest, "org and year are required")
		return
	}
	o, err := s.cfg.State.Org(org)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if o == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("organisation %q does not exist", org))
		return
	}
	roles := actorOf(r).Roles
	sector := fsm.SectorOf(o.Type)
	if !fsm.Holds(roles, fsm.RoleFederationAdmin) && !fsm.Holds(roles, fsm.RoleAuditor) && !fsm.Holds(roles, fsm.RoleApplicant+":"+org) &&
		(sector == "" || !fsm.Holds(roles, fsm.RoleReviewer+":"+sector)) {
		writeError(w, http.StatusForbidden, fmt.Sprintf("the review material of %s needs the role federation-admin, auditor, applicant:%s or its sector's reviewer", org, org))
		return
	}
	// The material names subjects (by keyed hash): who read it is logged before it is answered.
	if err := s.act(r, "report review", map[string]string{"org": org, "year": strconv.Itoa(year)}, nil); err != nil {
		s.fail(w, r, err)
		return
	}
	rows, err := s.cfg.State.ReviewReport(org, year)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rows)
}
