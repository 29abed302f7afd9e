package portal

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/hub/internal/identity"
	"github.com/mydatafed/mydata/hub/internal/identity/certlogin"
	"github.com/mydatafed/mydata/hub/internal/identity/oidclogin"
	"github.com/mydatafed/mydata/hub/internal/identity/passkey"
	"github.com/mydatafed/mydata/hub/internal/identity/twodocs"
	"github.com/mydatafed/mydata/hub/internal/notify"
	"github.com/mydatafed/mydata/pkg/nationalid"
)

// Logins are the login methods the hub enabled, built by the server from hub.yaml's identity section.
type Logins struct {
	Lockout      Lockout
	OTP          *OTPLogin
	Passkey      *PasskeyLogin
	Certificates []CertLogin
	TwoDocs      *TwoDocsLogin
	OIDC         []OIDCLogin
	// Notify sends one-time codes; Templates word them.
	Notify    *notify.Sender
	Templates *notify.Templates
}

// Lockout bounds failed logins per citizen and per client address.
type Lockout struct {
	MaxFailures int
	Window      time.Duration
	Duration    time.Duration
}

// OTPLogin is the one-time code sent to a contact the citizen verified: the weakest method.
type OTPLogin struct {
	Level int
}

// PasskeyLogin is FIDO2: registered from the account page by a session of at least RegisterLevel.
type PasskeyLogin struct {
	Config        passkey.Config
	Level         int
	RegisterLevel int
}

// CertLogin is a smart-card certificate signed through the local signing component.
type CertLogin struct {
	Verifier       *certlogin.Verifier
	NameZh, NameEn string
	Level          int
	// SignerURL is the signing component's endpoint on the citizen's computer.
	SignerURL string
}

// TwoDocsLogin checks the NHI card number with a household number or the ID's issue date.
type TwoDocsLogin struct {
	Client *twodocs.Client
	Level  int
}

// OIDCLogin is an external OpenID provider; Level is the highest it may give, for the login page.
type OIDCLogin struct {
	RP             *oidclogin.RP
	NameZh, NameEn string
	Level          int
}

// Method kinds: the page that runs each.
const (
	kindDev     = "dev"
	kindOTP     = "otp"
	kindPasskey = "passkey"
	kindCert    = "cert"
	kindTwoDocs = "two-docs"
	kindOIDC    = "oidc"
)

