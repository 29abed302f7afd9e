package portal

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/mydatafed/mydata/hub/internal/consent"
	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/hub/internal/identity"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/nationalid"
	"github.com/mydatafed/mydata/pkg/seal"
)

// pkceChallenge is a base64url SHA-256: 43 characters.
var pkceChallenge = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// authRequest is a validated authorization request.
type authRequest struct {
	Service     *hubapi.Service
	RedirectURI string
	State       string
	Challenge   string
	Datasets    []hubapi.Dataset
	// BoundSubject is set when the SP bound the request to one citizen with a sealed login_hint.
	BoundSubject string
}

// oauthError redirects to the client with an RFC 6749 error: only once the client and its redirect URI
// are known to be genuine.
func (s *Server) oauthError(w http.ResponseWriter, r *http.Request, redirectURI, state, code, desc string) {
	s.metrics.authorize.WithLabelValues("redirect_error").Inc()
	u, _ := url.Parse(redirectURI)
	q := u.Query()
	q.Set("error", code)
	if desc != "" {
		q.Set("error_description", desc)
	}
	if state != "" {
		q.Set("state", state)
	}
	s.setIssuer(q)
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// authError is why a request was refused: shown on the portal (Page) when the client or its redirect URI
// cannot be trusted yet, sent back to the client otherwise (Code, Desc).
type authError struct {
	Page   bool
	Status int
	Title  string
	Msg    msg
	Code   string
	Desc   string
	// Redirect and State are where a client error goes.
	Redirect, State string
}

// validateAuthorize checks a request in the order RFC 6749 asks: client and redirect URI first, then
// everything else. pushed says the request came by PAR (a service that requires it accepts nothing else).
func (s *Server) validateAuthorize(ctx context.Context, lang string, q url.Values, pushed bool) (*authRequest, *authError) {
	page := func(status int, title string, m msg) (*authRequest, *authError) {
		return nil, &authError{Page: true, Status: status, Title: title, Msg: m}
	}
	for _, k := range []string{"client_id", "redirect_uri", "response_type", "scope", "state", "code_challenge", "code_challenge_method", "login_hint"} {
		if len(q[k]) > 1 {
			return page(http.StatusBadRequest, "error.invalid", message("authorize.repeated", k))
		}
	}
	svc, err := s.cfg.State.Service(q.Get("client_id"))
	if err == nil && svc == nil && s.cfg.Sync != nil {
		// Registered through another node a moment ago, perhaps: catch up with the leader and look again.
		if err = s.cfg.Sync(ctx); err == nil {
			svc, err = s.cfg.State.Service(q.Get("client_id"))
		}
	}
	if err != nil {
		s.log.Error("find a service", "err", err)
		return page(http.StatusInternalServerError, "error.internal", message("error.internal.text"))
	}
	if svc == nil || svc.Status != hubapi.StatusActive || !slices.Contains(svc.Modes, hubapi.ModeOnline) {
		return page(http.StatusBadRequest, "authorize.unknown.title", message("authorize.unknown", q.Get("client_id")))
	}
	name := pickLang(lang, svc.NameZh, svc.NameEn)
	if sp, err := s.cfg.State.Connector(svc.SPOrg, svc.SPConnector); err != nil || sp == nil || sp.Status != hubapi.StatusActive {
		return page(http.StatusServiceUnavailable, "authorize.unavailable.title", message("authorize.unavailable", name))
	}
	if svc.RequirePAR && !pushed {
		return page(http.StatusBadRequest, "error.invalid", message("authorize.par_required", name))
	}
	redirect := q.Get("redirect_uri")
	if !slices.Contains(svc.RedirectURIs, redirect) {
		return page(http.StatusBadRequest, "authorize.redirect.title", message("authorize.redirect", name))
	}
	state := q.Get("state")
	fail := func(code, desc string) (*authRequest, *authError) {
		return nil, &authError{Status: http.StatusBadRequest, Code: code, Desc: desc, Redirect: redirect, State: state}
	}
	if q.Get("response_type") != "code" {
		return fail("unsupported_response_type", "only response_type=code is supported")
	}
	if q.Get("code_challenge_method") != "S256" || !pkceChallenge.MatchString(q.Get("code_challenge")) {
		return fail("invalid_request", "PKCE is required: code_challenge (base64url SHA-256) with code_challenge_method=S256")
	}
	if len(state) > 512 {
		return fail("invalid_request", "state is longer than 512 bytes")
	}
	scope := strings.Fields(q.Get("scope"))
	if len(scope) == 0 {
		return fail("invalid_scope", "scope must list the datasets requested")
	}
	req := &authRequest{Service: svc, RedirectURI: redirect, State: state, Challenge: q.Get("code_challenge")}
	seen := map[string]bool{}
	for _, id := range scope {
		if seen[id] {
			return fail("invalid_scope", fmt.Sprintf("dataset %s is listed twice", id))
		}
		seen[id] = true
		if !slices.Contains(svc.Datasets, id) {
			return fail("invalid_scope", fmt.Sprintf("dataset %s is not one the service registered", id))
		}
		d, err := s.cfg.State.Dataset(id)
		if err != nil || d == nil {
			return fail("server_error", "dataset lookup failed")
		}
		req.Datasets = append(req.Datasets, *d)
	}
	if hint := q.Get("login_hint"); hint != "" {
		subject, err := s.openLoginHint(hint, svc.ID)
		if err != nil {
			return fail("invalid_request", "login_hint: "+err.Error())
		}
		req.BoundSubject = subject
	}
	return req, nil
}

// parseAuthorize reads the browser's request (or the pushed one its request_uri names) and answers the
// refusals itself. ok is false when it has answered.
func (s *Server) parseAuthorize(w http.ResponseWriter, r *http.Request) (*authRequest, bool) {
	q, pushed, perr := s.requestParams(r.URL.Query())
	if perr != nil {
		s.metrics.authorize.WithLabelValues("error_page").Inc()
		s.errorPage(w, r, http.StatusBadRequest, "error.invalid", *perr)
		return nil, false
	}
	req, aerr := s.validateAuthorize(r.Context(), requestLang(r), q, pushed)
	switch {
	case aerr == nil:
		return req, true
	case aerr.Page:
		s.metrics.authorize.WithLabelValues("error_page").Inc()
		s.errorPage(w, r, aerr.Status, aerr.Title, aerr.Msg)
	default:
		s.oauthError(w, r, aerr.Redirect, aerr.State, aerr.Code, aerr.Desc)
	}
	return nil, false
}

// openLoginHint opens "<kid>.<base64url HPKE ciphertext>" sealed to a hint key of the cluster's keyring
// (the active one, or one retired a moment ago).
func (s *Server) openLoginHint(hint, clientID string) (string, error) {
	kid, ct, ok := strings.Cut(hint, ".")
	key := s.cfg.Keys.HintKey(kid)
	if !ok || key == nil {
		return "", errors.New("not sealed to a key of this hub")
	}
	raw, err := base64.RawURLEncoding.DecodeString(ct)
	if err != nil || len(raw) > 4096 {
		return "", errors.New("malformed")
	}
	pt, err := seal.Open(key, hubapi.LoginHintInfo(clientID), raw)
	if err != nil {
		return "", errors.New("cannot be opened")
	}
	if err := nationalid.Valid(string(pt)); err != nil {
		return "", errors.New("does not hold a national ID")
	}
	return string(pt), nil
}

func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	req, ok := s.parseAuthorize(w, r)
	if !ok {
		return
	}
	reqs := requirementsOf(req.Datasets)
	sess := sessionOf(r)
	if sess == nil || !identity.Met(sess.Method, sess.Level, reqs...) {
		// To the login page, or the step-up page when the session is not enough: it lists the methods that
		// suffice and comes back here.
		s.metrics.authorize.WithLabelValues("login").Inc()
		http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return
	}
	if req.BoundSubject != "" && req.BoundSubject != sess.Subject {
		s.metrics.authorize.WithLabelValues("error_page").Inc()
		s.render(w, r, http.StatusForbidden, "mismatch.html", "mismatch.title", map[string]any{
			"Service": req.Service, "Again": r.URL.RequestURI(),
			"Back": s.errorURL(req.RedirectURI, req.State, "access_denied", hubapi.DeniedOtherCitizen),
		})
		return
	}
	now := s.now()
	c := fsm.Consent{
		ID: randomID(16), Service: req.Service.ID, Subject: sess.Subject, TermsVersion: req.Service.TermsVersion,
		AAL: sess.Level, LoginMethod: sess.Method, RedirectURI: req.RedirectURI, CodeChallenge: req.Challenge, OAuthState: req.State,
		CreatedAt: now, ExpiresAt: now.Add(s.cfg.PendingTTL),
	}
	for _, d := range req.Datasets {
		c.Datasets = append(c.Datasets, d.ID)
	}
	// The request waits in the page, signed, rather than in raft: most of the cost of a consent page would
	// otherwise be a raft entry for a decision that may never come. The signature binds it to this
	// session, so no other session of the same citizen can decide it.
	pending, err := json.Marshal(c)
	if err != nil {
		s.internalError(w, r, "encode a consent", err)
		return
	}
	form := base64.RawURLEncoding.EncodeToString(pending)
	s.metrics.authorize.WithLabelValues("consent_page").Inc()
	type row struct {
		hubapi.Dataset
		Holder string
	}
	var rows []row
	for _, d := range req.Datasets {
		rows = append(rows, row{d, s.orgName(r, d.DPOrg)})
	}
	// Browsers hold the consent form's redirect to the service to the page's form-action.
	if u, err := url.Parse(req.RedirectURI); err == nil {
		w.Header().Set("Content-Security-Policy", csp(u.Scheme+"://"+u.Host))
	}
	s.render(w, r, http.StatusOK, "consent.html", "consent.title", map[string]any{
		"Service": req.Service, "SP": s.orgName(r, req.Service.SPOrg), "Datasets": rows, "Consent": c, "Pending": form, "CSRF": s.csrf(r, "consent:"+form),
		"Announcements": s.announcements(r, []string{req.Service.ID}, c.Datasets),
	})
}

