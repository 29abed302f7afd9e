package portal

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/mydatafed/mydata/hub/internal/identity"
	"github.com/mydatafed/mydata/hub/internal/identity/passkey"
)

const passkeyCookie = "mydata_passkey"

// ceremony is what waits in a cookie between a passkey ceremony's two halves.
type ceremony struct {
	Session []byte `json:"s"`
	Next    string `json:"n,omitempty"`
	// Name is the label the citizen gave a passkey being registered.
	Name string `json:"name,omitempty"`
}

// jsonReply answers the passkey script.
func jsonReply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) jsonError(w http.ResponseWriter, r *http.Request, status int, m msg) {
	jsonReply(w, status, map[string]string{"error": tr(requestLang(r), m.Key, m.Args...)})
}

// checkScriptCSRF checks the token the script sends in a header.
func (s *Server) checkScriptCSRF(r *http.Request, object string) bool {
	sid := ""
	if sess := sessionOf(r); sess != nil {
		sid = sess.ID
	}
	return s.cfg.Keys.Verify(r.Header.Get("X-CSRF-Token"), "csrf", browserOf(r), sid, object)
}

func (s *Server) keepCeremony(w http.ResponseWriter, r *http.Request, purpose string, c ceremony) error {
	token, err := s.signedBlob(r, purpose, c)
	if err != nil {
		return err
	}
	s.setCookie(w, passkeyCookie, token, 10*time.Minute)
	return nil
}

// takeCeremony reads the ceremony and clears it: each begin serves one finish, so an answer cannot be
// replayed against the same challenge.
func (s *Server) takeCeremony(w http.ResponseWriter, r *http.Request, purpose string) (ceremony, error) {
	var c ceremony
	err := s.openBlob(r, s.cookie(r, passkeyCookie), purpose, &c)
	s.setCookie(w, passkeyCookie, "", -1)
	return c, err
}

