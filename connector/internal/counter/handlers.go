package counter

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mydatafed/mydata/connector/internal/exchange"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

const maxForm = 16 << 10

// staffSession is the request's staff session, if it has a live one whose account still exists.
func (s *Server) staffSession(r *http.Request) (*session, bool) {
	id := s.cookie(r, sessionCookie)
	if id == "" {
		return nil, false
	}
	sess, ok := s.sessions.get(id)
	if !ok {
		if s.store.purge(id) {
			s.metrics.purges.WithLabelValues("session_end").Inc()
		}
		return nil, false
	}
	_ = s.staff.reload()
	if !s.staff.exists(sess.staff) {
		s.sessions.end(id)
		if s.store.purge(id) {
			s.metrics.purges.WithLabelValues("session_end").Inc()
		}
		return nil, false
	}
	return sess, true
}

// requireStaff answers with the login page's address when there is no session.
func (s *Server) requireStaff(w http.ResponseWriter, r *http.Request) (*session, bool) {
	sess, ok := s.staffSession(r)
	if !ok {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
	}
	return sess, ok
}

// postForm parses a form posted by a logged-in staff member and checks its CSRF token.
func (s *Server) postForm(w http.ResponseWriter, r *http.Request) (*session, bool) {
	sess, ok := s.requireStaff(w, r)
	if !ok {
		return nil, false
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil || !s.csrf.check("s:"+sess.id, r.PostForm.Get("csrf")) {
		s.render(w, r, http.StatusForbidden, "error.html", &page{Title: "error.title", Staff: sess.staff, Message: message("error.csrf")})
		return nil, false
	}
	return sess, true
}

func (s *Server) sessionPage(sess *session, title string) *page {
	return &page{Title: title, Staff: sess.staff, CSRF: s.csrf.token("s:" + sess.id)}
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.staffSession(r); ok {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	s.renderLogin(w, r, http.StatusOK, nil, "")
}

func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, status int, m *msg, name string) {
	pre := s.cookie(r, preCookie)
	if len(pre) != 43 {
		pre = randomToken(32)
		s.setCookie(w, preCookie, pre, false)
	}
	s.render(w, r, status, "login.html", &page{Title: "login.title", CSRF: s.csrf.token("p:" + pre), Message: m, D: name})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil || !s.csrf.check("p:"+s.cookie(r, preCookie), r.PostForm.Get("csrf")) {
		s.renderLogin(w, r, http.StatusForbidden, message("error.csrf"), "")
		return
	}
	name, password := strings.TrimSpace(r.PostForm.Get("name")), r.PostForm.Get("password")
	if until, locked := s.logins.locked(name); locked {
		s.metrics.logins.WithLabelValues("locked").Inc()
		s.renderLogin(w, r, http.StatusTooManyRequests, message("login.locked", s.clock(until)), name)
		return
	}
	if err := s.staff.reload(); err != nil {
		s.log.Error("counter staff file", "err", err)
	}
	if !s.staff.check(name, password) {
		s.metrics.logins.WithLabelValues("wrong").Inc()
		s.log.Warn("counter login refused", "staff", name)
		if validName(name) == nil { // count only names that could be accounts, so the map stays small
			if until, left := s.logins.fail(name); left == 0 {
				s.renderLogin(w, r, http.StatusTooManyRequests, message("login.locked", s.clock(until)), name)
				return
			}
		}
		s.renderLogin(w, r, http.StatusUnauthorized, message("login.wrong"), name)
		return
	}
	s.logins.reset(name)
	sess := s.sessions.create(name)
	s.setCookie(w, sessionCookie, sess.id, false)
	s.setCookie(w, preCookie, "", true)
	s.metrics.logins.WithLabelValues("ok").Inc()
	s.log.Info("counter staff logged in", "staff", name, "terminal", sess.terminal)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.postForm(w, r)
	if !ok {
		return
	}
	s.sessions.end(sess.id)
	if s.store.purge(sess.id) {
		s.metrics.purges.WithLabelValues("logout").Inc()
	}
	s.setCookie(w, sessionCookie, "", true)
	s.log.Info("counter staff logged out", "staff", sess.staff, "terminal", sess.terminal)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// setLang remembers the language chosen; it changes nothing else, so a link does.
func (s *Server) setLang(w http.ResponseWriter, r *http.Request) {
	if to := r.URL.Query().Get("to"); to == langZh || to == langEn {
		s.setCookie(w, langCookie, to, false)
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// enterData is the code entry page's.
type enterData struct {
	// LockedUntil is set while this account may enter no code.
	LockedUntil string
	// OTP is set when the hub asked for the citizen's one-time code.
	OTP bool
	// Detail is the hub's own words (English) beside the message, such as how many tries remain.
	Detail string
}

func (s *Server) enterPage(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.requireStaff(w, r)
	if !ok {
		return
	}
	if _, held := s.store.get(sess.id); held {
		http.Redirect(w, r, "/view", http.StatusSeeOther)
		return
	}
	p := s.sessionPage(sess, "enter.title")
	d := &enterData{OTP: s.sessions.pending(sess) != ""}
	if until, locked := s.codes.locked(sess.staff); locked {
		d.LockedUntil = s.clock(until)
	}
	p.D = d
	s.render(w, r, http.StatusOK, "enter.html", p)
}

// normalizeCode takes a code as typed or scanned: case, spaces and hyphens do not matter. It returns ""
// for anything that cannot be a code, which then never reaches the hub.
func normalizeCode(raw string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(raw) {
		switch {
		case r == ' ' || r == '-' || r == '\t':
		case strings.ContainsRune(hubapi.CounterCodeAlphabet, r):
			b.WriteRune(r)
		default:
			return ""
		}
	}
	if b.Len() != hubapi.CounterCodeLength {
		return ""
	}
	return b.String()
}

func (s *Server) redeemCode(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.postForm(w, r)
	if !ok {
		return
	}
	if _, held := s.store.get(sess.id); held {
		http.Redirect(w, r, "/view", http.StatusSeeOther)
		return
	}
	s.sessions.setPending(sess, "")
	code := normalizeCode(r.PostForm.Get("code"))
	if code == "" {
		s.metrics.redemptions.WithLabelValues("malformed").Inc()
		s.renderEnter(w, r, sess, http.StatusUnprocessableEntity, message("code.malformed", hubapi.CounterCodeLength), "", false)
		return
	}
	s.redeem(w, r, sess, code, "")
}

func (s *Server) redeemOTP(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.postForm(w, r)
	if !ok {
		return
	}
	code := s.sessions.pending(sess)
	if r.PostForm.Get("cancel") != "" || code == "" {
		s.sessions.setPending(sess, "")
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	otp := strings.TrimSpace(r.PostForm.Get("otp"))
	if otp == "" || len(otp) > 16 {
		s.renderEnter(w, r, sess, http.StatusUnprocessableEntity, message("otp.empty"), "", true)
		return
	}
	s.redeem(w, r, sess, code, otp)
}

func (s *Server) renderEnter(w http.ResponseWriter, r *http.Request, sess *session, status int, m *msg, detail string, otp bool) {
	p := s.sessionPage(sess, "enter.title")
	p.Message = m
	d := &enterData{OTP: otp, Detail: detail}
	if until, locked := s.codes.locked(sess.staff); locked {
		d.LockedUntil = s.clock(until)
	}
	p.D = d
	s.render(w, r, status, "enter.html", p)
}

// redeem redeems code (with the citizen's one-time code, if given) and fetches its datasets; on success
// the terminal holds the data and the browser goes to /view.
func (s *Server) redeem(w http.ResponseWriter, r *http.Request, sess *session, code, otp string) {
	if until, locked := s.codes.locked(sess.staff); locked {
		s.metrics.redemptions.WithLabelValues("locked_here").Inc()
		s.renderEnter(w, r, sess, http.StatusTooManyRequests, message("code.locked", s.clock(until)), "", false)
		return
	}
	// The staff member's browser going away must not lose a code the hub may already have spent.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 2*time.Minute)
	defer cancel()
	bg, stop := context.WithCancel(context.Background())
	var resp hubapi.CounterRedeemResponse
	ex, err := s.cfg.Exchanges.Collect(ctx, bg, func(ctx context.Context, kem uint16, pub []byte) (*hubapi.RedeemResponse, error) {
		hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		err := s.cfg.Hub.Do(hctx, http.MethodPost, hubapi.PathCounterRedeem, hubapi.CounterRedeemRequest{
			Code: code, OTP: otp, Terminal: sess.terminal, RecipientKEM: kem, RecipientKey: pub,
		}, &resp)
		if err != nil {
			return nil, err
		}
		return &resp.RedeemResponse, nil
	})
	if err != nil {
		stop()
		s.refused(w, r, sess, code, err)
		return
	}
	s.codes.reset(sess.staff)
	s.sessions.setPending(sess, "")
	now := s.cfg.Now()
	h := &held{ex: ex, cancel: stop, service: resp.Service, masked: maskID(resp.Subject), agent: resp.Agent, redeemed: now, expires: now.Add(s.cfg.TTL)}
	s.store.put(sess.id, h)
	s.metrics.redemptions.WithLabelValues("redeemed").Inc()
	s.log.Info("counter code redeemed", "staff", sess.staff, "terminal", sess.terminal, "service", resp.Service,
		"consent", resp.ConsentID, "datasets", len(ex.Datasets), "agent", resp.Agent != nil)
	http.Redirect(w, r, "/view", http.StatusSeeOther)
}

// refused shows why the hub did not redeem a code. Codes that do not work count towards this account's
// lockout; the hub keeps its own per terminal.
func (s *Server) refused(w http.ResponseWriter, r *http.Request, sess *session, code string, err error) {
	var he *hubapi.Error
	if !errors.As(err, &he) || he.Status >= 500 {
		s.metrics.redemptions.WithLabelValues("hub_unreachable").Inc()
		s.log.Warn("counter redemption failed", "terminal", sess.terminal, "err", err)
		s.sessions.setPending(sess, "")
		s.renderEnter(w, r, sess, http.StatusBadGateway, message("hub.unreachable"), "", false)
		return
	}
	wrong := func(result, key string) {
		s.metrics.redemptions.WithLabelValues(result).Inc()
		s.sessions.setPending(sess, "")
		until, left := s.codes.fail(sess.staff)
		if left == 0 {
			s.log.Warn("counter terminal locked after wrong codes", "staff", sess.staff, "terminal", sess.terminal)
			s.renderEnter(w, r, sess, http.StatusTooManyRequests, message("code.locked", s.clock(until)), "", false)
			return
		}
		s.renderEnter(w, r, sess, he.Status, message(key, left), "", false)
	}
	switch {
	case he.Status == http.StatusPreconditionRequired || he.Message == hubapi.CounterOTPRequired:
		s.metrics.redemptions.WithLabelValues("otp_required").Inc()
		s.sessions.setPending(sess, code)
		s.renderEnter(w, r, sess, http.StatusOK, message("otp.ask"), "", true)
	case he.Message == hubapi.CounterOTPWrong:
		s.metrics.redemptions.WithLabelValues("otp_wrong").Inc()
		s.renderEnter(w, r, sess, http.StatusUnauthorized, message("otp.wrong"), he.Description, true)
	case he.Message == hubapi.CounterLocked || he.Status == http.StatusTooManyRequests:
		s.metrics.redemptions.WithLabelValues("hub_locked").Inc()
		s.sessions.setPending(sess, "")
		wait := he.RetryAfter
		if wait <= 0 {
			wait = s.cfg.LockoutFor
		}
		until := s.cfg.Now().Add(wait)
		s.codes.lockUntil(sess.staff, until)
		s.renderEnter(w, r, sess, http.StatusTooManyRequests, message("hub.locked", s.clock(until)), "", false)
	case he.Message == hubapi.CounterUsed || he.Status == http.StatusConflict:
		wrong("code_used", "code.used")
	case he.Message == hubapi.CounterWrongClient || he.Status == http.StatusForbidden:
		wrong("wrong_client", "code.other_sp")
	case he.Message == hubapi.CounterInvalidCode || he.Status == http.StatusNotFound:
		wrong("invalid_code", "code.invalid")
	default:
		s.metrics.redemptions.WithLabelValues("refused").Inc()
		s.sessions.setPending(sess, "")
		detail := he.Message
		if he.Description != "" {
			detail += ": " + he.Description
		}
		s.renderEnter(w, r, sess, he.Status, message("hub.refused"), detail, false)
	}
}

// viewData is the data page's.
type viewData struct {
	Service    string
	Masked     string
	Agent      *hubapi.CounterAgent
	NeedsCheck bool
	Redeemed   string
	Expires    string
	Datasets   []dsView
}

// dsView is one dataset as the page shows it.
type dsView struct {
	Index       int
	Dataset     string
	Agency      string
	Status      string
	Reason      string
	RetryAfter  int
	Kind        string
	ContentType string
	Size        int64
	SHA256      string
	JSON        *node
	CSV         *table
	Text        string
	// Unreadable: the content is not what its type says; it shows by type and size only.
	Unreadable bool
}

func (s *Server) view(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.requireStaff(w, r)
	if !ok {
		return
	}
	h, ok := s.store.get(sess.id)
	if !ok {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	p := s.sessionPage(sess, "view.title")
	d := &viewData{Service: h.service, Masked: h.masked, Agent: h.agent, NeedsCheck: h.agent != nil && !h.checked,
		Redeemed: s.clock(h.redeemed), Expires: s.clock(h.expires)}
	if !d.NeedsCheck {
		snap := h.ex.Snapshot()
		for i, ds := range snap.Datasets {
			v := dsView{Index: i, Dataset: ds.Dataset, Agency: agency(ds.DP), Status: ds.Status, Reason: ds.Reason, RetryAfter: ds.RetryAfter,
				ContentType: ds.ContentType, Size: ds.Size, SHA256: ds.SHA256}
			if ds.Status == exchange.StatusPending || ds.Status == exchange.StatusFetching {
				p.Refresh = max(min(ds.RetryAfter, 30), 3)
			}
			if ds.Status == exchange.StatusDelivered && ds.Content != nil {
				v.Kind = viewKind(ds.ContentType)
				var err error
				switch v.Kind {
				case viewJSON:
					v.JSON, err = renderJSON(ds.Content)
				case viewCSV:
					v.CSV, err = renderCSV(ds.Content)
				case viewText:
					v.Text = string(ds.Content)
				}
				if err != nil {
					v.Kind, v.Unreadable = viewOther, true
				}
			}
			d.Datasets = append(d.Datasets, v)
		}
	}
	p.D = d
	s.render(w, r, http.StatusOK, "view.html", p)
}

// agency names a dataset's data provider by its organisation and connector.
func agency(dp string) string {
	id, err := spiffeid.FromString(dp)
	if err != nil {
		return dp
	}
	parts := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	if len(parts) == 4 && parts[0] == "org" && parts[2] == "connector" {
		return parts[1] + " / " + parts[3]
	}
	return dp
}

func (s *Server) confirmAgent(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.postForm(w, r)
	if !ok {
		return
	}
	h, ok := s.store.get(sess.id)
	if !ok {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if r.PostForm.Get("checked") != "yes" {
		p := s.sessionPage(sess, "view.title")
		p.Message = message("agent.unchecked")
		p.D = &viewData{Service: h.service, Masked: h.masked, Agent: h.agent, NeedsCheck: true, Redeemed: s.clock(h.redeemed), Expires: s.clock(h.expires)}
		s.render(w, r, http.StatusUnprocessableEntity, "view.html", p)
		return
	}
	s.store.confirmAgent(sess.id)
	s.log.Info("counter agent's ID checked", "staff", sess.staff, "terminal", sess.terminal)
	http.Redirect(w, r, "/view", http.StatusSeeOther)
}

// content serves one delivered PDF for the data page's frame: same origin, its own type, framable by
// this origin only. Other types show in the page itself and are not served raw, so that no dataset can
// run as a page of this origin.
func (s *Server) content(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.staffSession(r)
	if !ok {
		http.NotFound(w, r)
		return
	}
	h, ok := s.store.get(sess.id)
	i, err := strconv.Atoi(r.PathValue("i"))
	if !ok || err != nil || h.agent != nil && !h.checked {
		http.NotFound(w, r)
		return
	}
	snap := h.ex.Snapshot()
	if i < 0 || i >= len(snap.Datasets) {
		http.NotFound(w, r)
		return
	}
	ds := snap.Datasets[i]
	if ds.Status != exchange.StatusDelivered || ds.Content == nil || viewKind(ds.ContentType) != viewPDF {
		http.NotFound(w, r)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/pdf")
	hd.Set("Content-Disposition", "inline")
	hd.Set("Content-Length", strconv.Itoa(len(ds.Content)))
	hd.Set("X-Frame-Options", "SAMEORIGIN")
	hd.Set("Content-Security-Policy", "default-src 'none'; object-src 'self'; frame-ancestors 'self'")
	_, _ = w.Write(ds.Content)
}

func (s *Server) done(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.postForm(w, r)
	if !ok {
		return
	}
	if s.store.purge(sess.id) {
		s.metrics.purges.WithLabelValues("done").Inc()
		s.log.Info("counter data purged: done", "staff", sess.staff, "terminal", sess.terminal)
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// clock writes a time of today as the page shows it, in the configured zone.
func (s *Server) clock(t time.Time) string {
	return t.In(s.cfg.Location).Format("2006-01-02 15:04:05")
}

// maskID is the national ID as the page shows it: enough to match the citizen's card, not for a
// passer-by to note.
func maskID(id string) string {
	if len(id) != 10 {
		return "**********"
	}
	return id[:3] + "*****" + id[8:]
}
