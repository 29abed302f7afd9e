package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

const (
	cookieName = "demobank_session"
	// sessionTTL is how long an idle applicant's session lives.
	sessionTTL = 30 * time.Minute
	// authTTL is how long a started authorization may take to come back: the hub's consent.pending_ttl.
	authTTL = 10 * time.Minute
	// maxPending bounds the authorizations one session may have under way (tabs, retries).
	maxPending = 8
	// maxSessions bounds memory: beyond it the oldest sessions are dropped.
	maxSessions = 10000
	// maxContent is the largest dataset shown as a table; larger ones are only summarised.
	maxContent = 1 << 20
	// refreshSeconds is how often a page with datasets still under way reloads itself.
	refreshSeconds = 3
)

// nationalIDFormat is a national ID's shape; the connector checks the check digit when it seals the hint.
var nationalIDFormat = regexp.MustCompile(`^[A-Z][0-9]{9}$`)

// Config is the application's configuration.
type Config struct {
	HubPortal      string   // base URL of the hub's citizen portal
	ConnectorAPI   string   // base URL of the bank's connector's local API
	ConnectorToken string   // bearer token for the connector's API, if it has one
	ClientID       string   // the registered service
	RedirectURI    string   // this app's /callback, exactly as registered
	Datasets       []string // the scope
	BindCitizen    bool     // send a login_hint for the typed national ID
	Log            *slog.Logger
	// HTTPClient talks to the connector; the default waits up to 90 s, since the connector answers once
	// every agency has given its first answer.
	HTTPClient *http.Client
	Now        func() time.Time
}

// Bank is the web application.
type Bank struct {
	cfg      Config
	mux      *http.ServeMux
	pages    map[string]*template.Template
	sessions *sessionStore
	csp      string
}

// New checks cfg and makes the application.
func New(cfg Config) (*Bank, error) {
	hub, err := url.Parse(cfg.HubPortal)
	if err != nil || (hub.Scheme != "http" && hub.Scheme != "https") || hub.Host == "" {
		return nil, fmt.Errorf("--hub-portal: %q is not an http(s) URL", cfg.HubPortal)
	}
	if u, err := url.Parse(cfg.ConnectorAPI); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--connector-api: %q is not an http(s) URL", cfg.ConnectorAPI)
	}
	if u, err := url.Parse(cfg.RedirectURI); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "/callback" {
		return nil, fmt.Errorf("--redirect-uri: %q must be an http(s) URL whose path is /callback, the path this app serves", cfg.RedirectURI)
	}
	if cfg.ClientID == "" {
		return nil, errors.New("--client-id: required")
	}
	if len(cfg.Datasets) == 0 {
		return nil, errors.New("--datasets: name at least one dataset")
	}
	cfg.HubPortal = strings.TrimSuffix(cfg.HubPortal, "/")
	cfg.ConnectorAPI = strings.TrimSuffix(cfg.ConnectorAPI, "/")
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 90 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	b := &Bank{cfg: cfg, mux: http.NewServeMux(), pages: map[string]*template.Template{}, sessions: newSessionStore(cfg.Now)}
	// The apply form's redirect goes on to the hub, and form-action covers redirects after a submission.
	b.csp = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'; form-action 'self' " + hub.Scheme + "://" + hub.Host
	funcs := template.FuncMap{"datasetName": datasetName}
	for _, page := range []string{"index.html", "application.html", "error.html"} {
		t, err := template.New(page).Funcs(funcs).ParseFS(templateFS, "templates/base.html", "templates/"+page)
		if err != nil {
			return nil, err
		}
		b.pages[page] = t
	}
	b.mux.HandleFunc("GET /{$}", b.index)
	b.mux.HandleFunc("POST /apply", b.apply)
	b.mux.HandleFunc("GET /callback", b.callback)
	b.mux.HandleFunc("GET /application/{id}", b.application)
	b.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	return b, nil
}

