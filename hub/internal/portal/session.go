package portal

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// Session is a logged-in citizen, kept in a cookie the hub signs with the cluster's session key: any node
// verifies it and none needs a session store. The cookie reveals nothing the citizen does not know.
type Session struct {
	// ID is random per login: consent pages and forms are bound to it, so that another session of the
	// same citizen (a weaker one, or one on another device) cannot decide them.
	ID      string `json:"sid"`
	Subject string `json:"sub"`
	Method  string `json:"m"`
	Level   int    `json:"aal"`
	// Issued bounds the session's whole life (identity.session_ttl); Seen its idle time
	// (identity.idle_timeout).
	Issued int64 `json:"iat"`
	Seen   int64 `json:"seen"`
}

// Masked is the national ID as pages show it: enough for the citizen to recognise, not for a passer-by.
func (s *Session) Masked() string { return maskID(s.Subject) }

func maskID(id string) string {
	if len(id) != 10 {
		return "**********"
	}
	return id[:3] + "*****" + id[8:]
}

// cookieName is the name under plain HTTP; under HTTPS the portal uses the __Host- prefix, which the
// browser accepts only with Secure, Path=/ and no Domain, so no other host can plant or widen it.
func (s *Server) cookieName(base string) string {
	if s.secure {
		return "__Host-" + base
	}
	return base
}

func (s *Server) setCookie(w http.ResponseWriter, base, value string, maxAge time.Duration) {
	c := &http.Cookie{Name: s.cookieName(base), Value: value, Path: "/", HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode}
	if maxAge < 0 {
		c.MaxAge = -1
	} else if maxAge > 0 {
		c.MaxAge = int(maxAge / time.Second)
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

const (
	sessionCookie = "mydata_session"
	// browserCookie binds forms shown before login (the login forms themselves) to this browser.
	browserCookie = "mydata_browser"
)

// setSession signs the session: "<body>.<key id>.<tag>".
func (s *Server) setSession(w http.ResponseWriter, sess Session) error {
	body, _ := json.Marshal(sess)
	b := base64.RawURLEncoding.EncodeToString(body)
	tag, err := s.cfg.Keys.Sign("session", b)
	if err != nil {
		return err
	}
	s.setCookie(w, sessionCookie, b+"."+tag, 0)
	return nil
}

func (s *Server) clearSession(w http.ResponseWriter) { s.setCookie(w, sessionCookie, "", -1) }

// readSession checks the cookie's signature and both timeouts.
func (s *Server) readSession(r *http.Request) *Session {
	v := s.cookie(r, sessionCookie)
	b, tag, ok := strings.Cut(v, ".")
	if !ok || !s.cfg.Keys.Verify(tag, "session", b) {
		return nil
	}
	body, err := base64.RawURLEncoding.DecodeString(b)
	if err != nil {
		return nil
	}
	var sess Session
	if err := json.Unmarshal(body, &sess); err != nil || sess.ID == "" {
		return nil
	}
	now := s.now()
	if now.Sub(time.Unix(sess.Issued, 0)) >= s.cfg.SessionTTL || now.Sub(time.Unix(sess.Seen, 0)) >= s.cfg.IdleTimeout {
		return nil
	}
	return &sess
}

type ctxKey int

const (
	ctxSession ctxKey = iota
	ctxBrowser
)

// withSession reads the session once per request, refreshes its idle clock (at most once a minute, so
// that most responses carry no cookie) and makes sure the browser has its binding cookie.
func (s *Server) withSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if sess := s.readSession(r); sess != nil {
			if now := s.now().Unix(); now-sess.Seen >= 60 {
				sess.Seen = now
				_ = s.setSession(w, *sess)
			}
			ctx = context.WithValue(ctx, ctxSession, sess)
		} else if s.cookie(r, sessionCookie) != "" {
			s.clearSession(w)
		}
		browser := s.cookie(r, browserCookie)
		if len(browser) != 22 {
			browser = randomID(16)
			s.setCookie(w, browserCookie, browser, 0)
		}
		ctx = context.WithValue(ctx, ctxBrowser, browser)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func sessionOf(r *http.Request) *Session {
	sess, _ := r.Context().Value(ctxSession).(*Session)
	return sess
}

func browserOf(r *http.Request) string {
	b, _ := r.Context().Value(ctxBrowser).(string)
	return b
}

// csrf ties a form to this browser, the session (if any) and the object the form acts on. Empty if the
// keyring has no key yet (a cluster's first second), which no check accepts.
func (s *Server) csrf(r *http.Request, object string) string {
	sid := ""
	if sess := sessionOf(r); sess != nil {
		sid = sess.ID
	}
	tag, _ := s.cfg.Keys.Sign("csrf", browserOf(r), sid, object)
	return tag
}

func (s *Server) checkCSRF(r *http.Request, object string) bool {
	sid := ""
	if sess := sessionOf(r); sess != nil {
		sid = sess.ID
	}
	return s.cfg.Keys.Verify(r.PostForm.Get("csrf"), "csrf", browserOf(r), sid, object)
}