// loginMethods lists the enabled methods, strongest first, with the development ones if the login is on.
func (s *Server) loginMethods() []Method {
	var out []Method
	l := s.cfg.Logins
	for _, c := range l.Certificates {
		out = append(out, Method{ID: c.Verifier.ID(), NameZh: c.NameZh, NameEn: c.NameEn, Level: c.Level, Kind: kindCert})
	}
	for _, o := range l.OIDC {
		out = append(out, Method{ID: o.RP.ID(), NameZh: o.NameZh, NameEn: o.NameEn, Level: o.Level, Kind: kindOIDC})
	}
	if l.Passkey != nil {
		out = append(out, Method{ID: l.Passkey.Config.ID, NameZh: "通行金鑰（FIDO）", NameEn: "Passkey (FIDO)", Level: l.Passkey.Level, Kind: kindPasskey})
	}
	if l.TwoDocs != nil {
		out = append(out, Method{ID: l.TwoDocs.Client.ID(), NameZh: "雙證件（健保卡及戶號或發證日期）", NameEn: "Two documents (NHI card and household number or ID issue date)",
			Level: l.TwoDocs.Level, Kind: kindTwoDocs})
	}
	if l.OTP != nil {
		out = append(out, Method{ID: "otp", NameZh: "一次性驗證碼（電子郵件或簡訊）", NameEn: "One-time code by e-mail or SMS", Level: l.OTP.Level, Kind: kindOTP})
	}
	if s.cfg.DevLogin {
		// A simulated method keeps the real one's id (datasets name methods by id); a real method of the
		// same id is not simulated.
		for _, m := range DevMethods {
			if !slices.ContainsFunc(out, func(o Method) bool { return o.ID == m.ID }) {
				out = append(out, m)
			}
		}
	}
	for i := range out {
		if out[i].Kind == kindDev {
			continue
		}
		for j := i + 1; j < len(out); j++ {
			if out[j].Level > out[i].Level {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// clientAddr is the client's address for lockouts. Behind a reverse proxy this is the proxy; the
// operator guide says to terminate at the portal or configure the proxy to limit too.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// throttleKeys are the keys a login attempt counts against: the citizen (when known) and the address.
func (s *Server) throttleKeys(r *http.Request, subject string) []string {
	var keys []string
	if subject != "" {
		if h, err := s.cfg.Keys.LookupHash(subject); err == nil {
			keys = append(keys, "subject:"+h)
		}
	}
	if tag, err := s.cfg.Keys.Sign("lockout address", clientAddr(r)); err == nil {
		sum := sha256.Sum256([]byte(tag))
		keys = append(keys, "addr:"+base64.RawURLEncoding.EncodeToString(sum[:]))
	}
	return keys
}

// lockedUntil says until when the attempt's keys are locked; zero if they are not.
func (s *Server) lockedUntil(r *http.Request, subject string) time.Time {
	var until time.Time
	for _, k := range s.throttleKeys(r, subject) {
		if t, err := s.cfg.State.ThrottleOf(k); err == nil && t.LockedUntil.After(s.now()) && t.LockedUntil.After(until) {
			until = t.LockedUntil
		}
	}
	return until
}

// loginFailed counts a failed attempt against the citizen and the address.
func (s *Server) loginFailed(r *http.Request, subject, method string) {
	s.metrics.loginFailures.WithLabelValues(method).Inc()
	lo := s.cfg.Logins.Lockout
	for _, k := range s.throttleKeys(r, subject) {
		if err := s.cfg.Apply(&fsm.ThrottleFail{Key: k, Max: lo.MaxFailures, Window: lo.Window, Lock: lo.Duration, At: s.now()}); err != nil {
			s.log.Warn("count a failed login", "err", err)
		}
	}
}

// lockedMessage tells the citizen when to try again, in the portal's zone.
func (s *Server) lockedMessage(until time.Time) msg {
	return message("login.locked", fmtTime(s.cfg.Location)(until))
}

// finishLogin records a successful login (clearing the citizen's failures, noting the method's first
// use) and starts the session.
func (s *Server) finishLogin(w http.ResponseWriter, r *http.Request, res identity.Result, next string) {
	if keys := s.throttleKeys(r, res.Subject); len(keys) > 0 {
		_ = s.cfg.Apply(&fsm.ThrottleClear{Keys: keys[:1]})
	}
	if hashes, err := s.cfg.Keys.LookupHashes(res.Subject); err == nil {
		_ = s.cfg.Apply(&fsm.MethodUsed{SubjectHash: hashes[0], Method: res.Method, At: s.now()})
		// Consents are recorded under the active lookup key's hash and the outbox finds the contact by it:
		// a contact saved under an earlier key moves to the active one when its citizen next logs in.
		if c, err := s.cfg.State.ContactOf(hashes...); err == nil && c != nil && c.SubjectHash != hashes[0] {
			c.SubjectHash = hashes[0]
			_ = s.cfg.Apply(&fsm.ContactSet{Contact: *c})
		}
	}
	s.establish(w, r, res, next)
}

// methodPage serves /login/m/{id}: each kind's own form.
func (s *Server) methodPage(w http.ResponseWriter, r *http.Request) {
	m, ok := s.method(r.PathValue("id"))
	if !ok || m.Kind == kindDev {
		s.errorPage(w, r, http.StatusNotFound, "login.title", message("login.unknown_method"))
		return
	}
	next := s.safeNext(r.URL.Query().Get("next"))
	if m.Kind == kindOIDC {
		s.oidcStart(w, r, m, next)
		return
	}
	s.renderMethod(w, r, http.StatusOK, m, next, msg{}, nil)
}

// renderMethod shows a method's page; extra carries the step's own fields.
func (s *Server) renderMethod(w http.ResponseWriter, r *http.Request, status int, m Method, next string, message msg, extra map[string]any) {
	data := map[string]any{"Method": m, "Next": next, "CSRF": s.csrf(r, "login:"+m.ID), "Message": message}
	if hint := s.loginContextOf(next).Hint; hint != "" {
		data["Hint"] = maskID(hint)
	}
	for k, v := range extra {
		data[k] = v
	}
	if m.Kind == kindCert {
		challenge, token, err := s.newCertChallenge(r, m.ID)
		if err != nil {
			s.internalError(w, r, "make a certificate challenge", err)
			return
		}
		data["Challenge"], data["ChallengeToken"] = challenge, token
		for _, c := range s.cfg.Logins.Certificates {
			if c.Verifier.ID() == m.ID {
				data["SignerURL"] = c.SignerURL
				// The page's script talks to the signing component on the citizen's computer.
				if u := originOf(c.SignerURL); u != "" {
					w.Header().Set("Content-Security-Policy", strings.Replace(csp(""), "connect-src 'self'", "connect-src 'self' "+u, 1))
				}
			}
		}
	}
	s.render(w, r, status, "method.html", "login.title", data)
}

func originOf(raw string) string {
	i := strings.Index(raw, "://")
	if i < 0 {
		return ""
	}
	rest := raw[i+3:]
	if j := strings.IndexAny(rest, "/?#"); j >= 0 {
		rest = rest[:j]
	}
	return raw[:i+3] + rest
}

// methodPost serves the forms of /login/m/{id}.
func (s *Server) methodPost(w http.ResponseWriter, r *http.Request) {
	m, ok := s.method(r.PathValue("id"))
	if !ok || m.Kind == kindDev || m.Kind == kindOIDC || m.Kind == kindPasskey {
		s.errorPage(w, r, http.StatusNotFound, "login.title", message("login.unknown_method"))
		return
	}
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "error.invalid", message("error.form"))
		return
	}
	next := s.safeNext(r.PostForm.Get("next"))
	if !s.checkCSRF(r, "login:"+m.ID) {
		s.renderMethod(w, r, http.StatusForbidden, m, next, message("error.csrf"), nil)
		return
	}
	subject := strings.ToUpper(strings.TrimSpace(r.PostForm.Get("subject")))
	if r.PostForm.Has("subject_masked") {
		subject = s.loginContextOf(next).Hint
	}
	// A code step carries the subject it was sent for, signed.
	if st := r.PostForm.Get("step_token"); st != "" {
		step, err := s.openStep(r, st, m.ID)
		if err != nil {
			s.renderMethod(w, r, http.StatusBadRequest, m, next, message("otp.step_expired"), nil)
			return
		}
		subject = step.Subject
	}
	if err := nationalid.Valid(subject); err != nil {
		s.renderMethod(w, r, http.StatusBadRequest, m, next, message("login.bad_id"), nil)
		return
	}
	if until := s.lockedUntil(r, subject); !until.IsZero() {
		w.Header().Set("Retry-After", fmt.Sprint(int(until.Sub(s.now()).Seconds())+1))
		s.renderMethod(w, r, http.StatusTooManyRequests, m, next, s.lockedMessage(until), nil)
		return
	}
	switch m.Kind {
	case kindOTP:
		s.otpLogin(w, r, m, subject, next)
	case kindCert:
		s.certLogin(w, r, m, subject, next)
	case kindTwoDocs:
		s.twoDocsLogin(w, r, m, subject, next)
	}
}

// step is a login half done: the subject a code was sent for, the challenge, and the result the code
// completes (two documents' first use). Signed, kept in the form, bound to the browser.
type step struct {
	Subject   string `json:"s"`
	Challenge string `json:"c"`
	Method    string `json:"m"`
	Level     int    `json:"l"`
	Evidence  string `json:"e"`
	Expires   int64  `json:"x"`
}

func (s *Server) sealStep(r *http.Request, st step) (string, error) {
	st.Expires = s.now().Add(10 * time.Minute).Unix()
	return s.signedBlob(r, "login step", st)
}

func (s *Server) openStep(r *http.Request, token, method string) (step, error) {
	var st step
	if err := s.openBlob(r, token, "login step", &st); err != nil {
		return st, err
	}
	if st.Method != method || s.now().Unix() > st.Expires {
		return st, errors.New("expired or for another method")
	}
	return st, nil
}

// sendCode issues a one-time code for subject and sends it to their verified contact on channel. It
// reports whether there was such a contact; the citizen is told the same either way, so that the page
// does not reveal who has one.
func (s *Server) sendCode(ctx context.Context, r *http.Request, subject, purpose, channel string) (challenge string, sent bool, err error) {
	hashes, err := s.cfg.Keys.LookupHashes(subject)
	if err != nil {
		return "", false, err
	}
	contact, err := s.cfg.State.ContactOf(hashes...)
	if err != nil {
		return "", false, err
	}
	to, ok := s.verifiedAddress(contact, channel)
	if !ok {
		return randomID(16), false, nil
	}
	lang := requestLang(r)
	if contact.Lang != "" {
		lang = contact.Lang
	}
	id, err := s.issueCode(ctx, hashes[0], purpose, channel, to, lang)
	return id, err == nil, err
}

// issueCode makes a challenge and sends its code to the address.
func (s *Server) issueCode(ctx context.Context, subjectHash, purpose, channel, to, lang string) (string, error) {
	svc, err := s.otpService()
	if err != nil {
		return "", err
	}
	id, code, err := svc.Issue(subjectHash, purpose, channel)
	if err != nil {
		return "", err
	}
	return id, s.deliverCode(ctx, purpose, lang, channel, to, code)
}

func (s *Server) verifiedAddress(c *fsm.Contact, channel string) (string, bool) {
	if c == nil {
		return "", false
	}
	var sealed []byte
	switch {
	case channel == "email" && !c.EmailVerifiedAt.IsZero():
		sealed = c.EmailSealed
	case channel == "sms" && !c.PhoneVerifiedAt.IsZero():
		sealed = c.PhoneSealed
	default:
		return "", false
	}
	to, err := s.cfg.Keys.OpenSubject(sealed, contactSealContext+channel)
	return to, err == nil
}

const contactSealContext = "contact "

func (s *Server) deliverCode(ctx context.Context, purpose, lang, channel, to, code string) error {
	if s.cfg.Logins.Templates == nil || s.cfg.Logins.Notify == nil {
		return errors.New("no sender configured for one-time codes")
	}
	otpPurpose := "login"
	if strings.HasPrefix(purpose, "verify-") {
		otpPurpose = "verify"
	}
	msg, err := s.cfg.Logins.Templates.Render(notify.KindOTP, lang, notify.OTP{Purpose: otpPurpose, Code: code, Minutes: 5})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if channel == "sms" {
		return s.cfg.Logins.Notify.SendSMS(ctx, to, msg)
	}
	return s.cfg.Logins.Notify.SendMail(ctx, to, msg)
}
