package portal

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/mydatafed/mydata/hub/internal/consent"
	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/hub/internal/identity"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/nationalid"
)

// Counter verification (臨櫃核驗免檢據): the citizen picks a counter service, agrees to show its datasets at
// the service's counter, and gets a code (and its QR code) to show there; counter staff redeem it through
// the SP connector (consent.Service.RedeemCounter).

// counterServices are the active services registered with the counter mode whose SP connector is active.
func (s *Server) counterServices() ([]hubapi.Service, error) {
	all, err := s.cfg.State.Services()
	if err != nil {
		return nil, err
	}
	var out []hubapi.Service
	for _, svc := range all {
		if svc.Status == hubapi.StatusActive && slices.Contains(svc.Modes, hubapi.ModeCounter) {
			out = append(out, svc)
		}
	}
	return out, nil
}

type counterServiceRow struct {
	hubapi.Service
	SP string
}

func (s *Server) counterList(w http.ResponseWriter, r *http.Request) {
	svcs, err := s.counterServices()
	if err != nil {
		s.internalError(w, r, "list counter services", err)
		return
	}
	rows := make([]counterServiceRow, 0, len(svcs))
	for _, svc := range svcs {
		rows = append(rows, counterServiceRow{svc, s.orgName(r, svc.SPOrg)})
	}
	s.render(w, r, http.StatusOK, "counter.html", "counter.title", map[string]any{"Services": rows})
}

// counterService reads a counter service and its datasets; nil when there is no such active service.
func (s *Server) counterService(ctx context.Context, id string) (*hubapi.Service, []hubapi.Dataset, error) {
	svc, err := s.cfg.State.Service(id)
	if err == nil && svc == nil && s.cfg.Sync != nil {
		if err = s.cfg.Sync(ctx); err == nil {
			svc, err = s.cfg.State.Service(id)
		}
	}
	if err != nil || svc == nil || svc.Status != hubapi.StatusActive || !slices.Contains(svc.Modes, hubapi.ModeCounter) {
		return nil, nil, err
	}
	var ds []hubapi.Dataset
	for _, id := range svc.Datasets {
		d, err := s.cfg.State.Dataset(id)
		if err != nil {
			return nil, nil, err
		}
		if d != nil {
			ds = append(ds, *d)
		}
	}
	return svc, ds, nil
}

// counterLoginContext is the login page's context for a counter service's page: its datasets' levels and
// methods decide what login suffices, as for an authorization request.
func (s *Server) counterLoginContext(id string) loginContext {
	var lc loginContext
	svc, ds, err := s.counterService(context.Background(), id)
	if err != nil || svc == nil {
		return lc
	}
	lc.Service, lc.Datasets, lc.Reqs = svc, ds, requirementsOf(ds)
	return lc
}

// counterForm is the page's own values, kept when it is shown again with a message.
type counterForm struct {
	AgentID, AgentName string
}

// counterConsentID is what the form's consent id looks like (randomID(16)).
var counterConsentID = regexp.MustCompile(`^[A-Za-z0-9_-]{22}$`)

func (s *Server) counterPage(w http.ResponseWriter, r *http.Request) {
	s.showCounter(w, r, http.StatusOK, counterForm{}, msg{})
}

