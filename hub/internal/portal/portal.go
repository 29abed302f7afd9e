// Package portal is the hub's citizen-facing web: login, the OAuth 2.0 authorization endpoint with PKCE
// where a service provider sends a citizen to agree, the consent page, the catalogue, and the history of
// every use of the citizen's data. Pages are rendered on the server in Traditional Chinese or English; the
// only scripts are the login methods' own, served from the portal.
package portal

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mydatafed/mydata/hub/internal/consent"
	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/hub/internal/identity"
	"github.com/mydatafed/mydata/hub/internal/identity/passkey"
	"github.com/mydatafed/mydata/hub/internal/keyring"
	"github.com/mydatafed/mydata/hub/internal/relay"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config wires the portal to the rest of the hub.
type Config struct {
	State *fsm.FSM
	// Keys are the cluster's shared keys: sessions, CSRF tokens and consent pages signed through one node
	// verify on every other, and login hints open on any node.
	Keys *keyring.Keyring
	// Consent records decisions and revocations, and reads the history.
	Consent *consent.Service
	// Sync waits until this node has applied what the leader has committed (cluster.Sync).
	Sync      func(context.Context) error
	DevLogin  bool
	PublicURL string
	// APIURL is the hub API's public URL, where SP connectors push requests and redeem codes.
	APIURL string
	// SessionTTL ends a session however busy; IdleTimeout ends one left alone.
	SessionTTL  time.Duration
	IdleTimeout time.Duration
	PendingTTL  time.Duration
	// CounterTTL is how long a counter code is good for (consent.counter_ttl).
	CounterTTL time.Duration
	// Levels name the assurance levels; Logins are the login methods enabled, with their levels.
	Levels identity.Levels
	Logins Logins
	// Apply proposes a command to the cluster and returns once this node has applied it (cluster.Apply).
	Apply func(fsm.Command) error
	// Relay presents download tickets to data providers for citizens' browsers; Bundle is the federation's
	// trust bundle, against which the download page's signer checks are made.
	Relay  *relay.Relay
	Bundle x509bundle.Source
	// Location is the zone the pages write times in (Asia/Taipei by default).
	Location   *time.Location
	Log        *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Server serves the portal.
type Server struct {
	cfg     Config
	now     func() time.Time
	log     *slog.Logger
	tmpl    map[string]*template.Template // by language
	secure  bool
	metrics *metrics
	mux     *http.ServeMux
	srv     *http.Server
	methods []Method
	// passkeys runs the passkey ceremonies; nil when the method is off.
	passkeys *passkey.Method
}

// New makes the portal.
func New(cfg Config) (*Server, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}
	if len(cfg.Levels) == 0 {
		cfg.Levels = identity.DefaultLevels()
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = cfg.SessionTTL
	}
	if cfg.CounterTTL == 0 {
		cfg.CounterTTL = consent.DefaultCounterTTL
	}
	s := &Server{cfg: cfg, now: cfg.Now, log: cfg.Log, secure: strings.HasPrefix(cfg.PublicURL, "https://"), tmpl: map[string]*template.Template{}}
	for _, lang := range langs {
		t, err := template.New("").Funcs(s.funcs(lang)).ParseFS(templateFS, "templates/*.html")
		if err != nil {
			return nil, err
		}
		s.tmpl[lang] = t
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	s.methods = s.loginMethods()
	if p := cfg.Logins.Passkey; p != nil {
		if s.passkeys, err = passkey.New(p.Config, passkeyStore{s}, s.userHandle, passkey.WithClock(s.now)); err != nil {
			return nil, fmt.Errorf("identity.passkey: %w", err)
		}
	}
	s.routes()
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(cfg.Log.Handler(), slog.LevelWarn)}
	return s, nil
}

// funcs are the template functions for one language.
func (s *Server) funcs(lang string) template.FuncMap {
	return template.FuncMap{
		"t":       func(key string, args ...any) string { return tr(lang, key, args...) },
		"tm":      func(m msg) string { return tr(lang, m.Key, m.Args...) },
		"level":   func(rank int) string { return s.levelName(lang, rank) },
		"fmtTime": fmtTime(s.cfg.Location),
		"pick": func(zh, en string) string {
			if lang == langZh || en == "" {
				return zh
			}
			return en
		},
	}
}

func (s *Server) levelName(lang string, rank int) string {
	l, ok := s.cfg.Levels.Find(rank)
	if !ok {
		return strconv.Itoa(rank)
	}
	if lang == langZh {
		return l.NameZh
	}
	return l.NameEn
}

