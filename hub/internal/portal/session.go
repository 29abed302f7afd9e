package portal

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"
)

// Session is a logged-in citizen, kept in a cookie that the hub signs: the hub needs no session store,
// and the cookie reveals nothing the citizen does not know.
type Session struct {
	Subject string `json:"sub"`
	Method  string `json:"m"`
	AAL     int    `json:"aal"`
	Expires int64  `json:"exp"`
}

const cookieName = "mydata_session"

// setSession signs the session with the cluster's active session key: "<body>.<key id>.<tag>".
func (s *Server) setSession(w http.ResponseWriter, sess Session) error {
	body, _ := json.Marshal(sess)
	b := base64.RawURLEncoding.EncodeToString(body)
	tag, err := s.cfg.Keys.Sign("session", b)
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: b + "." + tag, Path: "/", HttpOnly: true, Secure: s.secure,
		SameSite: http.SameSiteLaxMode, Expires: time.Unix(sess.Expires, 0),
	})
	return nil
}

func (s *Server) clearSession(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode})
}

var errNoSession = errors.New("not logged in")

func (s *Server) session(r *http.Request) (*Session, error) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return nil, errNoSession
	}
	b, tag, ok := strings.Cut(c.Value, ".")
	if !ok || !s.cfg.Keys.Verify(tag, "session", b) {
		return nil, errNoSession
	}
	body, err := base64.RawURLEncoding.DecodeString(b)
	if err != nil {
		return nil, errNoSession
	}
	var sess Session
	if err := json.Unmarshal(body, &sess); err != nil || s.now().Unix() >= sess.Expires {
		return nil, errNoSession
	}
	return &sess, nil
}

// csrf ties a form to the citizen and the object it acts on. Empty if the keyring has no key yet (a
// cluster's first second), which no check accepts.
func (s *Server) csrf(subject, object string) string {
	tag, _ := s.cfg.Keys.Sign("csrf", subject, object)
	return tag
}

func (s *Server) checkCSRF(subject, object, token string) bool {
	return s.cfg.Keys.Verify(token, "csrf", subject, object)
}
