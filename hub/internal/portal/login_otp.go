package portal

import (
	"errors"
	"net/http"

	"github.com/mydatafed/mydata/hub/internal/identity"
	"github.com/mydatafed/mydata/hub/internal/identity/otp"
)

// otpLogin runs the one-time-code login: first the national ID and a channel (a code goes to the contact
// the citizen verified there), then the code.
func (s *Server) otpLogin(w http.ResponseWriter, r *http.Request, m Method, subject, next string) {
	if r.PostForm.Get("step_token") == "" {
		channel := r.PostForm.Get("channel")
		if channel != "email" && channel != "sms" {
			s.renderMethod(w, r, http.StatusBadRequest, m, next, message("otp.choose_channel"), nil)
			return
		}
		s.sendAndAsk(w, r, m, step{Subject: subject, Method: m.ID, Level: m.Level, Evidence: "one-time code by " + channel}, "login", channel, next)
		return
	}
	st, _ := s.openStep(r, r.PostForm.Get("step_token"), m.ID)
	s.checkCodeStep(w, r, m, st, "login", next)
}

// sendAndAsk sends a code for st and shows the page that asks for it.
func (s *Server) sendAndAsk(w http.ResponseWriter, r *http.Request, m Method, st step, purpose, channel, next string) {
	id, sent, err := s.sendCode(r.Context(), r, st.Subject, purpose, channel)
	if err != nil {
		s.log.Warn("send a one-time code", "channel", channel, "err", err)
		w.Header().Set("Retry-After", "30")
		s.renderMethod(w, r, http.StatusServiceUnavailable, m, next, message("otp.send_failed"), nil)
		return
	}
	if !sent {
		// The same page as when a code went out: whether this citizen has a contact is nobody's business.
		s.log.Info("one-time code asked for a citizen without a verified contact", "channel", channel)
	}
	st.Challenge = id
	token, err := s.sealStep(r, st)
	if err != nil {
		s.internalError(w, r, "seal a login step", err)
		return
	}
	s.renderMethod(w, r, http.StatusOK, m, next, msg{}, map[string]any{"CodeStep": token, "Channel": channel})
}

// checkCodeStep checks the code typed for st and, if right, completes the login st carries.
func (s *Server) checkCodeStep(w http.ResponseWriter, r *http.Request, m Method, st step, purpose, next string) {
	again := map[string]any{"CodeStep": r.PostForm.Get("step_token")}
	code, err := otp.ParseCode(r.PostForm.Get("code"))
	if err != nil {
		s.renderMethod(w, r, http.StatusBadRequest, m, next, message("otp.malformed"), again)
		return
	}
	svc, err := s.otpService()
	if err != nil {
		s.internalError(w, r, "one-time codes", err)
		return
	}
	hash, err := s.cfg.Keys.LookupHash(st.Subject)
	if err != nil {
		s.internalError(w, r, "hash a national ID", err)
		return
	}
	err = svc.Check(st.Challenge, hash, purpose, code)
	var wrong *otp.WrongCodeError
	switch {
	case err == nil:
		s.finishLogin(w, r, identity.Result{Subject: st.Subject, Method: st.Method, Level: st.Level, Evidence: st.Evidence}, next)
	case errors.As(err, &wrong):
		s.loginFailed(r, st.Subject, m.ID)
		s.renderMethod(w, r, http.StatusUnauthorized, m, next, message("otp.wrong", wrong.TriesLeft), again)
	case errors.Is(err, otp.ErrExpired), errors.Is(err, otp.ErrUsed), errors.Is(err, otp.ErrTooManyTries), errors.Is(err, otp.ErrUnknown):
		s.loginFailed(r, st.Subject, m.ID)
		s.renderMethod(w, r, http.StatusUnauthorized, m, next, message("otp.dead"), nil)
	default:
		s.internalError(w, r, "check a one-time code", err)
	}
}
