// Package passkey is the FIDO2/WebAuthn login method (the platform's "TW FidO" role): a citizen who has logged in
// another way registers a passkey from the account page, and afterwards logs in with it alone.
//
// Credentials are discoverable, so the login page needs no national ID first; when the portal already knows whom
// to expect (the citizen typed the ID, or a service provider bound the request to one citizen), BeginLoginFor
// lists that citizen's credentials and FinishLogin refuses anyone else's.
//
// The package holds no state. Between a ceremony's begin and finish the portal keeps the session blob it is
// given (signed, in a cookie) and hands it back; Store is the hub's replicated credential table. The WebAuthn
// user handle is never the national ID: the portal supplies a keyed hash, and a login maps the handle back to
// the citizen through the stored credential.
//
// The portal must check, before BeginRegistration, that the citizen's current login is at least the level
// configured for this method; it serves Script under its own origin for the browser side.
package passkey

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
)

// Errors the portal branches on. Every refusal wraps exactly one of them; the rest of the message is for logs.
var (
	// ErrExpired: the session blob is past its expiry; the citizen starts again.
	ErrExpired = errors.New("passkey: ceremony expired")
	// ErrSession: the session blob is malformed, for the other ceremony, or for another citizen.
	ErrSession = errors.New("passkey: session does not belong to this ceremony")
	// ErrUnknownCredential: the browser answered with a credential the hub does not hold (deleted on the
	// account page, or registered on another site with the same RP id).
	ErrUnknownCredential = errors.New("passkey: unknown credential")
	// ErrVerification: the response failed a WebAuthn check (origin, RP id, challenge, signature, user
	// presence or verification, flags), could not be parsed, or came from another citizen's passkey.
	ErrVerification = errors.New("passkey: verification failed")
	// ErrCloned: the signature counter did not advance, so two copies of the authenticator's key exist.
	ErrCloned = errors.New("passkey: signature counter did not advance: the authenticator may have been cloned")
	// ErrDuplicate: the credential being registered is already registered.
	ErrDuplicate = errors.New("passkey: credential already registered")
)

// HandleSize is the length of the user handle the portal's function must return.
const HandleSize = 32

const maxNameRunes = 64

// Method runs the WebAuthn ceremonies. It is safe for concurrent use.
type Method struct {
	cfg        Config
	wa         *webauthn.WebAuthn
	store      Store
	userHandle func(subject string) []byte
	uv         protocol.UserVerificationRequirement
	// now is replaced by tests.
	now func() time.Time
}

// Option changes how New builds the method.
type Option func(*Method)

// WithClock makes the method read the time from now (a fake clock in tests).
func WithClock(now func() time.Time) Option { return func(m *Method) { m.now = now } }

// New checks cfg and returns the method. userHandle must return HandleSize bytes that identify the subject
// to nobody without the portal's key (an HMAC under a keyring key), the same every time for one subject.
func New(cfg Config, store Store, userHandle func(subject string) []byte, opts ...Option) (*Method, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil || userHandle == nil {
		return nil, fmt.Errorf("passkey: a store and a user handle function are required")
	}
	uv := protocol.UserVerificationRequirement(cfg.UserVerification)
	timeouts := webauthn.TimeoutConfig{Timeout: cfg.Timeout, TimeoutUVD: cfg.Timeout}
	wa, err := webauthn.New(&webauthn.Config{
		RPID:          cfg.RPID,
		RPDisplayName: cfg.RPDisplayName,
		RPOrigins:     cfg.Origins,
		// Attestation would tell us the authenticator's make and model, which we have no policy on; asking
		// for none keeps the citizen's device private and the stored record small.
		AttestationPreference: protocol.PreferNoAttestation,
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			ResidentKey:        protocol.ResidentKeyRequirementRequired,
			RequireResidentKey: protocol.ResidentKeyRequired(),
			UserVerification:   uv,
		},
		// Our own blob carries the expiry; the library's would live in SessionData, which we do not keep.
		Timeouts: webauthn.TimeoutsConfig{Login: timeouts, Registration: timeouts},
		// We request no extensions and rely on none; outputs that password managers add are ignored rather
		// than failing the ceremony.
		ExtensionsUnsolicitedOutputPolicy: protocol.UnsolicitedOutputPolicyIgnore,
	})
	if err != nil {
		return nil, fmt.Errorf("passkey: %w", err)
	}
	m := &Method{cfg: cfg, wa: wa, store: store, userHandle: userHandle, uv: uv, now: time.Now}
	for _, o := range opts {
		o(m)
	}
	return m, nil
}

