package portal

import (
	"errors"
	"net/http"

	"github.com/mydatafed/mydata/hub/internal/identity"
	"github.com/mydatafed/mydata/hub/internal/identity/oidclogin"
	"github.com/mydatafed/mydata/pkg/nationalid"
)

const oidcCookie = "mydata_oidc"

// oidcFlow is what waits in a cookie while the citizen is at the identity provider: the provider's state
// (with the PKCE verifier) and where to go after.
type oidcFlow struct {
	State []byte `json:"s"`
	Next  string `json:"n"`
}

func (s *Server) oidcRP(id string) (OIDCLogin, bool) {
	for _, o := range s.cfg.Logins.OIDC {
		if o.RP.ID() == id {
			return o, true
		}
	}
	return OIDCLogin{}, false
}

// oidcStart sends the browser to the identity provider.
func (s *Server) oidcStart(w http.ResponseWriter, r *http.Request, m Method, next string) {
	o, _ := s.oidcRP(m.ID)
	authURL, st, err := o.RP.Start(r.Context())
	if err != nil {
		s.log.Warn("start an OpenID login", "provider", m.ID, "err", err)
		w.Header().Set("Retry-After", "30")
		s.errorPage(w, r, http.StatusServiceUnavailable, "error.retry", message("oidc.unavailable", pickLang(requestLang(r), m.NameZh, m.NameEn)))
		return
	}
	raw, err := st.Marshal()
	if err != nil {
		s.internalError(w, r, "keep an OpenID state", err)
		return
	}
	token, err := s.signedBlob(r, "oidc", oidcFlow{State: raw, Next: next})
	if err != nil {
		s.internalError(w, r, "keep an OpenID state", err)
		return
	}
	s.setCookie(w, oidcCookie, token, oidclogin.StateLifetime)
	http.Redirect(w, r, authURL, http.StatusSeeOther)
}

// oidcCallback is where the identity provider sends the browser back.
func (s *Server) oidcCallback(w http.ResponseWriter, r *http.Request) {
	m, ok := s.method(r.PathValue("id"))
	o, found := s.oidcRP(r.PathValue("id"))
	if !ok || !found {
		s.errorPage(w, r, http.StatusNotFound, "login.title", message("login.unknown_method"))
		return
	}
	var flow oidcFlow
	var st oidclogin.State
	if err := s.openBlob(r, s.cookie(r, oidcCookie), "oidc", &flow); err != nil || st.Unmarshal(flow.State) != nil {
		s.errorPage(w, r, http.StatusBadRequest, "error.invalid", message("oidc.state"))
		return
	}
	s.setCookie(w, oidcCookie, "", -1)
	subject, level, evidence, err := o.RP.Finish(r.Context(), st, r.URL.Query())
	var idpErr *oidclogin.IdPError
	switch {
	case errors.As(err, &idpErr) && idpErr.Code == "access_denied":
		s.renderLogin(w, r, http.StatusUnauthorized, flow.Next, message("oidc.denied", pickLang(requestLang(r), m.NameZh, m.NameEn)))
		return
	case errors.Is(err, oidclogin.ErrUnavailable):
		w.Header().Set("Retry-After", "30")
		s.errorPage(w, r, http.StatusServiceUnavailable, "error.retry", message("oidc.unavailable", pickLang(requestLang(r), m.NameZh, m.NameEn)))
		return
	case errors.Is(err, oidclogin.ErrState):
		s.errorPage(w, r, http.StatusBadRequest, "error.invalid", message("oidc.state"))
		return
	case err != nil:
		s.log.Info("OpenID login refused", "provider", m.ID, "err", err)
		s.metrics.loginFailures.WithLabelValues(m.ID).Inc()
		s.renderLogin(w, r, http.StatusUnauthorized, flow.Next, message("oidc.refused", pickLang(requestLang(r), m.NameZh, m.NameEn)))
		return
	}
	if nationalid.Valid(subject) != nil {
		s.log.Warn("OpenID provider gave no national ID", "provider", m.ID)
		s.renderLogin(w, r, http.StatusUnauthorized, flow.Next, message("oidc.refused", pickLang(requestLang(r), m.NameZh, m.NameEn)))
		return
	}
	s.finishLogin(w, r, identity.Result{Subject: subject, Method: m.ID, Level: level, Evidence: evidence}, flow.Next)
}
