// Package portal is the hub's citizen-facing web: login, the OAuth 2.0 authorization endpoint with PKCE
// where a service provider sends a citizen to agree, the consent page, and the history of every use of the
// citizen's data. It renders server-side HTML; nothing here needs JavaScript.
package portal

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"embed"
	"encoding/base64"
	"errors"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mydatafed/mydata/hub/internal/consent"
	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/hub/internal/keyring"
	"github.com/prometheus/client_golang/prometheus"
)

//go:embed templates/*.html
var templateFS embed.FS

// Config wires the portal to the rest of the hub.
type Config struct {
	State *fsm.FSM
	// Keys are the cluster's shared keys: sessions, CSRF tokens and consent pages signed through one node
	// verify on every other, and login hints open on any node.
	Keys *keyring.Keyring
	// Consent records decisions and revocations, and reads the history.
	Consent *consent.Service
	// Sync waits until this node has applied what the leader has committed (cluster.Sync).
	Sync       func(context.Context) error
	DevLogin   bool
	PublicURL  string
	SessionTTL time.Duration
	PendingTTL time.Duration
	Log        *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Server serves the portal.
type Server struct {
	cfg     Config
	now     func() time.Time
	log     *slog.Logger
	tmpl    *template.Template
	secure  bool
	metrics *metrics
	srv     *http.Server
}

// New makes the portal.
func New(cfg Config) (*Server, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	tmpl, err := template.New("").Funcs(template.FuncMap{
		"aalName": aalName,
		"fmtTime": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.Local().Format("2006-01-02 15:04:05")
		},
	}).ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, now: cfg.Now, log: cfg.Log, tmpl: tmpl, secure: strings.HasPrefix(cfg.PublicURL, "https://"), metrics: m}
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(cfg.Log.Handler(), slog.LevelWarn)}
	return s, nil
}

// Handler routes the portal.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.home)
	mux.HandleFunc("GET /oauth/authorize", s.authorize)
	mux.HandleFunc("POST /oauth/consent", s.decide)
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /logout", s.logout)
	mux.HandleFunc("GET /history", s.history)
	mux.HandleFunc("POST /consents/{id}/revoke", s.revoke)
	return securityHeaders(mux)
}

// securityHeaders keeps the pages out of frames (no clickjacking of the consent button) and off caches.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' http: https:; frame-ancestors 'none'")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
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

func (s *Server) render(w http.ResponseWriter, status int, name string, data any) {
	// Into a buffer first: one write with a Content-Length instead of many small chunked ones, and a
	// template error becomes a clean 500 rather than half a page.
	buf := pageBuffers.Get().(*bytes.Buffer)
	defer pageBuffers.Put(buf)
	buf.Reset()
	if err := s.tmpl.ExecuteTemplate(buf, name, data); err != nil {
		s.log.Error("render", "template", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

var pageBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// errorPage shows an error the citizen can read, and never redirects: used when the client or its redirect
// URI cannot be trusted.
func (s *Server) errorPage(w http.ResponseWriter, status int, title, detail string) {
	s.render(w, status, "error.html", map[string]any{"Title": title, "Detail": detail})
}

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

func aalName(l int) string {
	switch l {
	case 1:
		return "低 low"
	case 2:
		return "中 medium"
	case 3:
		return "高 high"
	}
	return "?"
}
