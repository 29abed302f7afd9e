package portal

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/mail"
	"strings"

	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/hub/internal/identity/otp"
	"github.com/mydatafed/mydata/hub/internal/notify"
)

// contactStep is an address being verified: the code went there, and the address waits signed in the form.
type contactStep struct {
	Session   string `json:"sid"`
	Channel   string `json:"ch"`
	Address   string `json:"a"`
	Challenge string `json:"c"`
}

type passkeyRow struct {
	Name     string
	Created  string
	LastUsed string
	ID       string
	CSRF     string
}

func (s *Server) account(w http.ResponseWriter, r *http.Request) {
	s.renderAccount(w, r, http.StatusOK, msg{}, nil)
}

func (s *Server) renderAccount(w http.ResponseWriter, r *http.Request, status int, m msg, extra map[string]any) {
	sess := sessionOf(r)
	if sess == nil {
		http.Redirect(w, r, "/login?next=/account", http.StatusSeeOther)
		return
	}
	data := map[string]any{"Message": m, "MethodName": sess.Method, "ContactCSRF": s.csrf(r, "contact"), "NotifyCSRF": s.csrf(r, "notifications")}
	if me, ok := s.method(sess.Method); ok {
		data["MethodName"] = pickLang(requestLang(r), me.NameZh, me.NameEn)
	}
	hashes, err := s.cfg.Keys.LookupHashes(sess.Subject)
	if err != nil {
		s.internalError(w, r, "hash a national ID", err)
		return
	}
	contact, err := s.cfg.State.ContactOf(hashes...)
	if err != nil {
		s.internalError(w, r, "read contacts", err)
		return
	}
	if contact != nil {
		if a, ok := s.verifiedAddress(contact, "email"); ok {
			data["Email"] = a
		}
		if a, ok := s.verifiedAddress(contact, "sms"); ok {
			data["Phone"] = a
		}
		data["NotifyEmail"], data["NotifySMS"] = contact.NotifyEmail, contact.NotifySMS
	}
	if s.passkeys != nil {
		data["Passkeys"] = true
		data["PasskeyCSRF"] = s.csrf(r, "passkey-register")
		data["CanRegister"] = sess.Level >= s.cfg.Logins.Passkey.RegisterLevel
		data["RegisterLevel"] = s.cfg.Logins.Passkey.RegisterLevel
		creds, err := (passkeyStore{s}).Credentials(sess.Subject)
		if err != nil {
			s.internalError(w, r, "read passkeys", err)
			return
		}
		var rows []passkeyRow
		ft := fmtTime(s.cfg.Location)
		for _, c := range creds {
			id := base64.RawURLEncoding.EncodeToString(c.ID)
			rows = append(rows, passkeyRow{Name: c.Name, Created: ft(c.CreatedAt), LastUsed: ft(c.LastUsedAt), ID: id, CSRF: s.csrf(r, "passkey-remove:"+id)})
		}
		data["PasskeyRows"] = rows
	}
	for k, v := range extra {
		data[k] = v
	}
	s.render(w, r, status, "account.html", "account.title", data)
}

// contactStart sends a code to an address the citizen adds, to prove it is theirs.
func (s *Server) contactStart(w http.ResponseWriter, r *http.Request) {
	sess := sessionOf(r)
	if sess == nil {
		http.Redirect(w, r, "/login?next=/account", http.StatusSeeOther)
		return
	}
	if err := r.ParseForm(); err != nil || !s.checkCSRF(r, "contact") {
		s.renderAccount(w, r, http.StatusForbidden, message("error.csrf"), nil)
		return
	}
	channel, address := r.PostForm.Get("channel"), strings.TrimSpace(r.PostForm.Get("address"))
	switch channel {
	case "email":
		a, err := mail.ParseAddress(address)
		if err != nil || a.Name != "" || len(address) > 254 {
			s.renderAccount(w, r, http.StatusBadRequest, message("account.bad_email"), nil)
			return
		}
		address = a.Address
	case "sms":
		p, err := notify.ParsePhone(address)
		if err != nil {
			s.renderAccount(w, r, http.StatusBadRequest, message("account.bad_phone"), nil)
			return
		}
		address = p
	default:
		s.renderAccount(w, r, http.StatusBadRequest, message("otp.choose_channel"), nil)
		return
	}
	if until := s.lockedUntil(r, sess.Subject); !until.IsZero() {
		s.renderAccount(w, r, http.StatusTooManyRequests, s.lockedMessage(until), nil)
		return
	}
	hash, err := s.cfg.Keys.LookupHash(sess.Subject)
	if err != nil {
		s.internalError(w, r, "hash a national ID", err)
		return
	}
	id, err := s.issueCode(r.Context(), hash, "verify-"+channel, channel, address, requestLang(r))
	if err != nil {
		s.log.Warn("send a verification code", "channel", channel, "err", err)
		s.renderAccount(w, r, http.StatusServiceUnavailable, message("otp.send_failed"), nil)
		return
	}
	token, err := s.signedBlob(r, "contact", contactStep{Session: sess.ID, Channel: channel, Address: address, Challenge: id})
	if err != nil {
		s.internalError(w, r, "seal a contact step", err)
		return
	}
	s.renderAccount(w, r, http.StatusOK, message("account.code_sent"), map[string]any{"VerifyStep": token, "VerifyCSRF": s.csrf(r, "contact-verify")})
}