// ID is the configured method id.
func (m *Method) ID() string { return m.cfg.ID }

// user is the library's view of a citizen: only the opaque handle, never the national ID.
type user struct {
	handle []byte
	name   string
	creds  []webauthn.Credential
}

func (u *user) WebAuthnID() []byte                         { return u.handle }
func (u *user) WebAuthnName() string                       { return u.name }
func (u *user) WebAuthnDisplayName() string                { return u.name }
func (u *user) WebAuthnCredentials() []webauthn.Credential { return u.creds }

func (m *Method) handle(subject string) ([]byte, error) {
	h := m.userHandle(subject)
	if len(h) != HandleSize {
		return nil, fmt.Errorf("passkey: user handle function returned %d bytes, want %d", len(h), HandleSize)
	}
	return h, nil
}

func credParams() []protocol.CredentialParameter { return webauthn.CredentialParametersDefault() }

// BeginRegistration starts adding a passkey for subject, who must be logged in at the method's level or
// higher. displayName is what the authenticator shows to pick the account (the citizen's name, or a masked
// ID): it leaves the hub, so it must not be the national ID. The citizen's existing credentials are excluded,
// so an authenticator cannot be registered twice.
func (m *Method) BeginRegistration(subject, displayName string) (options, sess []byte, err error) {
	h, err := m.handle(subject)
	if err != nil {
		return nil, nil, err
	}
	displayName = strings.TrimSpace(displayName)
	if displayName == "" || strings.Contains(strings.ToUpper(displayName), strings.ToUpper(subject)) {
		return nil, nil, fmt.Errorf("passkey: the display name must be set and must not contain the national ID")
	}
	existing, err := m.store.Credentials(subject)
	if err != nil {
		return nil, nil, fmt.Errorf("passkey: list credentials: %w", err)
	}
	exclude := descriptors(existing)
	creation, sd, err := m.wa.BeginRegistration(&user{handle: h, name: displayName},
		webauthn.WithExclusions(exclude),
		webauthn.WithCredentialParameters(credParams()),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("passkey: begin registration: %w", err)
	}
	return m.begin(kindRegistration, creation, sd, h)
}

