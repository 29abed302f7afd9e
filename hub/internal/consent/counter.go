package consent

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/hub/internal/identity/otp"
	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/seal"
)

// Counter verification (臨櫃核驗): the citizen agrees on the portal and gets a short code; counter staff
// type or scan it at the SP connector's counter page, and the connector redeems it here for tickets.

// The lockout of a counter terminal that enters wrong codes: CounterMaxFailures wrong codes (or one-time
// codes) within CounterWindow lock it for CounterLock. A code is 8 of 30 characters (about 2^39): at 5
// guesses per 15 minutes a terminal would need millions of years to find one of the codes alive.
const (
	CounterMaxFailures = 5
	CounterWindow      = 15 * time.Minute
	CounterLock        = 15 * time.Minute
)

// DefaultCounterTTL is how long a counter code is good for unless configured (consent.counter_ttl): 20
// minutes, as on the real platform.
const DefaultCounterTTL = 20 * time.Minute

// codeKind separates the keyed hashes of counter codes from those of any other kind of code.
const codeKind = "counter"

// agentContext binds a sealed agent to its consent, so it cannot be passed off as a national ID.
const agentContext = "counter agent "

// OTP sends and checks the one-time codes a counter service may require: the portal's code service, which
// sends to the citizen's verified contact in their language.
type OTP interface {
	// Send issues a code for purpose to the citizen with national ID subject and sends it to a verified
	// contact of theirs; ok is false when they have none.
	Send(ctx context.Context, subject, purpose string) (challenge string, ok bool, err error)
	// Check spends one try of the challenge, with otp.Service.Check's errors.
	Check(challenge, subject, purpose, code string) error
}

// OTPFuncs makes an OTP of two functions, for wiring a part made later than the consent service.
type OTPFuncs struct {
	SendFunc  func(ctx context.Context, subject, purpose string) (string, bool, error)
	CheckFunc func(challenge, subject, purpose, code string) error
}

func (o OTPFuncs) Send(ctx context.Context, subject, purpose string) (string, bool, error) {
	return o.SendFunc(ctx, subject, purpose)
}

func (o OTPFuncs) Check(challenge, subject, purpose, code string) error {
	return o.CheckFunc(challenge, subject, purpose, code)
}

// NewCounterCode draws a counter code: hubapi.CounterCodeLength characters of hubapi.CounterCodeAlphabet
// from crypto/rand, each character equally likely (bytes at or above the largest multiple of the alphabet's
// size are thrown away rather than reduced, which would favour the first characters).
func NewCounterCode() string {
	const n = len(hubapi.CounterCodeAlphabet)
	const limit = 256 / n * n
	out := make([]byte, 0, hubapi.CounterCodeLength)
	var buf [16]byte
	for len(out) < hubapi.CounterCodeLength {
		_, _ = rand.Read(buf[:]) // crypto/rand.Read never fails on supported platforms
		for _, b := range buf {
			if int(b) < limit && len(out) < hubapi.CounterCodeLength {
				out = append(out, hubapi.CounterCodeAlphabet[int(b)%n])
			}
		}
	}
	return string(out)
}

// NormalizeCounterCode reads a code as staff typed or scanned it: case, spaces and hyphens do not matter.
// ok is false when what is left is not a code.
func NormalizeCounterCode(s string) (code string, ok bool) {
	if len(s) > 64 {
		return "", false
	}
	code = strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) || r == '-' {
			return -1
		}
		return unicode.ToUpper(r)
	}, s)
	if len(code) != hubapi.CounterCodeLength {
		return "", false
	}
	for i := 0; i < len(code); i++ {
		if !strings.ContainsRune(hubapi.CounterCodeAlphabet, rune(code[i])) {
			return "", false
		}
	}
	return code, true
}

// FormatCounterCode writes a code as the citizen reads it: two groups of four.
func FormatCounterCode(code string) string {
	if len(code) != hubapi.CounterCodeLength {
		return code
	}
	return code[:4] + " " + code[4:]
}

