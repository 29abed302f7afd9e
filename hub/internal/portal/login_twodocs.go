package portal

import (
	"errors"
	"net/http"

	"github.com/mydatafed/mydata/hub/internal/identity"
	"github.com/mydatafed/mydata/hub/internal/identity/twodocs"
)

// twoDocsLogin checks the NHI card number and the household number (or the ID's issue date) with the
// registry. The first login this way also needs a one-time code, as on the real platform: these documents
// are known to more people than their holder.
func (s *Server) twoDocsLogin(w http.ResponseWriter, r *http.Request, m Method, subject, next string) {
	if tok := r.PostForm.Get("step_token"); tok != "" {
		st, _ := s.openStep(r, tok, m.ID)
		s.checkCodeStep(w, r, m, st, "two-docs-first-use", next)
		return
	}
	docs, ferr := parseDocuments(r)
	if ferr != nil {
		s.renderMethod(w, r, http.StatusBadRequest, m, next, message("twodocs.field", pickLang(requestLang(r), ferr.ReasonZh, ferr.Reason)), nil)
		return
	}
	err := s.cfg.Logins.TwoDocs.Client.Check(r.Context(), subject, docs)
	switch {
	case errors.Is(err, twodocs.ErrMismatch):
		s.loginFailed(r, subject, m.ID)
		s.renderMethod(w, r, http.StatusUnauthorized, m, next, message("twodocs.mismatch"), nil)
		return
	case err != nil:
		s.log.Warn("two-documents registry", "err", err)
		w.Header().Set("Retry-After", "60")
		s.renderMethod(w, r, http.StatusServiceUnavailable, m, next, message("twodocs.unavailable"), nil)
		return
	}
	res := step{Subject: subject, Method: m.ID, Level: m.Level, Evidence: docs.Evidence()}
	hashes, err := s.cfg.Keys.LookupHashes(subject)
	if err != nil {
		s.internalError(w, r, "hash a national ID", err)
		return
	}
	used, err := s.cfg.State.MethodUsedBefore(m.ID, hashes...)
	if err != nil {
		s.internalError(w, r, "read method uses", err)
		return
	}
	if used {
		s.finishLogin(w, r, identity.Result{Subject: subject, Method: m.ID, Level: m.Level, Evidence: res.Evidence}, next)
		return
	}
	channel := r.PostForm.Get("channel")
	if channel != "sms" {
		channel = "email"
	}
	res.Evidence += " + one-time code"
	s.sendAndAsk(w, r, m, res, "two-docs-first-use", channel, next)
}

// parseDocuments reads the form: the NHI card number and either the household number or the issue date
// with its type.
func parseDocuments(r *http.Request) (twodocs.Documents, *twodocs.FieldError) {
	var d twodocs.Documents
	var err error
	var fe *twodocs.FieldError
	if d.NHICard, err = twodocs.ParseNHICard(r.PostForm.Get("nhi_card")); errors.As(err, &fe) {
		return d, fe
	}
	if h := r.PostForm.Get("household"); h != "" {
		if d.Household, err = twodocs.ParseHousehold(h); errors.As(err, &fe) {
			return d, fe
		}
		return d, nil
	}
	if d.IssueDate, err = twodocs.ParseIssueDate(r.PostForm.Get("issue_date")); errors.As(err, &fe) {
		return d, fe
	}
	if d.IssueType, err = twodocs.ParseIssueType(r.PostForm.Get("issue_type")); errors.As(err, &fe) {
		return d, fe
	}
	return d, nil
}