func (s *Server) routes() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.home)
	mux.HandleFunc("GET /oauth/authorize", s.authorize)
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", s.metadata)
	mux.HandleFunc("POST /oauth/consent", s.decide)
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.devLogin)
	mux.HandleFunc("POST /logout", s.logout)
	mux.HandleFunc("POST /lang", s.setLang)
	mux.HandleFunc("GET /catalogue", s.catalogue)
	mux.HandleFunc("GET /history", s.history)
	mux.HandleFunc("GET /history.csv", s.historyCSV)
	mux.HandleFunc("GET /consents/{id}/revoke", s.revokePage)
	mux.HandleFunc("POST /consents/{id}/revoke", s.revoke)
	mux.HandleFunc("GET /account", s.account)
	mux.HandleFunc("GET /login/m/{id}", s.methodPage)
	mux.HandleFunc("POST /login/m/{id}", s.methodPost)
	mux.HandleFunc("GET /login/oidc/{id}/callback", s.oidcCallback)
	mux.HandleFunc("POST /login/passkey/begin", s.passkeyLoginBegin)
	mux.HandleFunc("POST /login/passkey/finish", s.passkeyLoginFinish)
	mux.HandleFunc("POST /account/passkeys/begin", s.passkeyRegisterBegin)
	mux.HandleFunc("POST /account/passkeys/finish", s.passkeyRegisterFinish)
	mux.HandleFunc("POST /account/passkeys/{id}/remove", s.passkeyRemove)
	mux.HandleFunc("POST /account/contact", s.contactStart)
	mux.HandleFunc("POST /account/contact/verify", s.contactVerify)
	mux.HandleFunc("POST /account/notifications", s.notificationsSet)
	mux.HandleFunc("GET /counter", s.counterList)
	mux.HandleFunc("GET /counter/{id}", s.counterPage)
	mux.HandleFunc("POST /counter/{id}", s.counterAgree)
	mux.HandleFunc("GET /download", s.downloadList)
	mux.HandleFunc("GET /download/confirm", s.downloadConfirm)
	mux.HandleFunc("POST /download/start", s.downloadStart)
	mux.HandleFunc("POST /download/relay", s.downloadRelay)
	mux.HandleFunc("POST /download/signer", s.downloadSigner)
	mux.HandleFunc("GET /download/{id}", s.downloadPage)
	mux.Handle("GET /static/passkey.js", passkey.ScriptHandler())
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	s.mux = mux
}

// Handler routes the portal.
func (s *Server) Handler() http.Handler { return s.securityHeaders(s.withSession(s.mux)) }

// securityHeaders keeps the pages out of frames (no clickjacking of the consent button), off caches, and
// their forms pointed at the portal only; the consent page widens form-action to the one service it
// redirects to, because browsers apply form-action to the redirect a form's answer makes.
func (s *Server) securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", csp(""))
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		if s.secure {
			h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
		}
		next.ServeHTTP(w, r)
	})
}

// csp is the pages' policy; formTarget is an origin forms may also lead to.
func csp(formTarget string) string {
	fa := "'self'"
	if formTarget != "" {
		fa += " " + formTarget
	}
	return "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; form-action " + fa + "; frame-ancestors 'none'; base-uri 'none'"
}

// Serve serves on ln until ctx ends; with cert set it serves HTTPS.
func (s *Server) Serve(ctx context.Context, ln net.Listener, cert *tls.Certificate) error {
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(sctx)
	}()
	if cert != nil {
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12})
	}
	if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// page is what every template gets: the frame's needs, and the page's own data in D.
type page struct {
	Lang     string
	Title    string
	Session  *Session
	DevLogin bool
	// Here is this page's path, where the language switch comes back to.
	Here       string
	LogoutCSRF string
	LangCSRF   string
	D          any
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name, title string, data any) {
	lang := requestLang(r)
	p := page{Lang: lang, Title: title, Session: sessionOf(r), DevLogin: s.cfg.DevLogin, Here: s.safeNext(r.URL.RequestURI()),
		LogoutCSRF: s.csrf(r, "logout"), LangCSRF: s.csrf(r, "lang"), D: data}
	// Into a buffer first: one write with a Content-Length instead of many small chunked ones, and a
	// template error becomes a clean 500 rather than half a page.
	buf := pageBuffers.Get().(*bytes.Buffer)
	defer pageBuffers.Put(buf)
	buf.Reset()
	if err := s.tmpl[lang].ExecuteTemplate(buf, name, p); err != nil {
		s.log.Error("render", "template", name, "err", err)
		http.Error(w, "internal error 系統錯誤", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.Header().Set("Content-Language", lang)
	w.Header().Add("Vary", "Accept-Language, Cookie")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

var pageBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// errorPage shows an error the citizen can read, and never redirects: used when the client or its redirect
// URI cannot be trusted.
func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, status int, title string, detail msg) {
	s.render(w, r, status, "error.html", title, detail)
}

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}