// showCounter shows a counter service's page, or sends the citizen to log in (or step up) first.
func (s *Server) showCounter(w http.ResponseWriter, r *http.Request, status int, form counterForm, m msg) {
	svc, ds, err := s.counterService(r.Context(), r.PathValue("id"))
	if err != nil {
		s.internalError(w, r, "find a counter service", err)
		return
	}
	if svc == nil {
		s.errorPage(w, r, http.StatusNotFound, "counter.unknown.title", message("counter.unknown"))
		return
	}
	sess := sessionOf(r)
	if sess == nil || !identity.Met(sess.Method, sess.Level, requirementsOf(ds)...) {
		http.Redirect(w, r, "/login?next="+url.QueryEscape("/counter/"+svc.ID), http.StatusSeeOther)
		return
	}
	type row struct {
		hubapi.Dataset
		Holder string
	}
	var rows []row
	for _, d := range ds {
		rows = append(rows, row{d, s.orgName(r, d.DPOrg)})
	}
	noContact := false
	if svc.CounterOTP {
		noContact = !s.hasVerifiedContact(sess.Subject)
	}
	pending := randomID(16)
	s.render(w, r, status, "counter_service.html", "counter.service.title", map[string]any{
		"Service": svc, "SP": s.orgName(r, svc.SPOrg), "Datasets": rows, "Minutes": int(s.cfg.CounterTTL.Minutes()),
		"NoContact": noContact, "Pending": pending, "CSRF": s.csrf(r, "counter:"+svc.ID+":"+pending), "Form": form, "Message": m,
	})
}

// hasVerifiedContact says whether a one-time code can reach the citizen.
func (s *Server) hasVerifiedContact(subject string) bool {
	hashes, err := s.cfg.Keys.LookupHashes(subject)
	if err != nil {
		return false
	}
	c, err := s.cfg.State.ContactOf(hashes...)
	return err == nil && c != nil && (!c.EmailVerifiedAt.IsZero() || !c.PhoneVerifiedAt.IsZero())
}

// counterAgree records the citizen's agreement and shows the code.
func (s *Server) counterAgree(w http.ResponseWriter, r *http.Request) {
	sess := sessionOf(r)
	if sess == nil {
		s.errorPage(w, r, http.StatusUnauthorized, "error.session", message("error.session.text"))
		return
	}
	id := r.PathValue("id")
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "error.invalid", message("error.form"))
		return
	}
	pending := r.PostForm.Get("pending")
	if !counterConsentID.MatchString(pending) || !s.checkCSRF(r, "counter:"+id+":"+pending) {
		s.errorPage(w, r, http.StatusForbidden, "error.invalid", message("error.csrf"))
		return
	}
	svc, ds, err := s.counterService(r.Context(), id)
	if err != nil {
		s.internalError(w, r, "find a counter service", err)
		return
	}
	if svc == nil {
		s.errorPage(w, r, http.StatusNotFound, "counter.unknown.title", message("counter.unknown"))
		return
	}
	// The datasets' requirements may have risen since the page was shown.
	if !identity.Met(sess.Method, sess.Level, requirementsOf(ds)...) {
		s.errorPage(w, r, http.StatusForbidden, "consent.level.title", message("consent.level"))
		return
	}
	form := counterForm{AgentID: strings.ToUpper(strings.TrimSpace(r.PostForm.Get("agent_id"))), AgentName: strings.TrimSpace(r.PostForm.Get("agent_name"))}
	var agent *hubapi.CounterAgent
	switch {
	case form.AgentID == "" && form.AgentName == "":
	case form.AgentID == "" || form.AgentName == "":
		s.showCounter(w, r, http.StatusBadRequest, form, message("counter.agent.both"))
		return
	case nationalid.Valid(form.AgentID) != nil:
		s.showCounter(w, r, http.StatusBadRequest, form, message("counter.agent.bad_id"))
		return
	case form.AgentID == sess.Subject:
		s.showCounter(w, r, http.StatusBadRequest, form, message("counter.agent.self"))
		return
	case utf8.RuneCountInString(form.AgentName) > 50 || !utf8.ValidString(form.AgentName):
		s.showCounter(w, r, http.StatusBadRequest, form, message("counter.agent.bad_name"))
		return
	default:
		agent = &hubapi.CounterAgent{NationalID: form.AgentID, Name: form.AgentName}
	}
	if svc.CounterOTP && !s.hasVerifiedContact(sess.Subject) {
		s.showCounter(w, r, http.StatusConflict, form, message("counter.otp.no_contact"))
		return
	}
	now := s.now()
	c := fsm.Consent{ID: pending, Service: svc.ID, Subject: sess.Subject, Datasets: svc.Datasets, TermsVersion: svc.TermsVersion,
		AAL: sess.Level, LoginMethod: sess.Method, CreatedAt: now}
	code, err := s.cfg.Consent.IssueCounter(c, agent, now)
	if err != nil {
		var fe *fsm.Error
		if errors.As(err, &fe) {
			s.errorPage(w, r, http.StatusConflict, "consent.final.title", message("counter.final"))
			return
		}
		s.log.Error("record a counter consent", "err", err)
		w.Header().Set("Retry-After", "2")
		s.errorPage(w, r, http.StatusServiceUnavailable, "error.retry", message("consent.unavailable"))
		return
	}
	s.metrics.decisions.WithLabelValues("counter").Inc()
	qr, err := qrDataURL(code)
	if err != nil {
		s.internalError(w, r, "draw a QR code", err)
		return
	}
	s.render(w, r, http.StatusOK, "counter_code.html", "counter.code.title", map[string]any{
		"Service": svc, "SP": s.orgName(r, svc.SPOrg), "Code": consent.FormatCounterCode(code), "QR": qr, "ExpiresAt": now.Add(s.cfg.CounterTTL),
		"Zone": s.cfg.Location.String(), "Agent": agent, "OTP": svc.CounterOTP, "ConsentID": c.ID,
	})
}

