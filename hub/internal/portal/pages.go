package portal

import (
	"encoding/csv"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/pkg/audit"
	"github.com/mydatafed/mydata/pkg/hubapi"
)

func (s *Server) home(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "home.html", "home.title", nil)
}

// setLang remembers the citizen's language for a year, and goes back to the page they were on.
func (s *Server) setLang(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || !s.checkCSRF(r, "lang") {
		s.errorPage(w, r, http.StatusForbidden, "error.invalid", message("error.csrf"))
		return
	}
	lang := r.PostForm.Get("lang")
	if lang != langZh && lang != langEn {
		s.errorPage(w, r, http.StatusBadRequest, "error.invalid", message("error.lang"))
		return
	}
	s.setCookie(w, langCookie, lang, 365*24*time.Hour)
	http.Redirect(w, r, s.safeNext(r.PostForm.Get("next")), http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || !s.checkCSRF(r, "logout") {
		s.errorPage(w, r, http.StatusForbidden, "error.invalid", message("error.csrf"))
		return
	}
	s.clearSession(w)
	next := "/"
	if n := r.PostForm.Get("next"); n != "" {
		next = s.safeNext(n)
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// orgName is an organisation's name in the page's language, or its id if it has none.
func (s *Server) orgName(r *http.Request, id string) string {
	if o, err := s.cfg.State.Org(id); err == nil && o != nil {
		return pickLang(requestLang(r), o.NameZh, o.NameEn)
	}
	return id
}

func pickLang(lang, zh, en string) string {
	if lang == langZh || en == "" {
		return zh
	}
	return en
}

type catalogueRow struct {
	hubapi.Dataset
	Holder  string
	Accepts []Method
}

func (s *Server) catalogue(w http.ResponseWriter, r *http.Request) {
	all, err := s.cfg.State.Datasets()
	if err != nil {
		s.internalError(w, r, "list datasets", err)
		return
	}
	// Citizens see the datasets in production: one in its sandbox or pilot is not theirs to use yet.
	ds := make([]hubapi.Dataset, 0, len(all))
	for _, d := range all {
		if hubapi.StageOf(d.Stage) == hubapi.StageProduction {
			ds = append(ds, d)
		}
	}
	s.render(w, r, http.StatusOK, "catalogue.html", "catalogue.title", map[string]any{"Datasets": s.catalogueRows(r, ds), "Announcements": s.announcements(r, nil, nil)})
}

// catalogueRows are datasets as the catalogue and the download page list them: with their holder and, for
// a dataset whose agency names the methods it accepts, those methods.
func (s *Server) catalogueRows(r *http.Request, ds []hubapi.Dataset) []catalogueRow {
	rows := make([]catalogueRow, 0, len(ds))
	for _, d := range ds {
		row := catalogueRow{Dataset: d, Holder: s.orgName(r, d.DPOrg)}
		if len(d.Methods) > 0 {
			row.Accepts = s.sufficient(requirementsOf([]hubapi.Dataset{d}))
		}
		rows = append(rows, row)
	}
	return rows
}

func (s *Server) internalError(w http.ResponseWriter, r *http.Request, what string, err error) {
	s.log.Error(what, "err", err)
	s.errorPage(w, r, http.StatusInternalServerError, "error.internal", message("error.internal.text"))
}

// use is one dataset of a consent as the history shows it: what happened to it, in words, and every
// report of it, from the agency that sent it and from the service that received it.
type use struct {
	Dataset    string
	Name       string
	Holder     string
	Outcome    string
	OutcomeKey string
	Reports    []report
}

// report is one receipt: who reported what, when.
type report struct {
	Role       string
	Reporter   string
	Outcome    string
	OutcomeKey string
	Bytes      int64
	At         time.Time
}

type historyRow struct {
	fsm.Consent
	Effective   string
	StateKey    string
	ServiceName string
	Recipient   string
	ModeKey     string
	MethodName  string
	Uses        []use
	Revocable   bool
	// Counter is set for a counter consent.
	Counter *counterHistory
	// Download marks the citizen's own download.
	Download bool
}

// outcomeOf is what the citizen is told about one dataset in a word: the furthest any report got.
func outcomeOf(receipts []fsm.Receipt, dataset string) string {
	rank := map[string]int{"": 0, audit.OutcomePending: 1, audit.OutcomeFailed: 2, audit.OutcomeRefused: 2, audit.OutcomeNoRecord: 3, audit.OutcomeDelivered: 3}
	outcome := ""
	for _, rc := range receipts {
		if rc.Dataset == dataset && (rank[rc.Outcome] > rank[outcome] || (rank[rc.Outcome] == rank[outcome] && rc.Role == "sp")) {
			outcome = rc.Outcome
		}
	}
	return outcome
}

func outcomeKey(outcome string) string {
	if k, ok := outcomeKeys[outcome]; ok {
		return k
	}
	return "outcome.other"
}

var outcomeKeys = map[string]string{
	"": "outcome.none", audit.OutcomePending: "outcome.pending", audit.OutcomeFailed: "outcome.failed", audit.OutcomeRefused: "outcome.refused",
	audit.OutcomeNoRecord: "outcome.no_record", audit.OutcomeDelivered: "outcome.delivered",
}

var stateKeys = map[string]string{
	fsm.ConsentPending: "state.pending", fsm.ConsentGranted: "state.granted", fsm.ConsentUsed: "state.used",
	fsm.ConsentDenied: "state.denied", fsm.ConsentExpired: "state.expired", fsm.ConsentRevoked: "state.revoked",
}

// historyRange reads the filter: dates in the portal's zone, "to" inclusive.
func (s *Server) historyRange(r *http.Request) (from, to time.Time, fromS, toS string, err error) {
	q := r.URL.Query()
	fromS, toS = q.Get("from"), q.Get("to")
	if fromS != "" {
		if from, err = time.ParseInLocation(time.DateOnly, fromS, s.cfg.Location); err != nil {
			return from, to, "", "", errors.New("from")
		}
	}
	if toS != "" {
		if to, err = time.ParseInLocation(time.DateOnly, toS, s.cfg.Location); err != nil {
			return from, to, "", "", errors.New("to")
		}
		to = to.AddDate(0, 0, 1)
	}
	return from, to, fromS, toS, nil
}

func (s *Server) historyRows(r *http.Request, sess *Session, from, to time.Time) ([]historyRow, error) {
	consents, err := s.cfg.Consent.History(sess.Subject, 500)
	if err != nil {
		return nil, err
	}
	lang := requestLang(r)
	now := s.now()
	var rows []historyRow
	for _, c := range consents {
		if (!from.IsZero() && c.CreatedAt.Before(from)) || (!to.IsZero() && !c.CreatedAt.Before(to)) {
			continue
		}
		row := historyRow{Consent: c, Effective: c.EffectiveState(now), ServiceName: c.Service, Recipient: c.Service, ModeKey: "mode.online"}
		row.StateKey = stateKeys[row.Effective]
		if svc, err := s.cfg.State.Service(c.Service); err == nil && svc != nil {
			row.ServiceName = pickLang(lang, svc.NameZh, svc.NameEn)
			row.Recipient = s.orgName(r, svc.SPOrg)
		}
		row.MethodName = c.LoginMethod
		if m, ok := s.method(c.LoginMethod); ok {
			row.MethodName = pickLang(lang, m.NameZh, m.NameEn)
		}
		receipts, _ := s.cfg.State.Receipts(c.ID)
		for _, id := range c.Datasets {
			u := use{Dataset: id, Name: id, Holder: ""}
			if d, err := s.cfg.State.Dataset(id); err == nil && d != nil {
				u.Name, u.Holder = pickLang(lang, d.NameZh, d.NameEn), s.orgName(r, d.DPOrg)
			}
			u.Outcome = outcomeOf(receipts, id)
			u.OutcomeKey = outcomeKey(u.Outcome)
			for _, rc := range receipts {
				if rc.Dataset != id {
					continue
				}
				who := u.Holder
				if rc.Role == "sp" {
					who = row.Recipient
				}
				u.Reports = append(u.Reports, report{Role: rc.Role, Reporter: who, Outcome: rc.Outcome, OutcomeKey: outcomeKey(rc.Outcome), Bytes: rc.Bytes, At: rc.At})
			}
			row.Uses = append(row.Uses, u)
		}
		row.Revocable = row.Effective == fsm.ConsentPending || row.Effective == fsm.ConsentGranted
		s.counterRow(r, &row)
		s.downloadRow(r, &row)
		rows = append(rows, row)
	}
	return rows, nil
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	sess := sessionOf(r)
	if sess == nil {
		http.Redirect(w, r, "/login?next=/history", http.StatusSeeOther)
		return
	}
	data := map[string]any{"Zone": s.cfg.Location.String()}
	from, to, fromS, toS, err := s.historyRange(r)
	data["From"], data["To"] = fromS, toS
	if err != nil {
		data["Message"] = message("history.bad_date")
		s.render(w, r, http.StatusBadRequest, "history.html", "history.title", data)
		return
	}
	rows, err := s.historyRows(r, sess, from, to)
	if err != nil {
		s.internalError(w, r, "read history", err)
		return
	}
	data["Rows"] = rows
	s.render(w, r, http.StatusOK, "history.html", "history.title", data)
}

// historyCSV is the same history as a spreadsheet: a row per dataset of every consent, with a BOM so that
// spreadsheet programs read the Chinese names as UTF-8.
func (s *Server) historyCSV(w http.ResponseWriter, r *http.Request) {
	sess := sessionOf(r)
	if sess == nil {
		http.Redirect(w, r, "/login?next=/history", http.StatusSeeOther)
		return
	}
	from, to, _, _, err := s.historyRange(r)
	if err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "error.invalid", message("history.bad_date"))
		return
	}
	rows, err := s.historyRows(r, sess, from, to)
	if err != nil {
		s.internalError(w, r, "read history", err)
		return
	}
	lang := requestLang(r)
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="mydata-history.csv"`)
	_, _ = w.Write([]byte("\ufeff"))
	cw := csv.NewWriter(w)
	header := []string{}
	for _, k := range []string{"csv.time", "csv.consent_id", "csv.service", "csv.recipient", "csv.mode", "csv.state", "csv.dataset", "csv.holder", "csv.outcome", "csv.bytes", "csv.delivered_at"} {
		header = append(header, tr(lang, k))
	}
	_ = cw.Write(header)
	ft := fmtTime(s.cfg.Location)
	for _, row := range rows {
		for _, u := range row.Uses {
			var bytes int64
			var at time.Time
			for _, rp := range u.Reports {
				bytes, at = max(bytes, rp.Bytes), rp.At
			}
			_ = cw.Write([]string{ft(row.CreatedAt), row.ID, row.ServiceName, row.Recipient, tr(lang, row.ModeKey), tr(lang, row.StateKey),
				u.Name, u.Holder, tr(lang, u.OutcomeKey), strconv.FormatInt(bytes, 10), ft(at)})
		}
	}
	cw.Flush()
}

// ownConsent finds one of the session's consents in its history, for the revocation pages.
func (s *Server) ownConsent(r *http.Request, sess *Session, id string) (*historyRow, error) {
	rows, err := s.historyRows(r, sess, time.Time{}, time.Time{})
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(rows, func(h historyRow) bool { return h.ID == id })
	if i < 0 {
		return nil, nil
	}
	return &rows[i], nil
}

func (s *Server) revokePage(w http.ResponseWriter, r *http.Request) {
	sess := sessionOf(r)
	if sess == nil {
		http.Redirect(w, r, "/login?next=/history", http.StatusSeeOther)
		return
	}
	id := r.PathValue("id")
	row, err := s.ownConsent(r, sess, id)
	if err != nil {
		s.internalError(w, r, "read history", err)
		return
	}
	if row == nil || !row.Revocable {
		s.errorPage(w, r, http.StatusNotFound, "revoke.cannot", message("revoke.not_found"))
		return
	}
	title := "revoke.title"
	if row.Counter != nil {
		title = "cancel.title"
	}
	s.render(w, r, http.StatusOK, "revoke.html", title, map[string]any{"ID": id, "ServiceName": row.ServiceName, "Counter": row.Counter != nil, "CSRF": s.csrf(r, "revoke:"+id)})
}

func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	sess := sessionOf(r)
	if sess == nil {
		http.Redirect(w, r, "/login?next=/history", http.StatusSeeOther)
		return
	}
	id := r.PathValue("id")
	if err := r.ParseForm(); err != nil || !s.checkCSRF(r, "revoke:"+id) {
		s.errorPage(w, r, http.StatusForbidden, "error.invalid", message("error.csrf"))
		return
	}
	if err := s.cfg.Consent.Revoke(id, sess.Subject, s.now()); err != nil {
		var fe *fsm.Error
		if !errors.As(err, &fe) {
			// No leader within the hold timeout, or the outcome is unknown: not the consent's fault.
			s.log.Warn("revoke a consent", "err", err)
			w.Header().Set("Retry-After", "2")
			s.errorPage(w, r, http.StatusServiceUnavailable, "error.retry", message("revoke.unavailable"))
			return
		}
		s.errorPage(w, r, http.StatusConflict, "revoke.cannot", message("revoke.refused"))
		return
	}
	http.Redirect(w, r, "/history", http.StatusSeeOther)
}