func (b *Bank) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", b.csp)
	// The callback URL holds the authorization code: no page of ours sends it on as a referrer.
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	// Pages hold personal data: no cache keeps them.
	h.Set("Cache-Control", "no-store")
	b.mux.ServeHTTP(w, r)
}

func (b *Bank) render(w http.ResponseWriter, status int, page string, data map[string]any) {
	var buf bytes.Buffer
	if err := b.pages[page].ExecuteTemplate(&buf, page, data); err != nil {
		b.cfg.Log.Error("render", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// failure is an error page: a code a test or a support desk can match, a message for the applicant, and
// the detail when it helps the applicant (the hub's own words); the bank's internals stay in its log.
type failure struct {
	Status  int
	Code    string
	Title   string
	Message string
	Detail  string
}

func (b *Bank) fail(w http.ResponseWriter, f failure) {
	b.render(w, f.Status, "error.html", map[string]any{"Title": f.Title, "F": f})
}

// ---- the application form -----------------------------------------------------------------------------

type applicationLink struct {
	ID      string
	Created time.Time
}

func (b *Bank) index(w http.ResponseWriter, r *http.Request) {
	b.renderForm(w, r, http.StatusOK, "", "", "")
}

func (b *Bank) renderForm(w http.ResponseWriter, r *http.Request, status int, name, id, msg string) {
	var apps []applicationLink
	if sess := b.sessions.get(r); sess != nil {
		apps = b.sessions.applications(sess)
	}
	b.render(w, status, "index.html", map[string]any{
		"Title": "線上信用卡申辦 Apply", "Name": name, "NationalID": id, "Error": msg, "Datasets": b.cfg.Datasets, "Applications": apps,
	})
}

// apply starts an authorization: PKCE verifier and state, kept server-side; an optional login hint;
// then the browser goes to the hub.
func (b *Bank) apply(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		b.renderForm(w, r, http.StatusBadRequest, "", "", "The form could not be read. 表單無法讀取。")
		return
	}
	name := strings.TrimSpace(r.PostForm.Get("name"))
	id := strings.ToUpper(strings.TrimSpace(r.PostForm.Get("national_id")))
	if name == "" || len([]rune(name)) > 50 {
		b.renderForm(w, r, http.StatusBadRequest, name, id, "Please type your name (at most 50 characters). 請填寫姓名。")
		return
	}
	if !nationalIDFormat.MatchString(id) {
		b.renderForm(w, r, http.StatusBadRequest, name, id, "That is not a national ID: a letter and 9 digits, e.g. A123456789. 身分證字號格式錯誤。")
		return
	}
	var hint string
	if b.cfg.BindCitizen {
		var out struct {
			LoginHint string `json:"login_hint"`
		}
		err := b.connector(r.Context(), http.MethodPost, "/v1/login-hints", map[string]string{"client_id": b.cfg.ClientID, "subject": id}, &out)
		var ce *connectorError
		switch {
		case errors.As(err, &ce) && ce.Status == http.StatusBadRequest && strings.HasPrefix(ce.Message, "subject:"):
			b.renderForm(w, r, http.StatusBadRequest, name, id, "That national ID's check digit is wrong. 身分證字號檢查碼錯誤。")
			return
		case err != nil:
			b.cfg.Log.Error("login hint", "err", err)
			b.fail(w, failure{http.StatusBadGateway, "connector_unavailable", "MyData is not available right now 暫時無法使用 MyData",
				"We could not prepare your MyData request. Please try again in a moment, or apply at a branch. 請稍後再試。", ""})
			return
		}
		hint = out.LoginHint
	}

	sess := b.sessions.getOrCreate(w, r)
	verifier := randomString(32) // 43 characters, RFC 7636's least
	state := randomString(16)
	b.sessions.addPending(sess, state, pendingAuth{verifier: verifier, name: name})

	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {b.cfg.ClientID},
		"redirect_uri":          {b.cfg.RedirectURI},
		"scope":                 {strings.Join(b.cfg.Datasets, " ")},
		"state":                 {state},
		"code_challenge":        {challengeS256(verifier)},
		"code_challenge_method": {"S256"},
	}
	if hint != "" {
		q.Set("login_hint", hint)
	}
	b.cfg.Log.Info("authorization started", "client_id", b.cfg.ClientID, "bound", hint != "")
	http.Redirect(w, r, b.cfg.HubPortal+"/oauth/authorize?"+q.Encode(), http.StatusSeeOther)
}

// randomString is n bytes from crypto/rand, base64url without padding.
func randomString(n int) string {
	p := make([]byte, n)
	rand.Read(p) // never fails: crypto/rand.Read panics rather than return an error
	return base64.RawURLEncoding.EncodeToString(p)
}

// challengeS256 is the PKCE S256 challenge of a verifier (RFC 7636 §4.2).
func challengeS256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// ---- the return from the hub --------------------------------------------------------------------------

// oauthErrors words the hub's error codes for the applicant.
var oauthErrors = map[string][2]string{
	"access_denied": {"You did not agree 您未同意提供資料",
		"You declined on MyData to share your data with Demo Bank, so your application was not completed. Nothing was sent to us. You can apply again, or apply at a branch with paper documents. 您已於 MyData 拒絕提供資料，本行未取得任何資料。"},
	"invalid_scope": {"MyData refused our request 請求被拒",
		"MyData did not accept the data we asked for. This is our mistake, not yours; please apply at a branch. 請洽分行辦理。"},
	"invalid_request": {"MyData refused our request 請求被拒",
		"MyData did not accept our request. Please start again. 請重新申辦。"},
	"temporarily_unavailable": {"MyData is busy 系統忙碌",
		"MyData cannot take your request right now. Please try again in a few minutes. 請稍後再試。"},
	"server_error": {"MyData had a problem 系統錯誤",
		"MyData could not complete your request. Please try again later. 請稍後再試。"},
}

func (b *Bank) callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sess := b.sessions.get(r)
	var p pendingAuth
	ok := false
	if sess != nil {
		// Taken, not read: a state is good for one return only.
		p, ok = b.sessions.takePending(sess, q.Get("state"))
	}
	if !ok {
		b.cfg.Log.Warn("callback refused: unknown state", "has_session", sess != nil)
		b.fail(w, failure{http.StatusBadRequest, "state_mismatch", "This link is not for this browser 無效的返回連結",
			"This return from MyData does not match an application started in this browser: it may have expired, been used already, or come from somewhere else. Please start again. 請重新申辦。", ""})
		return
	}
	if code := q.Get("error"); code != "" {
		b.cfg.Log.Info("authorization ended without a code", "error", code)
		text, known := oauthErrors[code]
		// The hub's documented error_description for this case (docs/integration.md).
		if code == "access_denied" && q.Get("error_description") == "the request was bound to another citizen" {
			// Not a refusal: someone other than the applicant logged in to MyData.
			code, text = "another_citizen", [2]string{"Another person logged in 登入者非申請人",
				"The MyData login was not the applicant named on this form, so MyData sent no data. If you share this computer, log out of MyData and apply again as yourself. 登入 MyData 者與申請人不符，未取得任何資料；請登出後以本人身分重新申辦。"}
		}
		if !known {
			text = [2]string{"MyData refused our request 請求被拒", "MyData could not complete your request. Please start again. 請重新申辦。"}
		}
		b.fail(w, failure{http.StatusOK, code, text[0], text[1], q.Get("error_description")})
		return
	}
	code := q.Get("code")
	if code == "" {
		b.fail(w, failure{http.StatusBadRequest, "invalid_callback", "Something is missing 缺少授權碼",
			"MyData sent you back without an authorization code. Please start again. 請重新申辦。", ""})
		return
	}
	var ex exchange
	err := b.connector(r.Context(), http.MethodPost, "/v1/exchanges", map[string]string{
		"client_id": b.cfg.ClientID, "code": code, "code_verifier": p.verifier, "redirect_uri": b.cfg.RedirectURI,
	}, &ex)
	if err != nil {
		var ce *connectorError
		if errors.As(err, &ce) && ce.Status >= 400 && ce.Status < 500 {
			b.cfg.Log.Warn("exchange refused", "status", ce.Status, "err", ce.Message)
			b.fail(w, failure{http.StatusBadGateway, "exchange_refused", "MyData did not accept the authorization 授權無效",
				"Your agreement on MyData could not be used: it may have expired or been used already. Please start again. 請重新申辦。", ce.Message})
			return
		}
		b.cfg.Log.Error("exchange failed", "err", err)
		b.fail(w, failure{http.StatusBadGateway, "connector_unavailable", "MyData is not available right now 暫時無法使用 MyData",
			"We could not collect your data. Please try again in a moment, or apply at a branch. 請稍後再試。", ""})
		return
	}
	b.sessions.addApplication(sess, ex.ID, p.name)
	b.cfg.Log.Info("exchange", "exchange", ex.ID, "state", ex.State, "datasets", ex.summary())
	// Post/redirect/get: a reload shows the application rather than replaying a spent code.
	http.Redirect(w, r, "/application/"+url.PathEscape(ex.ID), http.StatusSeeOther)
}