// contactVerify checks the code and stores the address, sealed, as verified.
func (s *Server) contactVerify(w http.ResponseWriter, r *http.Request) {
	sess := sessionOf(r)
	if sess == nil {
		http.Redirect(w, r, "/login?next=/account", http.StatusSeeOther)
		return
	}
	if err := r.ParseForm(); err != nil || !s.checkCSRF(r, "contact-verify") {
		s.renderAccount(w, r, http.StatusForbidden, message("error.csrf"), nil)
		return
	}
	var st contactStep
	if err := s.openBlob(r, r.PostForm.Get("step_token"), "contact", &st); err != nil || st.Session != sess.ID {
		s.renderAccount(w, r, http.StatusBadRequest, message("otp.step_expired"), nil)
		return
	}
	again := map[string]any{"VerifyStep": r.PostForm.Get("step_token"), "VerifyCSRF": s.csrf(r, "contact-verify")}
	code, err := otp.ParseCode(r.PostForm.Get("code"))
	if err != nil {
		s.renderAccount(w, r, http.StatusBadRequest, message("otp.malformed"), again)
		return
	}
	svc, err := s.otpService()
	if err != nil {
		s.internalError(w, r, "one-time codes", err)
		return
	}
	hash, err := s.cfg.Keys.LookupHash(sess.Subject)
	if err != nil {
		s.internalError(w, r, "hash a national ID", err)
		return
	}
	if err := svc.Check(st.Challenge, hash, "verify-"+st.Channel, code); err != nil {
		s.loginFailed(r, sess.Subject, "verify-"+st.Channel)
		var wrong *otp.WrongCodeError
		if errors.As(err, &wrong) {
			s.renderAccount(w, r, http.StatusUnauthorized, message("otp.wrong", wrong.TriesLeft), again)
			return
		}
		s.renderAccount(w, r, http.StatusUnauthorized, message("otp.dead"), nil)
		return
	}
	contact, err := s.contactRecord(sess.Subject)
	if err != nil {
		s.internalError(w, r, "read contacts", err)
		return
	}
	sealed, err := s.cfg.Keys.SealSubject(st.Address, contactSealContext+st.Channel)
	if err != nil {
		s.internalError(w, r, "seal an address", err)
		return
	}
	now := s.now()
	if st.Channel == "email" {
		contact.EmailSealed, contact.EmailVerifiedAt, contact.NotifyEmail = sealed, now, true
	} else {
		contact.PhoneSealed, contact.PhoneVerifiedAt = sealed, now
	}
	if err := s.saveContact(r, contact); err != nil {
		s.internalError(w, r, "save a contact", err)
		return
	}
	http.Redirect(w, r, "/account", http.StatusSeeOther)
}

// contactRecord is the citizen's record, or a new one under the active lookup key.
func (s *Server) contactRecord(subject string) (fsm.Contact, error) {
	hashes, err := s.cfg.Keys.LookupHashes(subject)
	if err != nil {
		return fsm.Contact{}, err
	}
	c, err := s.cfg.State.ContactOf(hashes...)
	if err != nil || c != nil {
		if c == nil {
			return fsm.Contact{}, err
		}
		return *c, nil
	}
	return fsm.Contact{SubjectHash: hashes[0]}, nil
}

func (s *Server) saveContact(r *http.Request, c fsm.Contact) error {
	c.Lang = requestLang(r)
	c.UpdatedAt = s.now()
	return s.cfg.Apply(&fsm.ContactSet{Contact: c})
}

// notificationsSet records how the citizen wants to hear of each use of their data, and in which language.
func (s *Server) notificationsSet(w http.ResponseWriter, r *http.Request) {
	sess := sessionOf(r)
	if sess == nil {
		http.Redirect(w, r, "/login?next=/account", http.StatusSeeOther)
		return
	}
	if err := r.ParseForm(); err != nil || !s.checkCSRF(r, "notifications") {
		s.renderAccount(w, r, http.StatusForbidden, message("error.csrf"), nil)
		return
	}
	c, err := s.contactRecord(sess.Subject)
	if err != nil {
		s.internalError(w, r, "read contacts", err)
		return
	}
	c.NotifyEmail = r.PostForm.Get("notify_email") == "on" && !c.EmailVerifiedAt.IsZero()
	c.NotifySMS = r.PostForm.Get("notify_sms") == "on" && !c.PhoneVerifiedAt.IsZero()
	if err := s.saveContact(r, c); err != nil {
		s.internalError(w, r, "save a contact", err)
		return
	}
	http.Redirect(w, r, "/account", http.StatusSeeOther)
}
