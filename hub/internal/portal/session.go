package portal

import (
	"crypto/hmac"
	"crypto/sha256"
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

func (s *Server) mac(parts ...string) []byte {
	m := hmac.New(sha256.New, s.cfg.SessionKey)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return m.Sum(nil)
}

func (s *Server) setSession(w http.ResponseWriter, sess Session) {
	body, _ := json.Marshal(sess)
	b := base64.RawURLEncoding.EncodeToString(body)
	sig := base64.RawURLEncoding.EncodeToString(s.mac("session", b))
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: b + "." + sig, Path: "/", HttpOnly: true, Secure: s.secure,
		SameSite: http.SameSiteLaxMode, Expires: time.Unix(sess.Expires, 0),
	})
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
	b, sig, ok := strings.Cut(c.Value, ".")
	if !ok {
		return nil, errNoSession
	}
	want := s.mac("session", b)
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, want) {
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

// csrf ties a form to the citizen and the object it acts on.
func (s *Server) csrf(subject, object string) string {
	return base64.RawURLEncoding.EncodeToString(s.mac("csrf", subject, object))
}

func (s *Server) checkCSRF(subject, object, token string) bool {
	got, err := base64.RawURLEncoding.DecodeString(token)
	return err == nil && hmac.Equal(got, s.mac("csrf", subject, object))
}