// FinishRegistration checks the browser's answer (the JSON Script posts) against the session blob, stores the
// new credential and returns it. name is the citizen's label for it.
func (m *Method) FinishRegistration(subject string, sess, body []byte, name string) (Credential, error) {
	s, err := m.openSession(sess, kindRegistration)
	if err != nil {
		return Credential{}, err
	}
	h, err := m.handle(subject)
	if err != nil {
		return Credential{}, err
	}
	if !bytes.Equal(h, s.handle) {
		return Credential{}, fmt.Errorf("%w: registration was started for another citizen", ErrSession)
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(body)
	if err != nil {
		return Credential{}, verificationError("parse registration", err)
	}
	sd := webauthn.SessionData{
		Challenge:        base64.RawURLEncoding.EncodeToString(s.challenge),
		RelyingPartyID:   m.cfg.RPID,
		UserID:           h,
		UserVerification: m.uv,
		CredParams:       credParams(),
	}
	wc, err := m.wa.CreateCredential(&user{handle: h}, sd, parsed)
	if err != nil {
		return Credential{}, verificationError("registration", err)
	}
	known, err := m.store.CredentialByID(wc.ID)
	if err != nil {
		return Credential{}, fmt.Errorf("passkey: look up credential: %w", err)
	}
	if known != nil {
		return Credential{}, ErrDuplicate
	}
	c := Credential{
		ID:                wc.ID,
		Subject:           subject,
		UserHandle:        h,
		Name:              cleanName(name),
		PublicKey:         wc.PublicKey,
		AttestationType:   wc.AttestationType,
		AttestationFormat: wc.AttestationFormat,
		AAGUID:            wc.Authenticator.AAGUID,
		SignCount:         wc.Authenticator.SignCount,
		BackupEligible:    wc.Flags.BackupEligible,
		BackupState:       wc.Flags.BackupState,
		CreatedAt:         m.now().UTC(),
	}
	for _, t := range wc.Transport {
		c.Transports = append(c.Transports, string(t))
	}
	if err := m.store.AddCredential(c); err != nil {
		return Credential{}, fmt.Errorf("passkey: store credential: %w", err)
	}
	return c, nil
}

// BeginLogin starts a discoverable login: the browser offers every passkey it holds for the RP id.
func (m *Method) BeginLogin() (options, sess []byte, err error) {
	assertion, sd, err := m.wa.BeginDiscoverableLogin()
	if err != nil {
		return nil, nil, fmt.Errorf("passkey: begin login: %w", err)
	}
	return m.begin(kindLogin, assertion, sd, nil)
}

// BeginLoginFor starts a login for a citizen the portal expects, listing their credentials so the browser
// picks the right one, and binds the session so that FinishLogin refuses anyone else. A subject with no
// passkey gets the discoverable options and the binding, so the login fails at the finish. The listed
// credential ids tell whoever typed the ID that the citizen has passkeys: use it behind the portal's rate
// limits, or only where the subject comes from a service provider or the citizen's own session.
func (m *Method) BeginLoginFor(subject string) (options, sess []byte, err error) {
	h, err := m.handle(subject)
	if err != nil {
		return nil, nil, err
	}
	creds, err := m.store.Credentials(subject)
	if err != nil {
		return nil, nil, fmt.Errorf("passkey: list credentials: %w", err)
	}
	var opts []webauthn.LoginOption
	if len(creds) > 0 {
		opts = append(opts, webauthn.WithAllowedCredentials(descriptors(creds)))
	}
	assertion, sd, err := m.wa.BeginDiscoverableLogin(opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("passkey: begin login: %w", err)
	}
	return m.begin(kindLogin, assertion, sd, h)
}

// FinishLogin checks the browser's assertion (the JSON Script posts) against the session blob and the stored
// credential, records the new signature counter, and returns whose passkey it was.
func (m *Method) FinishLogin(sess, body []byte) (subject string, cred Credential, err error) {
	s, err := m.openSession(sess, kindLogin)
	if err != nil {
		return "", Credential{}, err
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(body)
	if err != nil {
		return "", Credential{}, verificationError("parse assertion", err)
	}
	stored, err := m.store.CredentialByID(parsed.RawID)
	if err != nil {
		return "", Credential{}, fmt.Errorf("passkey: look up credential: %w", err)
	}
	if stored == nil {
		return "", Credential{}, ErrUnknownCredential
	}
	if len(s.handle) > 0 && !bytes.Equal(s.handle, stored.UserHandle) {
		return "", Credential{}, fmt.Errorf("%w: the passkey belongs to another citizen than the one expected", ErrVerification)
	}
	u := &user{handle: stored.UserHandle, creds: []webauthn.Credential{libraryCredential(*stored)}}
	sd := webauthn.SessionData{
		Challenge:        base64.RawURLEncoding.EncodeToString(s.challenge),
		RelyingPartyID:   m.cfg.RPID,
		UserVerification: m.uv,
	}
	var wc *webauthn.Credential
	if len(parsed.Response.UserHandle) > 0 {
		// The usual case: a discoverable credential always returns its handle, which the library checks
		// against the handle stored with the credential.
		_, wc, err = m.wa.ValidatePasskeyLogin(func(rawID, handle []byte) (webauthn.User, error) {
			return u, nil
		}, sd, parsed)
	} else {
		// Authenticators may omit the handle when the request listed credentials; then the login is only
		// acceptable if the portal said whom it expects.
		if len(s.handle) == 0 {
			return "", Credential{}, fmt.Errorf("%w: the authenticator returned no user handle", ErrVerification)
		}
		sd.UserID = stored.UserHandle
		wc, err = m.wa.ValidateLogin(u, sd, parsed)
	}
	if err != nil {
		return "", Credential{}, verificationError("login", err)
	}
	if wc.Authenticator.CloneWarning {
		return "", Credential{}, fmt.Errorf("%w (stored %d, presented %d)", ErrCloned, stored.SignCount, parsed.Response.AuthenticatorData.Counter)
	}
	c := *stored
	c.SignCount = wc.Authenticator.SignCount
	c.BackupState = parsed.Response.AuthenticatorData.Flags.HasBackupState()
	c.LastUsedAt = m.now().UTC()
	if err := m.store.UpdateCredential(c.ID, c.SignCount, c.BackupState, c.LastUsedAt); err != nil {
		if errors.Is(err, ErrCloned) {
			return "", Credential{}, err
		}
		// Without the new counter stored, a clone could replay the same counter value: refuse.
		return "", Credential{}, fmt.Errorf("passkey: record login: %w", err)
	}
	return c.Subject, c, nil
}

// Evidence describes the credential for identity.Result.Evidence: the authenticator model and a digest of the
// credential id, which pick out the passkey in logs without revealing anything about the citizen.
func Evidence(c Credential) string {
	sum := sha256.Sum256(c.ID)
	return fmt.Sprintf("passkey aaguid=%s credential=%s", formatAAGUID(c.AAGUID), hex.EncodeToString(sum[:8]))
}

func formatAAGUID(b []byte) string {
	if len(b) != 16 {
		return "none"
	}
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func (m *Method) begin(kind byte, options any, sd *webauthn.SessionData, handle []byte) ([]byte, []byte, error) {
	challenge, err := base64.RawURLEncoding.DecodeString(sd.Challenge)
	if err != nil || len(challenge) < minChallenge || len(challenge) > maxChallenge {
		return nil, nil, fmt.Errorf("passkey: unexpected challenge from the library")
	}
	opts, err := json.Marshal(options)
	if err != nil {
		return nil, nil, fmt.Errorf("passkey: encode options: %w", err)
	}
	s := session{kind: kind, expires: m.now().Add(m.cfg.Timeout + grace), challenge: challenge, handle: handle}
	return opts, s.marshal(), nil
}

func (m *Method) openSession(b []byte, kind byte) (session, error) {
	s, err := parseSession(b)
	if err != nil {
		return session{}, fmt.Errorf("%w: %w", ErrSession, err)
	}
	if s.kind != kind {
		return session{}, fmt.Errorf("%w: blob is for the other ceremony", ErrSession)
	}
	if !m.now().Before(s.expires) {
		return session{}, ErrExpired
	}
	return s, nil
}

// verificationError wraps a library error so that the portal sees ErrVerification, and the logs see why.
func verificationError(what string, err error) error {
	var pe *protocol.Error
	if errors.As(err, &pe) && pe.DevInfo != "" {
		return fmt.Errorf("%w: %s: %w (%s)", ErrVerification, what, err, strings.Join(strings.Fields(pe.DevInfo), " "))
	}
	return fmt.Errorf("%w: %s: %w", ErrVerification, what, err)
}

// libraryCredential is the stored credential in the library's shape, with what verification reads.
func libraryCredential(c Credential) webauthn.Credential {
	wc := webauthn.Credential{
		ID:                c.ID,
		PublicKey:         c.PublicKey,
		AttestationType:   c.AttestationType,
		AttestationFormat: c.AttestationFormat,
		Flags: webauthn.CredentialFlags{
			UserPresent:    true,
			BackupEligible: c.BackupEligible,
			BackupState:    c.BackupState,
		},
		Authenticator: webauthn.Authenticator{AAGUID: c.AAGUID, SignCount: c.SignCount},
	}
	for _, t := range c.Transports {
		wc.Transport = append(wc.Transport, protocol.AuthenticatorTransport(t))
	}
	return wc
}

func descriptors(creds []Credential) []protocol.CredentialDescriptor {
	d := make([]protocol.CredentialDescriptor, len(creds))
	for i, c := range creds {
		wc := libraryCredential(c)
		d[i] = wc.Descriptor()
	}
	return d
}

// cleanName keeps a label printable and short: it is shown on the account page.
func cleanName(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return -1
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if utf8.RuneCountInString(s) > maxNameRunes {
		s = string([]rune(s)[:maxNameRunes])
	}
	return s
}