// IssueCounter records a citizen's counter consent and returns its code. c.Subject is the citizen's
// national ID; what is recorded is its keyed hash, the ID sealed for the redemption, the code's keyed
// hash, and the agent (if any) sealed. The consent is granted at once, and expires with the code.
func (s *Service) IssueCounter(c fsm.Consent, agent *hubapi.CounterAgent, now time.Time) (code string, err error) {
	id := c.Subject
	// A pilot serves only its test subjects, at the counter as online.
	if err := s.pilotAllows(&c, id); err != nil {
		return "", err
	}
	if c.Subject, err = s.cfg.Keys.LookupHash(id); err != nil {
		return "", err
	}
	if c.SubjectSealed, err = s.cfg.Keys.SealSubject(id, c.ID); err != nil {
		return "", err
	}
	c.Mode, c.CodeExpiresAt = hubapi.ModeCounter, now.Add(s.cfg.CounterTTL)
	if c.CreatedAt.IsZero() {
		c.CreatedAt = now
	}
	cmd := &fsm.CounterRecord{Consent: c, Now: now}
	if agent != nil {
		raw, err := json.Marshal(agent)
		if err != nil {
			return "", err
		}
		if cmd.AgentSealed, err = s.cfg.Keys.SealSubject(string(raw), agentContext+c.ID); err != nil {
			return "", err
		}
	}
	// A code already taken (one chance in some hundred thousand with a million codes alive) is drawn again.
	for range 5 {
		code = NewCounterCode()
		if cmd.CodeHash, err = s.cfg.Keys.CodeHash(codeKind, code); err != nil {
			return "", err
		}
		err = s.cfg.Apply(cmd)
		var fe *fsm.Error
		if err == nil || !errors.As(err, &fe) || fe.Code != fsm.Conflict {
			break
		}
		if k, _ := s.cfg.State.Consent(c.ID); k != nil {
			break // the consent itself exists: decided already
		}
	}
	if err != nil {
		return "", err
	}
	return code, nil
}

// CounterError is a refused counter redemption: the HTTP status, one of hubapi's Counter* codes (or
// invalid_request) and why; RetryAfter is set for a locked terminal.
type CounterError struct {
	Status      int
	Code        string
	Description string
	RetryAfter  time.Duration
}

func (e *CounterError) Error() string { return e.Code + ": " + e.Description }

func counterError(status int, code, format string, args ...any) *CounterError {
	return &CounterError{Status: status, Code: code, Description: fmt.Sprintf(format, args...)}
}

// terminalKey is what a terminal's wrong codes count against: the connector's identity and the terminal it
// names, so that one SP's terminals never lock another's.
func terminalKey(caller fedid.Parsed, terminal string) string {
	sum := sha256.Sum256([]byte(caller.Org + "/" + caller.Name + "\x00" + terminal))
	return "counter:" + hex.EncodeToString(sum[:])
}

