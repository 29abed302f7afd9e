// Package counter is the SP connector's counter page (臨櫃核驗): the service provider's staff log in, enter
// or scan the code a citizen brings to the counter, and see the datasets the citizen agreed to show. The
// connector redeems the code at the hub and fetches each dataset from its data provider exactly as an
// online exchange does (exchange.Manager.Collect: same checks, audit entries and receipts). The data lives
// in this process's memory only and is overwritten and dropped when staff press Done, when their session
// ends, or after the TTL.
package counter

import (
	"bytes"
	"context"
	"crypto/tls"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/mydatafed/mydata/connector/internal/exchange"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/prometheus/client_golang/prometheus"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Hub is the part of the hub client the counter uses.
type Hub interface {
	Do(ctx context.Context, method, path string, in, out any, opts ...hubapi.CallOption) error
}

// Collector redeems and fetches: exchange.Manager.
type Collector interface {
	Collect(ctx, bg context.Context, redeem exchange.Redeemer) (*exchange.Exchange, error)
}

// Config wires the counter page.
type Config struct {
	Hub       Hub
	Exchanges Collector
	// StaffFile holds the staff accounts (ParseStaff).
	StaffFile string
	// TTL bounds how long a terminal keeps a code's data; IdleTimeout ends a staff session left alone.
	TTL         time.Duration
	IdleTimeout time.Duration
	// LockoutAfter wrong codes (or passwords) lock a staff account's entry (or login) for LockoutFor.
	LockoutAfter int
	LockoutFor   time.Duration
	// Location is the zone the page writes times in.
	Location *time.Location
	// Secure is set when the page is served over HTTPS: cookies are then Secure and __Host-.
	Secure     bool
	Log        *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Server is the counter page.
type Server struct {
	cfg      Config
	log      *slog.Logger
	staff    *staffFile
	sessions *sessions
	store    *store
	codes    *lockout // wrong codes, per staff account
	logins   *lockout // wrong passwords, per staff account
	csrf     csrfKey
	tmpl     map[string]*template.Template
	handler  http.Handler
	metrics  *metrics

	srvMu sync.Mutex
	srv   *http.Server
}

// New reads the staff file and makes the page; nothing serves until Serve.
func New(cfg Config) (*Server, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.LockoutAfter < 1 {
		cfg.LockoutAfter = 5
	}
	staff, err := openStaff(cfg.StaffFile)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, log: cfg.Log, staff: staff, sessions: newSessions(cfg.IdleTimeout, cfg.Now), store: newStore(),
		codes: newLockout(cfg.LockoutAfter, cfg.LockoutFor, cfg.Now), logins: newLockout(cfg.LockoutAfter, cfg.LockoutFor, cfg.Now),
		csrf: newCSRFKey(),
	}
	if s.metrics, err = newMetrics(cfg.Registerer, s.store); err != nil {
		return nil, err
	}
	if s.tmpl, err = parseTemplates(); err != nil {
		return nil, err
	}
	s.handler = s.securityHeaders(s.routes())
	return s, nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.enterPage)
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /logout", s.logout)
	mux.HandleFunc("GET /lang", s.setLang)
	mux.HandleFunc("POST /redeem", s.redeemCode)
	mux.HandleFunc("POST /otp", s.redeemOTP)
	mux.HandleFunc("GET /view", s.view)
	mux.HandleFunc("POST /agent", s.confirmAgent)
	mux.HandleFunc("GET /view/content/{i}", s.content)
	mux.HandleFunc("POST /done", s.done)
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	return mux
}

// Handler is the page's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// pageCSP lets the pages load their own style and script, frame their own PDF content, and nothing else.
const pageCSP = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; media-src 'self' blob:; frame-src 'self'; object-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// securityHeaders: no caching anywhere (the pages show personal data), no framing by others, the camera
// for this origin only (the scan button), no referrer.
func (s *Server) securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", pageCSP)
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-store")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Permissions-Policy", "camera=(self), microphone=(), geolocation=()")
		if s.cfg.Secure {
			h.Set("Strict-Transport-Security", "max-age=63072000")
		}
		next.ServeHTTP(w, r)
	})
}

// Serve serves on ln until ctx ends; with cert set it serves HTTPS.
func (s *Server) Serve(ctx context.Context, ln net.Listener, cert *tls.Certificate) error {
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		IdleTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	s.srvMu.Lock()
	s.srv = srv
	s.srvMu.Unlock()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if cert != nil {
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12})
	}
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Run purges data past its TTL and ends idle sessions (with their data) every second, and purges
// everything when ctx ends.
func (s *Server) Run(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.purgeAll()
			return nil
		case <-t.C:
			s.sweep()
		}
	}
}

// sweep is one round of Run.
func (s *Server) sweep() {
	if n := s.store.purgeExpired(s.cfg.Now()); n > 0 {
		s.metrics.purges.WithLabelValues("ttl").Add(float64(n))
		s.log.Info("counter data purged after its TTL", "terminals", n)
	}
	if err := s.staff.reload(); err != nil {
		s.log.Error("counter staff file", "err", err)
	}
	for _, sid := range s.sessions.expired(s.staff.exists) {
		if s.store.purge(sid) {
			s.metrics.purges.WithLabelValues("session_end").Inc()
		}
	}
	s.codes.sweep()
	s.logins.sweep()
}

func (s *Server) purgeAll() {
	n := s.store.count()
	s.store.purgeAll()
	if n > 0 {
		s.metrics.purges.WithLabelValues("shutdown").Add(float64(n))
	}
}

// render writes a page into a buffer first, so that a template error is a clean 500, not half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, p *page) {
	p.Lang = requestLang(r, s.cookie(r, langCookie))
	var buf bytes.Buffer
	if err := s.tmpl[p.Lang].ExecuteTemplate(&buf, name, p); err != nil {
		s.log.Error("render", "template", name, "err", err)
		http.Error(w, "internal error 系統錯誤", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Language", p.Lang)
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
	clear(buf.Bytes()) // the page may hold a citizen's data
}

// page is what every template gets.
type page struct {
	Lang    string
	Title   string
	Staff   string
	CSRF    string
	Message *msg
	// Refresh reloads the page after this many seconds (datasets still pending); 0: never.
	Refresh int
	D       any
}