// application shows one application's data as the connector holds it now.
func (b *Bank) application(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	sess := b.sessions.get(r)
	name, ok := "", false
	if sess != nil {
		name, ok = b.sessions.application(sess, id)
	}
	if !ok {
		b.fail(w, failure{http.StatusNotFound, "unknown_application", "No such application 查無此申請",
			"This application was not made in this browser, or its session has ended. 申請不存在或已逾時。", ""})
		return
	}
	var ex exchange
	if err := b.connector(r.Context(), http.MethodGet, "/v1/exchanges/"+url.PathEscape(id), nil, &ex); err != nil {
		var ce *connectorError
		if errors.As(err, &ce) && ce.Status == http.StatusNotFound {
			b.fail(w, failure{http.StatusGone, "application_expired", "This data is no longer held 資料已刪除",
				"Our MyData connector keeps the data it received only for a few minutes. Please start again if you need to see it. 資料僅短暫保存。", ""})
			return
		}
		b.cfg.Log.Error("read exchange", "exchange", id, "err", err)
		b.fail(w, failure{http.StatusBadGateway, "connector_unavailable", "MyData is not available right now 暫時無法使用 MyData",
			"We could not read your application's data. Please reload the page in a moment. 請稍後重新整理。", ""})
		return
	}
	view := buildView(&ex, name)
	b.render(w, http.StatusOK, "application.html", map[string]any{"Title": "申請 Application " + view.ID, "Refresh": view.Refresh, "A": view})
}