// RedeemCounter trades a counter code for tickets. The caller must be the service's own SP connector; the
// consent is spent through the state machine before any ticket is made, so a code yields tickets once,
// whichever nodes it is presented to. Unknown, expired and cancelled codes get one answer, and each counts
// against the terminal, which is locked after CounterMaxFailures.
func (s *Service) RedeemCounter(ctx context.Context, caller fedid.Parsed, req hubapi.CounterRedeemRequest, now time.Time) (*hubapi.CounterRedeemResponse, error) {
	if req.Terminal == "" || len(req.Terminal) > fsm.MaxTerminalLen || strings.ContainsFunc(req.Terminal, unicode.IsControl) {
		return nil, counterError(http.StatusBadRequest, "invalid_request", "terminal must be 1 to %d printable bytes", fsm.MaxTerminalLen)
	}
	recipient, err := s.keys.Parse(req.RecipientKEM, req.RecipientKey)
	if err != nil || req.RecipientKEM != seal.KEMHybrid {
		return nil, counterError(http.StatusBadRequest, "invalid_request", "recipient_key must be an ML-KEM-768+X25519 HPKE public key")
	}
	key := terminalKey(caller, req.Terminal)
	if locked, err := s.locked(key, now); err != nil {
		return nil, err
	} else if locked != nil {
		return nil, locked
	}
	// fail counts a wrong entry against the terminal and answers refusal, or the lockout it has just caused.
	fail := func(refusal *CounterError) (*hubapi.CounterRedeemResponse, error) {
		if err := s.cfg.Apply(&fsm.ThrottleFail{Key: key, Max: CounterMaxFailures, Window: CounterWindow, Lock: CounterLock, At: now}); err != nil {
			return nil, err
		}
		if locked, err := s.locked(key, now); err != nil {
			return nil, err
		} else if locked != nil {
			return nil, locked
		}
		return nil, refusal
	}
	invalid := counterError(http.StatusNotFound, hubapi.CounterInvalidCode, "no valid counter code like that")
	code, ok := NormalizeCounterCode(req.Code)
	if !ok {
		return fail(invalid)
	}
	cc, c, err := s.counterByCode(ctx, code)
	if err != nil {
		return nil, err
	}
	if cc == nil || c == nil {
		return fail(invalid)
	}
	svc, err := s.cfg.State.Service(c.Service)
	if err != nil || svc == nil {
		return nil, fmt.Errorf("service of consent %s: %v", c.ID, err)
	}
	// Another SP's code is not counted: it is a real code, and its own counter can still take it.
	if caller.Org != svc.SPOrg || caller.Name != svc.SPConnector {
		return nil, counterError(http.StatusForbidden, hubapi.CounterWrongClient, "the code was issued for service %s, whose connector is %s/%s", svc.ID, svc.SPOrg, svc.SPConnector)
	}
	if sp, err := s.cfg.State.Connector(caller.Org, caller.Name); err != nil {
		return nil, err
	} else if sp == nil || sp.Status != hubapi.StatusActive {
		return nil, counterError(http.StatusForbidden, hubapi.CounterWrongClient, "connector %s/%s is not active", caller.Org, caller.Name)
	}
	if svc.Status != hubapi.StatusActive {
		// Suspended or terminated since the citizen agreed: no ticket leaves the hub for it.
		return nil, counterError(http.StatusForbidden, hubapi.CounterWrongClient, "service %s is %s", svc.ID, svc.Status)
	}
	switch c.EffectiveState(now) {
	case fsm.ConsentGranted:
	case fsm.ConsentUsed:
		return nil, counterError(http.StatusConflict, hubapi.CounterUsed, "the code was redeemed already; a code is redeemed once")
	default:
		return fail(invalid)
	}
	// Opened before the use, which clears it from the state.
	subject, err := s.subjectOf(c)
	if err != nil {
		return nil, err
	}
	if svc.CounterOTP {
		if refusal, err := s.counterOTP(ctx, cc, c, subject, req.OTP, now); err != nil {
			return nil, err
		} else if refusal != nil {
			if refusal.Status == http.StatusUnauthorized {
				return fail(refusal)
			}
			return nil, refusal
		}
	}
	agent, err := s.agentOf(cc)
	if err != nil {
		return nil, err
	}
	redeemer, _ := fedid.Connector(s.cfg.TrustDomain, caller.Org, caller.Name)
	if err := s.cfg.Apply(&fsm.CounterUse{ConsentID: c.ID, Terminal: req.Terminal, Redeemer: redeemer.String(), Now: now}); err != nil {
		var fe *fsm.Error
		if !errors.As(err, &fe) {
			return nil, err
		}
		// Spent or cancelled between the look and the use.
		if k, _ := s.cfg.State.Consent(c.ID); k != nil && k.State == fsm.ConsentUsed {
			return nil, counterError(http.StatusConflict, hubapi.CounterUsed, "the code was redeemed already; a code is redeemed once")
		}
		return nil, invalid
	}
	resp, err := s.issue(c, svc, subject, caller, recipient.KEM().ID(), req.RecipientKey, now)
	if err != nil {
		return nil, err
	}
	return &hubapi.CounterRedeemResponse{RedeemResponse: *resp, Agent: agent}, nil
}

// locked is the lockout answer when the terminal key is locked at now; nil if it is not.
func (s *Service) locked(key string, now time.Time) (*CounterError, error) {
	t, err := s.cfg.State.ThrottleOf(key)
	if err != nil {
		return nil, err
	}
	if !t.LockedUntil.After(now) {
		return nil, nil
	}
	wait := t.LockedUntil.Sub(now).Round(time.Second)
	if wait < time.Second {
		wait = time.Second
	}
	e := counterError(http.StatusTooManyRequests, hubapi.CounterLocked, "too many wrong codes from this terminal; it may try again in %s, at %s",
		wait, t.LockedUntil.UTC().Format(time.RFC3339))
	e.RetryAfter = wait
	return e, nil
}

// counterByCode finds a code's counter record and consent, syncing with the leader when this node has not
// seen it yet (issued through another node a moment ago, perhaps).
func (s *Service) counterByCode(ctx context.Context, code string) (*fsm.CounterCode, *fsm.Consent, error) {
	hashes, err := s.cfg.Keys.CodeHashes(codeKind, code)
	if err != nil {
		return nil, nil, err
	}
	cc, err := s.cfg.State.CounterByCode(hashes)
	if err == nil && cc == nil && s.cfg.Sync != nil {
		if err = s.cfg.Sync(ctx); err == nil {
			cc, err = s.cfg.State.CounterByCode(hashes)
		}
	}
	if err != nil || cc == nil {
		return nil, nil, err
	}
	c, err := s.cfg.State.Consent(cc.ConsentID)
	return cc, c, err
}

