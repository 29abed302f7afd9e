package portal

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/mydatafed/mydata/hub/internal/identity"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/nationalid"
)

// loginContext is what the page a login leads back to asks of it: the service and datasets of an
// authorization request, and the citizen its login hint names.
type loginContext struct {
	Service  *hubapi.Service
	Datasets []hubapi.Dataset
	Reqs     []identity.Requirement
	// Hint is the national ID a service bound the request to, if any.
	Hint string
}

// loginContextOf reads next. Anything wrong with the request there is for the authorization endpoint to
// report once the citizen is back: here it only means no context.
func (s *Server) loginContextOf(next string) loginContext {
	var lc loginContext
	u, err := url.Parse(next)
	if err == nil && strings.HasPrefix(u.Path, "/counter/") {
		return s.counterLoginContext(strings.TrimPrefix(u.Path, "/counter/"))
	}
	if err == nil && u.Path == "/download/confirm" {
		return s.downloadLoginContext(u.Query())
	}
	if err != nil || u.Path != "/oauth/authorize" {
		return lc
	}
	q, _, perr := s.requestParams(u.Query())
	if perr != nil {
		return lc
	}
	svc, err := s.cfg.State.Service(q.Get("client_id"))
	if err != nil || svc == nil {
		return lc
	}
	lc.Service = svc
	for _, id := range strings.Fields(q.Get("scope")) {
		if d, err := s.cfg.State.Dataset(id); err == nil && d != nil {
			lc.Datasets = append(lc.Datasets, *d)
		}
	}
	lc.Reqs = requirementsOf(lc.Datasets)
	if h := q.Get("login_hint"); h != "" {
		lc.Hint, _ = s.openLoginHint(h, svc.ID)
	}
	return lc
}

func requirementsOf(ds []hubapi.Dataset) []identity.Requirement {
	reqs := make([]identity.Requirement, 0, len(ds))
	for _, d := range ds {
		reqs = append(reqs, requirement(d))
	}
	return reqs
}

func needLevel(reqs []identity.Requirement) int {
	l := 1
	for _, r := range reqs {
		l = max(l, r.MinLevel)
	}
	return l
}

// renderLogin shows the login page, or the step-up page when a session is there but not enough: both list
// only the methods that would suffice.
func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, status int, next string, m msg) {
	next = s.safeNext(next)
	lc := s.loginContextOf(next)
	methods := s.sufficient(lc.Reqs)
	var dev, real []Method
	passkeyOn := false
	for _, m := range methods {
		if m.Kind == kindDev {
			dev = append(dev, m)
		} else {
			real = append(real, m)
			passkeyOn = passkeyOn || m.Kind == kindPasskey
		}
	}
	only := false
	for _, rq := range lc.Reqs {
		only = only || len(rq.Methods) > 0
	}
	title := "login.title"
	sess := sessionOf(r)
	stepUp := sess != nil && lc.Service != nil && !identity.Met(sess.Method, sess.Level, lc.Reqs...)
	if stepUp {
		title = "login.stepup.title"
	}
	hint := ""
	if lc.Hint != "" {
		hint = maskID(lc.Hint)
	}
	s.render(w, r, status, "login.html", title, map[string]any{
		"Next": next, "Service": lc.Service, "Need": needLevel(lc.Reqs), "StepUp": stepUp, "Methods": methods, "DevMethods": dev, "Real": real,
		"Passkey": passkeyOn, "PasskeyCSRF": s.passkeyLoginCSRF(r),
		"OnlyMethods": only, "Hint": hint, "CSRF": s.csrf(r, "login"), "Message": m,
	})
}

func (s *Server) passkeyLoginCSRF(r *http.Request) string {
	if s.passkeys == nil {
		return ""
	}
	return s.csrf(r, "login:"+s.passkeys.ID())
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	s.renderLogin(w, r, http.StatusOK, r.URL.Query().Get("next"), msg{})
}

// devLogin is the development login: the tester names the citizen and the method it simulates.
func (s *Server) devLogin(w http.ResponseWriter, r *http.Request) {
	if !s.cfg.DevLogin {
		s.errorPage(w, r, http.StatusNotFound, "login.title", message("login.no_method"))
		return
	}
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "error.invalid", message("error.form"))
		return
	}
	next := s.safeNext(r.PostForm.Get("next"))
	if !s.checkCSRF(r, "login") {
		s.renderLogin(w, r, http.StatusForbidden, next, message("error.csrf"))
		return
	}
	subject := strings.ToUpper(strings.TrimSpace(r.PostForm.Get("subject")))
	if r.PostForm.Has("subject_masked") {
		subject = s.loginContextOf(next).Hint
	}
	m, ok := s.method(r.PostForm.Get("method"))
	if !ok || m.Kind != kindDev {
		s.renderLogin(w, r, http.StatusBadRequest, next, message("login.choose_method"))
		return
	}
	if err := nationalid.Valid(subject); err != nil {
		s.renderLogin(w, r, http.StatusBadRequest, next, message("login.bad_id"))
		return
	}
	s.establish(w, r, identity.Result{Subject: subject, Method: m.ID, Level: m.Level, Evidence: "development login"}, next)
}

// establish starts a fresh session (a new ID on every login, so no one can plant one) and goes on.
func (s *Server) establish(w http.ResponseWriter, r *http.Request, res identity.Result, next string) {
	now := s.now().Unix()
	sess := Session{ID: randomID(16), Subject: res.Subject, Method: res.Method, Level: res.Level, Issued: now, Seen: now}
	if err := s.setSession(w, sess); err != nil {
		s.log.Warn("sign a session", "err", err)
		w.Header().Set("Retry-After", "2")
		s.errorPage(w, r, http.StatusServiceUnavailable, "error.retry", message("login.unavailable"))
		return
	}
	s.metrics.logins.WithLabelValues(res.Method).Inc()
	s.log.Info("login", "method", res.Method, "level", res.Level, "evidence", res.Evidence)
	http.Redirect(w, r, s.safeNext(next), http.StatusSeeOther)
}
