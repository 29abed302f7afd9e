package portal

import (
	"encoding/base64"
	"errors"
	"net/http"
	"time"

	"github.com/mydatafed/mydata/hub/internal/identity"
	"github.com/mydatafed/mydata/hub/internal/identity/certlogin"
)

// certChallenge is the challenge a certificate page asks the card to sign, kept signed in the page.
type certChallenge struct {
	Challenge string `json:"c"`
	Method    string `json:"m"`
	Expires   int64  `json:"x"`
}

// newCertChallenge makes a challenge for the page and the token that proves the portal made it.
func (s *Server) newCertChallenge(r *http.Request, method string) (challenge, token string, err error) {
	c := certChallenge{Challenge: string(certlogin.NewChallenge()), Method: method, Expires: s.now().Add(5 * time.Minute).Unix()}
	token, err = s.signedBlob(r, "certificate challenge", c)
	return c.Challenge, token, err
}

func (s *Server) certVerifier(id string) (CertLogin, bool) {
	for _, c := range s.cfg.Logins.Certificates {
		if c.Verifier.ID() == id {
			return c, true
		}
	}
	return CertLogin{}, false
}

// certLogin checks the SignedData the signing component returned over the page's challenge.
func (s *Server) certLogin(w http.ResponseWriter, r *http.Request, m Method, subject, next string) {
	cl, _ := s.certVerifier(m.ID)
	var c certChallenge
	if err := s.openBlob(r, r.PostForm.Get("challenge_token"), "certificate challenge", &c); err != nil || c.Method != m.ID || s.now().Unix() > c.Expires {
		s.renderMethod(w, r, http.StatusBadRequest, m, next, message("cert.challenge_expired"), nil)
		return
	}
	signed, err := base64.StdEncoding.DecodeString(r.PostForm.Get("signed_data"))
	if err != nil || len(signed) == 0 {
		s.renderMethod(w, r, http.StatusBadRequest, m, next, message("cert.no_signature"), nil)
		return
	}
	proof, err := cl.Verifier.Verify(r.Context(), signed, []byte(c.Challenge), subject)
	if err != nil {
		reason := certlogin.Reason(err)
		s.log.Info("certificate login refused", "method", m.ID, "err", err)
		if reason == nil || errors.Is(err, certlogin.ErrRevocationUnknown) {
			// Not the citizen's doing: the revocation service is down, or something unforeseen.
			w.Header().Set("Retry-After", "60")
			s.renderMethod(w, r, http.StatusServiceUnavailable, m, next, message("cert.unavailable"), nil)
			return
		}
		s.loginFailed(r, subject, m.ID)
		s.renderMethod(w, r, http.StatusUnauthorized, m, next, message("cert.refused", pickLang(requestLang(r), reason.Zh, reason.En)), nil)
		return
	}
	s.finishLogin(w, r, identity.Result{Subject: subject, Method: m.ID, Level: cl.Level, Evidence: proof.Evidence()}, next)
}