// setIssuer names the portal in every authorization response (RFC 9207), so that a service talking to
// several authorization servers cannot be handed another's code.
func (s *Server) setIssuer(q url.Values) {
	if s.cfg.PublicURL != "" {
		q.Set("iss", strings.TrimSuffix(s.cfg.PublicURL, "/"))
	}
}

func (s *Server) errorURL(redirect, state, code, desc string) string {
	u, _ := url.Parse(redirect)
	q := u.Query()
	q.Set("error", code)
	q.Set("error_description", desc)
	if state != "" {
		q.Set("state", state)
	}
	s.setIssuer(q)
	u.RawQuery = q.Encode()
	return u.String()
}

func (s *Server) decide(w http.ResponseWriter, r *http.Request) {
	sess := sessionOf(r)
	if sess == nil {
		s.errorPage(w, r, http.StatusUnauthorized, "error.session", message("error.session.text"))
		return
	}
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "error.invalid", message("error.form"))
		return
	}
	form := r.PostForm.Get("pending")
	if !s.checkCSRF(r, "consent:"+form) {
		// Another browser, another session of the same citizen, or a forged form.
		s.errorPage(w, r, http.StatusForbidden, "error.invalid", message("consent.other_session"))
		return
	}
	var c fsm.Consent
	raw, err := base64.RawURLEncoding.DecodeString(form)
	if err == nil {
		err = json.Unmarshal(raw, &c)
	}
	if err != nil || c.Subject != sess.Subject {
		// Only this hub signs the form, for this session: this is a bug or a changed key format.
		s.errorPage(w, r, http.StatusBadRequest, "error.invalid", message("consent.unreadable"))
		return
	}
	// The datasets' requirements may have risen since the page was shown.
	var ds []hubapi.Dataset
	for _, id := range c.Datasets {
		d, err := s.cfg.State.Dataset(id)
		if err != nil || d == nil {
			s.errorPage(w, r, http.StatusConflict, "consent.changed.title", message("consent.changed"))
			return
		}
		ds = append(ds, *d)
	}
	if !identity.Met(sess.Method, sess.Level, requirementsOf(ds)...) {
		s.errorPage(w, r, http.StatusForbidden, "consent.level.title", message("consent.level"))
		return
	}
	approve := r.PostForm.Get("decision") == "approve"
	code, err := s.cfg.Consent.Decide(c, approve, s.now())
	if err != nil {
		var fe *fsm.Error
		if errors.Is(err, consent.ErrNotPilotSubject) {
			s.errorPage(w, r, http.StatusForbidden, "consent.pilot.title", message("consent.pilot"))
			return
		}
		if errors.As(err, &fe) {
			status := http.StatusConflict
			if fe.Code == fsm.Gone {
				status = http.StatusGone
			}
			s.errorPage(w, r, status, "consent.final.title", message("consent.final"))
			return
		}
		s.log.Error("record consent", "err", err)
		w.Header().Set("Retry-After", "2")
		s.errorPage(w, r, http.StatusServiceUnavailable, "error.retry", message("consent.unavailable"))
		return
	}
	if !approve {
		s.metrics.decisions.WithLabelValues("deny").Inc()
		http.Redirect(w, r, s.errorURL(c.RedirectURI, c.OAuthState, "access_denied", hubapi.DeniedByCitizen), http.StatusFound)
		return
	}
	s.metrics.decisions.WithLabelValues("approve").Inc()
	u, _ := url.Parse(c.RedirectURI)
	q := u.Query()
	q.Set("code", code)
	if c.OAuthState != "" {
		q.Set("state", c.OAuthState)
	}
	s.setIssuer(q)
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}
