package portal

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/pkg/nationalid"
)

func (s *Server) home(w http.ResponseWriter, r *http.Request) {
	sess, _ := s.session(r)
	s.render(w, http.StatusOK, "home.html", map[string]any{"Session": sess})
}

// safeNext keeps the post-login redirect on this site.
func safeNext(next string) string {
	u, err := url.Parse(next)
	if err != nil || u.IsAbs() || u.Host != "" || !strings.HasPrefix(u.Path, "/") || strings.HasPrefix(next, "//") {
		return "/history"
	}
	return next
}

func (s *Server) renderLogin(w http.ResponseWriter, status int, next string, need int, msg string) {
	s.render(w, status, "login.html", map[string]any{
		"Next": safeNext(next), "Need": need, "Methods": Methods, "DevLogin": s.cfg.DevLogin, "Message": msg,
	})
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	s.renderLogin(w, http.StatusOK, r.URL.Query().Get("next"), 1, "")
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if !s.cfg.DevLogin {
		s.errorPage(w, http.StatusNotFound, "No login method available 無可用登入方式", "This hub has no identity method configured.")
		return
	}
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, http.StatusBadRequest, "Invalid request 請求無效", err.Error())
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	subject := strings.ToUpper(strings.TrimSpace(r.PostForm.Get("subject")))
	m, ok := method(r.PostForm.Get("method"))
	if !ok {
		s.renderLogin(w, http.StatusBadRequest, next, 1, "Choose a login method. 請選擇登入方式。")
		return
	}
	if err := nationalid.Valid(subject); err != nil {
		s.renderLogin(w, http.StatusBadRequest, next, 1, "That is not a valid national ID. 身分證字號格式錯誤。")
		return
	}
	s.metrics.logins.WithLabelValues(m.ID).Inc()
	if err := s.setSession(w, Session{Subject: subject, Method: m.ID, AAL: m.AAL, Expires: s.now().Add(s.cfg.SessionTTL).Unix()}); err != nil {
		s.log.Warn("sign a session", "err", err)
		s.errorPage(w, http.StatusServiceUnavailable, "Please try again 請稍後再試", "The hub cannot sign you in right now.")
		return
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	s.clearSession(w)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

type historyRow struct {
	fsm.Consent
	Effective string
	ServiceEn string
	ServiceZh string
	Receipts  []fsm.Receipt
	CSRF      string
	Revocable bool
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	sess, err := s.session(r)
	if err != nil {
		http.Redirect(w, r, "/login?next=/history", http.StatusSeeOther)
		return
	}
	consents, err := s.cfg.Consent.History(sess.Subject, 200)
	if err != nil {
		s.errorPage(w, http.StatusInternalServerError, "Something went wrong 系統錯誤", "Please try again later.")
		return
	}
	now := s.now()
	var rows []historyRow
	for _, c := range consents {
		row := historyRow{Consent: c, Effective: c.EffectiveState(now), ServiceEn: c.Service, ServiceZh: c.Service}
		if svc, err := s.cfg.State.Service(c.Service); err == nil && svc != nil {
			row.ServiceEn, row.ServiceZh = svc.NameEn, svc.NameZh
		}
		row.Receipts, _ = s.cfg.State.Receipts(c.ID)
		row.Revocable = row.Effective == fsm.ConsentPending || row.Effective == fsm.ConsentGranted
		row.CSRF = s.csrf(sess.Subject, "revoke:"+c.ID)
		rows = append(rows, row)
	}
	s.render(w, http.StatusOK, "history.html", map[string]any{"Session": sess, "Rows": rows})
}

func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	sess, err := s.session(r)
	if err != nil {
		http.Redirect(w, r, "/login?next=/history", http.StatusSeeOther)
		return
	}
	id := r.PathValue("id")
	if err := r.ParseForm(); err != nil || !s.checkCSRF(sess.Subject, "revoke:"+id, r.PostForm.Get("csrf")) {
		s.errorPage(w, http.StatusForbidden, "Invalid request 請求無效", "This form did not come from your history page.")
		return
	}
	if err := s.cfg.Consent.Revoke(id, sess.Subject, s.now()); err != nil {
		var fe *fsm.Error
		if !errors.As(err, &fe) {
			// No leader within the hold timeout, or the outcome is unknown: not the consent's fault.
			s.log.Warn("revoke a consent", "err", err)
			w.Header().Set("Retry-After", "2")
			s.errorPage(w, http.StatusServiceUnavailable, "Please try again 請稍後再試", "The hub cannot record your revocation right now.")
			return
		}
		s.errorPage(w, http.StatusConflict, "Cannot revoke 無法撤回", fe.Message)
		return
	}
	http.Redirect(w, r, "/history", http.StatusSeeOther)
}