// counterOTP is the one-time code step of a service that requires it: without a code (or before any was
// sent) it sends the citizen one and answers 428; with one, it checks it. A refusal with status 401 counts
// against the terminal.
func (s *Service) counterOTP(ctx context.Context, cc *fsm.CounterCode, c *fsm.Consent, subject, given string, now time.Time) (*CounterError, error) {
	if s.cfg.OTP == nil {
		return nil, errors.New("counter one-time codes: no sender wired")
	}
	purpose := "counter:" + c.ID
	if given == "" || cc.OTPChallenge == "" {
		if live, err := s.liveOTP(cc.OTPChallenge, now); err != nil {
			return nil, err
		} else if live {
			return counterError(http.StatusPreconditionRequired, hubapi.CounterOTPRequired, "a one-time code was sent to the citizen; ask them for it and send it as otp"), nil
		}
		challenge, ok, err := s.cfg.OTP.Send(ctx, subject, purpose)
		if err != nil {
			return nil, fmt.Errorf("send a counter one-time code: %w", err)
		}
		if !ok {
			return counterError(http.StatusPreconditionRequired, hubapi.CounterOTPRequired,
				"the service requires a one-time code, but the citizen has no verified e-mail address or phone to send it to; they can add one on the portal"), nil
		}
		if err := s.cfg.Apply(&fsm.CounterOTPSent{ConsentID: c.ID, Challenge: challenge}); err != nil {
			return nil, err
		}
		return counterError(http.StatusPreconditionRequired, hubapi.CounterOTPRequired, "a one-time code was sent to the citizen; ask them for it and send it as otp"), nil
	}
	err := s.cfg.OTP.Check(cc.OTPChallenge, subject, purpose, given)
	var wrong *otp.WrongCodeError
	switch {
	case err == nil:
		return nil, nil
	case errors.As(err, &wrong) && wrong.TriesLeft > 0:
		return counterError(http.StatusUnauthorized, hubapi.CounterOTPWrong, "the one-time code is wrong; %d tries remain", wrong.TriesLeft), nil
	case errors.Is(err, otp.ErrMalformed):
		return counterError(http.StatusUnauthorized, hubapi.CounterOTPWrong, "a one-time code is 6 digits"), nil
	case errors.Is(err, otp.ErrWrong), errors.Is(err, otp.ErrTooManyTries), errors.Is(err, otp.ErrExpired), errors.Is(err, otp.ErrUsed), errors.Is(err, otp.ErrUnknown):
		return counterError(http.StatusUnauthorized, hubapi.CounterOTPWrong, "this one-time code can no longer be used; send the request without otp to have a new one sent"), nil
	}
	return nil, err
}

// liveOTP says whether a challenge can still be answered, so that a second request without the code does
// not send the citizen another.
func (s *Service) liveOTP(id string, now time.Time) (bool, error) {
	if id == "" {
		return false, nil
	}
	ch, err := s.cfg.State.OTP(id)
	if err != nil || ch == nil {
		return false, err
	}
	return !ch.Used && now.Before(ch.ExpiresAt) && ch.Tries < ch.MaxTries, nil
}

// agentOf opens the agent a counter consent names; nil if it names none.
func (s *Service) agentOf(cc *fsm.CounterCode) (*hubapi.CounterAgent, error) {
	if len(cc.AgentSealed) == 0 {
		return nil, nil
	}
	raw, err := s.cfg.Keys.OpenSubject(cc.AgentSealed, agentContext+cc.ConsentID)
	if err != nil {
		return nil, fmt.Errorf("open the agent of consent %s: %w", cc.ConsentID, err)
	}
	var a hubapi.CounterAgent
	if err := json.Unmarshal([]byte(raw), &a); err != nil {
		return nil, fmt.Errorf("agent of consent %s: %w", cc.ConsentID, err)
	}
	return &a, nil
}

// CounterOf is the counter side of a consent for the citizen's history; nil if it has none.
func (s *Service) CounterOf(consentID string) (*fsm.CounterCode, error) {
	return s.cfg.State.Counter(consentID)
}