func (s *Server) passkeyLoginBegin(w http.ResponseWriter, r *http.Request) {
	if s.passkeys == nil {
		s.jsonError(w, r, http.StatusNotFound, message("login.unknown_method"))
		return
	}
	if err := r.ParseForm(); err != nil || !s.checkScriptCSRF(r, "login:"+s.passkeys.ID()) {
		s.jsonError(w, r, http.StatusForbidden, message("error.csrf"))
		return
	}
	if until := s.lockedUntil(r, ""); !until.IsZero() {
		s.jsonError(w, r, http.StatusTooManyRequests, s.lockedMessage(until))
		return
	}
	options, sess, err := s.passkeys.BeginLogin()
	if err == nil {
		err = s.keepCeremony(w, r, "passkey login", ceremony{Session: sess, Next: s.safeNext(r.PostForm.Get("next"))})
	}
	if err != nil {
		s.log.Error("begin a passkey login", "err", err)
		s.jsonError(w, r, http.StatusInternalServerError, message("error.internal.text"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(options)
}

func (s *Server) passkeyLoginFinish(w http.ResponseWriter, r *http.Request) {
	if s.passkeys == nil {
		s.jsonError(w, r, http.StatusNotFound, message("login.unknown_method"))
		return
	}
	if !s.checkScriptCSRF(r, "login:"+s.passkeys.ID()) {
		s.jsonError(w, r, http.StatusForbidden, message("error.csrf"))
		return
	}
	c, err := s.takeCeremony(w, r, "passkey login")
	if err != nil {
		s.jsonError(w, r, http.StatusBadRequest, message("passkey.expired"))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		s.jsonError(w, r, http.StatusBadRequest, message("error.form"))
		return
	}
	subject, cred, err := s.passkeys.FinishLogin(c.Session, body)
	if err != nil {
		s.log.Info("passkey login refused", "err", err)
		s.loginFailed(r, "", s.passkeys.ID())
		key := "passkey.refused"
		switch {
		case errors.Is(err, passkey.ErrExpired), errors.Is(err, passkey.ErrSession):
			key = "passkey.expired"
		case errors.Is(err, passkey.ErrUnknownCredential):
			key = "passkey.unknown"
		case errors.Is(err, passkey.ErrCloned):
			key = "passkey.cloned"
		}
		s.jsonError(w, r, http.StatusUnauthorized, message(key))
		return
	}
	if until := s.lockedUntil(r, subject); !until.IsZero() {
		s.jsonError(w, r, http.StatusTooManyRequests, s.lockedMessage(until))
		return
	}
	// finishLogin answers with a redirect; the script follows a JSON one, so answer that way.
	rec := &redirectRecorder{header: http.Header{}}
	s.finishLogin(rec, r, identity.Result{Subject: subject, Method: s.passkeys.ID(), Level: s.cfg.Logins.Passkey.Level, Evidence: passkey.Evidence(cred)}, c.Next)
	for _, v := range rec.header.Values("Set-Cookie") {
		w.Header().Add("Set-Cookie", v)
	}
	if rec.status != http.StatusSeeOther {
		s.jsonError(w, r, http.StatusServiceUnavailable, message("login.unavailable"))
		return
	}
	jsonReply(w, http.StatusOK, map[string]string{"redirect": rec.header.Get("Location")})
}

// redirectRecorder catches the redirect (and cookies) a handler writes.
type redirectRecorder struct {
	header http.Header
	status int
}

func (r *redirectRecorder) Header() http.Header         { return r.header }
func (r *redirectRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *redirectRecorder) WriteHeader(status int)      { r.status = status }

func (s *Server) passkeyRegisterBegin(w http.ResponseWriter, r *http.Request) {
	sess := sessionOf(r)
	if s.passkeys == nil || sess == nil {
		s.jsonError(w, r, http.StatusForbidden, message("error.session.text"))
		return
	}
	if err := r.ParseForm(); err != nil || !s.checkScriptCSRF(r, "passkey-register") {
		s.jsonError(w, r, http.StatusForbidden, message("error.csrf"))
		return
	}
	if sess.Level < s.cfg.Logins.Passkey.RegisterLevel {
		s.jsonError(w, r, http.StatusForbidden, message("passkey.register_level", s.levelName(requestLang(r), s.cfg.Logins.Passkey.RegisterLevel)))
		return
	}
	options, blob, err := s.passkeys.BeginRegistration(sess.Subject, maskID(sess.Subject))
	if err == nil {
		err = s.keepCeremony(w, r, "passkey register "+sess.ID, ceremony{Session: blob, Name: r.PostForm.Get("name")})
	}
	if err != nil {
		s.log.Error("begin a passkey registration", "err", err)
		s.jsonError(w, r, http.StatusInternalServerError, message("error.internal.text"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(options)
}

func (s *Server) passkeyRegisterFinish(w http.ResponseWriter, r *http.Request) {
	sess := sessionOf(r)
	if s.passkeys == nil || sess == nil {
		s.jsonError(w, r, http.StatusForbidden, message("error.session.text"))
		return
	}
	if !s.checkScriptCSRF(r, "passkey-register") {
		s.jsonError(w, r, http.StatusForbidden, message("error.csrf"))
		return
	}
	c, err := s.takeCeremony(w, r, "passkey register "+sess.ID)
	if err != nil {
		s.jsonError(w, r, http.StatusBadRequest, message("passkey.expired"))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		s.jsonError(w, r, http.StatusBadRequest, message("error.form"))
		return
	}
	name := c.Name
	if name == "" || len(name) > 60 {
		name = s.now().In(s.cfg.Location).Format("2006-01-02")
	}
	if _, err := s.passkeys.FinishRegistration(sess.Subject, c.Session, body, name); err != nil {
		s.log.Info("passkey registration refused", "err", err)
		key := "passkey.register_failed"
		if errors.Is(err, passkey.ErrDuplicate) {
			key = "passkey.duplicate"
		}
		s.jsonError(w, r, http.StatusBadRequest, message(key))
		return
	}
	jsonReply(w, http.StatusOK, map[string]string{"redirect": "/account"})
}

func (s *Server) passkeyRemove(w http.ResponseWriter, r *http.Request) {
	sess := sessionOf(r)
	if s.passkeys == nil || sess == nil {
		http.Redirect(w, r, "/login?next=/account", http.StatusSeeOther)
		return
	}
	id, err := base64.RawURLEncoding.DecodeString(r.PathValue("id"))
	if err != nil || r.ParseForm() != nil || !s.checkCSRF(r, "passkey-remove:"+r.PathValue("id")) {
		s.errorPage(w, r, http.StatusForbidden, "error.invalid", message("error.csrf"))
		return
	}
	if err := (passkeyStore{s}).RemoveCredential(sess.Subject, id); err != nil {
		s.internalError(w, r, "remove a passkey", err)
		return
	}
	http.Redirect(w, r, "/account", http.StatusSeeOther)
}
