package counter

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"
)

// Sessions are kept here, in memory, not in a signed cookie: a staff session owns the data on its screen,
// and ending it (logout, idle timeout, a removed account) must end the data at once, which a cookie the
// server cannot recall would not. A restart logs every terminal out, which also purges nothing: the data
// was in memory only.

// session is one staff member logged in at one terminal.
type session struct {
	id string
	// terminal names the session to the hub (for its lockout and its record) without giving the hub
	// the cookie, which is a credential.
	terminal string
	staff    string
	created  time.Time
	seen     time.Time
	// pendingCode is a code the hub answered otp_required for: the next form asks for the citizen's
	// one-time code and redeems it with this code.
	pendingCode string
}

type sessions struct {
	idle time.Duration
	now  func() time.Time

	mu   sync.Mutex
	byID map[string]*session
}

func newSessions(idle time.Duration, now func() time.Time) *sessions {
	return &sessions{idle: idle, now: now, byID: map[string]*session{}}
}

func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session for staff.
func (s *sessions) create(staff string) *session {
	now := s.now()
	sess := &session{id: randomToken(32), terminal: "t-" + randomToken(12), staff: staff, created: now, seen: now}
	s.mu.Lock()
	s.byID[sess.id] = sess
	s.mu.Unlock()
	return sess
}

// get finds a live session and marks it seen. A session idle too long is ended and reported as absent.
func (s *sessions) get(id string) (*session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.byID[id]
	if !ok {
		return nil, false
	}
	now := s.now()
	if now.Sub(sess.seen) >= s.idle {
		delete(s.byID, id)
		return nil, false
	}
	sess.seen = now
	return sess, true
}

// end ends a session.
func (s *sessions) end(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, id)
}

// expired ends and returns the ids of sessions idle too long, or of staff no longer in the staff file.
func (s *sessions) expired(exists func(string) bool) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var out []string
	for id, sess := range s.byID {
		if now.Sub(sess.seen) >= s.idle || !exists(sess.staff) {
			delete(s.byID, id)
			out = append(out, id)
		}
	}
	return out
}

// setPending and takePending keep a code between the otp_required answer and the one-time code form.
func (s *sessions) setPending(sess *session, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess.pendingCode = code
}

func (s *sessions) pending(sess *session) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sess.pendingCode
}

// csrfKey makes and checks CSRF tokens: an HMAC of what the form is bound to, under a key made at start.
type csrfKey []byte

func newCSRFKey() csrfKey {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return k
}

// token binds a form to a session (or, before login, to the browser's pre-login cookie).
func (k csrfKey) token(binding string) string {
	m := hmac.New(sha256.New, k)
	m.Write([]byte(binding))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (k csrfKey) check(binding, got string) bool {
	if binding == "" || got == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(k.token(binding)), []byte(got)) == 1
}

// Cookies: HttpOnly, SameSite=Strict (a form from another site carries none), and under HTTPS Secure with
// the __Host- prefix, which the browser accepts only with Secure, Path=/ and no Domain.
const (
	sessionCookie = "mydata_counter"
	preCookie     = "mydata_counter_pre"
	langCookie    = "mydata_counter_lang"
)

func (s *Server) cookieName(base string) string {
	if s.cfg.Secure {
		return "__Host-" + base
	}
	return base
}

func (s *Server) setCookie(w http.ResponseWriter, base, value string, remove bool) {
	c := &http.Cookie{Name: s.cookieName(base), Value: value, Path: "/", HttpOnly: true, Secure: s.cfg.Secure, SameSite: http.SameSiteStrictMode}
	if remove {
		c.MaxAge = -1
	}
	http.SetCookie(w, c)
}

func (s *Server) cookie(r *http.Request, base string) string {
	c, err := r.Cookie(s.cookieName(base))
	if err != nil {
		return ""
	}
	return c.Value
}