// counterHistory is what the history says of a counter consent besides an online one's.
type counterHistory struct {
	// At is the SP organisation at whose counter the code was redeemed; Terminal the terminal it named.
	At, Terminal string
}

// counterRow completes a history row of a counter consent.
func (s *Server) counterRow(r *http.Request, row *historyRow) {
	if row.Mode != hubapi.ModeCounter {
		return
	}
	row.ModeKey = "mode.counter"
	switch row.Effective {
	case fsm.ConsentGranted:
		row.StateKey = "state.counter_ready"
	case fsm.ConsentRevoked:
		row.StateKey = "state.cancelled"
	case fsm.ConsentUsed:
		row.StateKey = "state.counter_used"
	}
	row.Counter = &counterHistory{}
	if cc, err := s.cfg.Consent.CounterOf(row.ID); err == nil && cc != nil && cc.Terminal != "" {
		row.Counter.At, row.Counter.Terminal = row.Recipient, cc.Terminal
	}
}

// sendCounterCode sends the citizen a one-time code for a counter redemption (consent.OTP's Send): by text
// message when their phone is verified, else by e-mail, in the language they chose.
func (s *Server) sendCounterCode(ctx context.Context, subject, purpose string) (string, bool, error) {
	hashes, err := s.cfg.Keys.LookupHashes(subject)
	if err != nil {
		return "", false, err
	}
	contact, err := s.cfg.State.ContactOf(hashes...)
	if err != nil {
		return "", false, err
	}
	for _, channel := range []string{"sms", "email"} {
		if to, ok := s.verifiedAddress(contact, channel); ok {
			lang := contact.Lang
			if lang == "" {
				lang = langZh
			}
			id, err := s.issueCode(ctx, hashes[0], purpose, channel, to, lang)
			return id, err == nil, err
		}
	}
	return "", false, nil
}

// checkCounterCode checks the one-time code the citizen read to counter staff (consent.OTP's Check).
func (s *Server) checkCounterCode(challenge, subject, purpose, code string) error {
	hashes, err := s.cfg.Keys.LookupHashes(subject)
	if err != nil {
		return err
	}
	svc, err := s.otpService()
	if err != nil {
		return err
	}
	return svc.Check(challenge, hashes[0], purpose, code)
}

// CounterOTP is the portal's one-time codes for counter redemptions.
func (s *Server) CounterOTP() consent.OTP {
	return consent.OTPFuncs{SendFunc: s.sendCounterCode, CheckFunc: s.checkCounterCode}
}