// ---- the connector's local API ------------------------------------------------------------------------

// exchange is the connector's answer (connector/internal/exchange): one redeemed consent and its datasets.
type exchange struct {
	ID          string            `json:"id"`
	ConsentID   string            `json:"consent_id"`
	AAL         int               `json:"assurance_level"`
	LoginMethod string            `json:"login_method"`
	State       string            `json:"state"` // in_progress or complete
	Created     time.Time         `json:"created_at"`
	Datasets    []exchangeDataset `json:"datasets"`
}

type exchangeDataset struct {
	Dataset     string `json:"dataset"`
	Status      string `json:"status"` // fetching, delivered, no_record, pending, unavailable, failed
	Reason      string `json:"reason"`
	RetryAfter  int    `json:"retry_after"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	Verified    bool   `json:"verified"`
	Content     []byte `json:"content"`
}

// summary lists dataset statuses for the log: ids and statuses only, never content.
func (ex *exchange) summary() string {
	var parts []string
	for _, d := range ex.Datasets {
		parts = append(parts, d.Dataset+"="+d.Status)
	}
	return strings.Join(parts, ",")
}

type connectorError struct {
	Status  int
	Message string
}

func (e *connectorError) Error() string {
	return fmt.Sprintf("connector answered %d: %s", e.Status, e.Message)
}

// connector calls the connector's local API with a JSON body and decodes a JSON answer.
func (b *Bank) connector(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		p, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(p)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.cfg.ConnectorAPI+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if b.cfg.ConnectorToken != "" {
		req.Header.Set("Authorization", "Bearer "+b.cfg.ConnectorToken)
	}
	resp, err := b.cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("connector unreachable: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read the connector's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
			if len(e.Error) > 200 {
				e.Error = e.Error[:200]
			}
		}
		return &connectorError{resp.StatusCode, e.Error}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("the connector's answer: %w", err)
	}
	return nil
}

// ---- sessions -----------------------------------------------------------------------------------------

// pendingAuth is an authorization under way: what /callback needs to finish it.
type pendingAuth struct {
	verifier string
	name     string
	created  time.Time
}

type session struct {
	id           string
	expires      time.Time
	pending      map[string]pendingAuth // by state
	applications map[string]applicationRecord
}

type applicationRecord struct {
	name    string
	created time.Time
}

// sessionStore keeps sessions in memory, keyed by a random cookie: the verifier never leaves the server.
type sessionStore struct {
	mu   sync.Mutex
	byID map[string]*session
	now  func() time.Time
}

func newSessionStore(now func() time.Time) *sessionStore {
	return &sessionStore{byID: map[string]*session{}, now: now}
}

// get finds the request's live session, or nil.
func (s *sessionStore) get(r *http.Request) *session {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.byID[c.Value]
	if sess == nil {
		return nil
	}
	now := s.now()
	if now.After(sess.expires) {
		delete(s.byID, sess.id)
		return nil
	}
	sess.expires = now.Add(sessionTTL)
	return sess
}

// getOrCreate finds the request's session or starts one and sets its cookie.
func (s *sessionStore) getOrCreate(w http.ResponseWriter, r *http.Request) *session {
	if sess := s.get(r); sess != nil {
		return sess
	}
	now := s.now()
	sess := &session{id: randomString(32), expires: now.Add(sessionTTL), pending: map[string]pendingAuth{}, applications: map[string]applicationRecord{}}
	s.mu.Lock()
	s.sweep(now)
	s.byID[sess.id] = sess
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: sess.id, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: r.TLS != nil,
	})
	return sess
}

// sweep drops expired sessions, and the oldest ones when there are too many; s.mu is held.
func (s *sessionStore) sweep(now time.Time) {
	var oldest *session
	for id, sess := range s.byID {
		if now.After(sess.expires) {
			delete(s.byID, id)
		} else if oldest == nil || sess.expires.Before(oldest.expires) {
			oldest = sess
		}
	}
	if len(s.byID) >= maxSessions && oldest != nil {
		delete(s.byID, oldest.id)
	}
}

func (s *sessionStore) addPending(sess *session, state string, p pendingAuth) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	p.created = now
	var oldest string
	for st, q := range sess.pending {
		if now.Sub(q.created) > authTTL {
			delete(sess.pending, st)
		} else if oldest == "" || q.created.Before(sess.pending[oldest].created) {
			oldest = st
		}
	}
	if len(sess.pending) >= maxPending {
		delete(sess.pending, oldest)
	}
	sess.pending[state] = p
}

// takePending removes and returns the authorization started with state, if it is still fresh.
func (s *sessionStore) takePending(sess *session, state string) (pendingAuth, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := sess.pending[state]
	if !ok || state == "" {
		return pendingAuth{}, false
	}
	delete(sess.pending, state)
	if s.now().Sub(p.created) > authTTL {
		return pendingAuth{}, false
	}
	return p, true
}

func (s *sessionStore) addApplication(sess *session, id, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess.applications[id] = applicationRecord{name: name, created: s.now()}
}

func (s *sessionStore) application(sess *session, id string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := sess.applications[id]
	return a.name, ok
}

func (s *sessionStore) applications(sess *session) []applicationLink {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []applicationLink
	for id, a := range sess.applications {
		out = append(out, applicationLink{ID: id, Created: a.created})
	}
	slices.SortFunc(out, func(a, b applicationLink) int { return b.Created.Compare(a.Created) }) // newest first
	return out
}
