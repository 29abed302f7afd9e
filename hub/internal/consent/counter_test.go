package consent

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/hub/internal/identity/otp"
	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/seal"
)

func TestNewCounterCode(t *testing.T) {
	seen := map[string]bool{}
	counts := map[rune]int{}
	const n = 3000
	for range n {
		c := NewCounterCode()
		if len(c) != hubapi.CounterCodeLength {
			t.Fatalf("%q: length %d", c, len(c))
		}
		for _, r := range c {
			if !strings.ContainsRune(hubapi.CounterCodeAlphabet, r) {
				t.Fatalf("%q: %q is not in the alphabet", c, r)
			}
			counts[r]++
		}
		if seen[c] {
			t.Fatalf("%q drawn twice", c)
		}
		seen[c] = true
	}
	// Every character drawn, none far from its share (n*8/30 = 800; a biased draw would be off by ~10%).
	if len(counts) != len(hubapi.CounterCodeAlphabet) {
		t.Fatalf("only %d of the alphabet's characters drawn", len(counts))
	}
	for r, k := range counts {
		if k < 650 || k > 950 {
			t.Errorf("%q drawn %d times, expected about 800", r, k)
		}
	}
}

func TestNormalizeCounterCode(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"ABCD2345", "ABCD2345", true},
		{"abcd-2345", "ABCD2345", true},
		{" ab cd 23 45 ", "ABCD2345", true},
		{"ABCD 2345\t", "ABCD2345", true},
		{"ABCD234", "", false},   // short
		{"ABCD23456", "", false}, // long
		{"ABCD0345", "", false},  // 0 is not in the alphabet
		{"ABCD1345", "", false},  // nor 1
		{"ABCDI345", "", false},  // nor I, L, O, U
		{"ABCD_345", "", false},  // nor anything else
		{"ＡBCD2345", "", false},  // a full-width letter is not a code character
		{strings.Repeat(" ", 100), "", false},
	} {
		got, ok := NormalizeCounterCode(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("NormalizeCounterCode(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	if got := FormatCounterCode("ABCD2345"); got != "ABCD 2345" {
		t.Errorf("FormatCounterCode = %q", got)
	}
}

// memOTP is an otp.Store in memory, and the OTP the consent service uses, with the sends it made.
type memOTP struct {
	mu     sync.Mutex
	chs    map[string]otp.Challenge
	svc    *otp.Service
	sent   []string // codes sent, in order
	nobody bool     // the citizen has no verified contact
}

func (m *memOTP) PutChallenge(c otp.Challenge) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.chs[c.ID] = c
	return nil
}

func (m *memOTP) Challenge(id string) (*otp.Challenge, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.chs[id]
	if !ok {
		return nil, nil
	}
	return &c, nil
}

func (m *memOTP) RecordTry(id string, success bool, at time.Time) (*otp.Challenge, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.chs[id]
	c.Tries++
	c.Used = c.Used || success
	m.chs[id] = c
	return &c, nil
}

func (m *memOTP) Send(_ context.Context, subject, purpose string) (string, bool, error) {
	if m.nobody {
		return "", false, nil
	}
	id, code, err := m.svc.Issue(subject, purpose, "sms")
	m.sent = append(m.sent, code)
	return id, err == nil, err
}

func (m *memOTP) Check(challenge, subject, purpose, code string) error {
	return m.svc.Check(challenge, subject, purpose, code)
}

// counterWorld is the consent world with two counter services (one requiring a one-time code) and another
// SP's connector. The fsm's OTP lookups (liveOTP) read fsm challenges, so the fake mirrors them there.
type counterWorld struct {
	*world
	otp *memOTP
}

var otherSP = fedid.Parsed{Kind: fedid.KindConnector, Org: "other", Name: "sp2"}

func newCounterWorld(t *testing.T) *counterWorld {
	w := newWorld(t)
	m := &memOTP{chs: map[string]otp.Challenge{}}
	var err error
	store := mirrorStore{m, w}
	if m.svc, err = otp.New(otp.Config{Store: store, Key: bytes.Repeat([]byte{7}, 32)}); err != nil {
		t.Fatal(err)
	}
	w.svc.cfg.CounterTTL = 20 * time.Minute
	w.svc.cfg.OTP = m
	now := time.Now()
	for _, cmd := range []fsm.Command{
		&fsm.OrgAdd{Code: "other", NameZh: "他行", NameEn: "Other", Type: "financial-institution", Now: now},
		&fsm.ConnectorAdd{Org: "other", Name: "sp2", Roles: []string{"sp"}, Address: "127.0.0.1:7003", Now: now},
		&fsm.ServiceAdd{Service: fsm.Service{ID: "bank.counter", NameZh: "臨櫃開戶", NameEn: "Account at the counter", SPOrg: "bank", SPConnector: "sp1",
			Modes: []string{"counter"}, Datasets: []string{"moi.household"}, Purpose: "p", Terms: "t", TermsVersion: "1"}, Now: now},
		&fsm.ServiceAdd{Service: fsm.Service{ID: "bank.otp", NameZh: "臨櫃貸款", NameEn: "Loan at the counter", SPOrg: "bank", SPConnector: "sp1",
			Modes: []string{"counter"}, Datasets: []string{"moi.household"}, Purpose: "p", Terms: "t", TermsVersion: "1", CounterOTP: true}, Now: now},
	} {
		if err := w.apply(cmd); err != nil {
			t.Fatal(err)
		}
	}
	return &counterWorld{world: w, otp: m}
}

// mirrorStore keeps challenges in memory and in the state machine, where the consent service looks.
type mirrorStore struct {
	m *memOTP
	w *world
}

func (s mirrorStore) PutChallenge(c otp.Challenge) error {
	if err := s.w.apply(&fsm.OTPPut{Challenge: fsm.OTPChallenge{ID: c.ID, SubjectHash: c.Subject, Purpose: c.Purpose, Channel: c.Channel,
		CodeHash: c.CodeHash, MaxTries: c.MaxTries, ExpiresAt: c.ExpiresAt}}); err != nil {
		return err
	}
	return s.m.PutChallenge(c)
}

func (s mirrorStore) Challenge(id string) (*otp.Challenge, error) { return s.m.Challenge(id) }

func (s mirrorStore) RecordTry(id string, success bool, at time.Time) (*otp.Challenge, error) {
	if err := s.w.apply(&fsm.OTPTry{ID: id, Success: success, At: at}); err != nil {
		return nil, err
	}
	return s.m.RecordTry(id, success, at)
}

func counterConsent(id, service, subject string) fsm.Consent {
	return fsm.Consent{ID: id, Service: service, Subject: subject, Datasets: []string{"moi.household"}, TermsVersion: "1", AAL: 2, LoginMethod: "dev"}
}

func (w *counterWorld) redeemAt(caller fedid.Parsed, code, terminal, otpCode string, now time.Time) (*hubapi.CounterRedeemResponse, error) {
	rk, _ := seal.GenerateKey(seal.KEMHybrid)
	return w.svc.RedeemCounter(context.Background(), caller, hubapi.CounterRedeemRequest{Code: code, OTP: otpCode, Terminal: terminal,
		RecipientKEM: seal.KEMHybrid, RecipientKey: rk.PublicKey().Bytes()}, now)
}

func counterErr(t *testing.T, err error) *CounterError {
	t.Helper()
	var ce *CounterError
	if !errors.As(err, &ce) {
		t.Fatalf("want a *CounterError, got %v", err)
	}
	return ce
}

func TestCounterIssueKeepsNoClearCode(t *testing.T) {
	w := newCounterWorld(t)
	agent := &hubapi.CounterAgent{NationalID: bob, Name: "王小明"}
	code, err := w.svc.IssueCounter(counterConsent("k1", "bank.counter", alice), agent, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	k, _ := w.f.Consent("k1")
	if k.Mode != hubapi.ModeCounter || k.State != fsm.ConsentGranted || k.Subject == alice || len(k.SubjectSealed) == 0 {
		t.Fatalf("consent: %+v", k)
	}
	if d := time.Until(k.CodeExpiresAt); d < 19*time.Minute || d > 20*time.Minute {
		t.Errorf("code expires in %s, want counter_ttl (20m)", d)
	}
	cc, _ := w.f.Counter("k1")
	if cc == nil || cc.CodeHash == code || strings.Contains(cc.CodeHash, code) || len(cc.AgentSealed) == 0 {
		t.Fatalf("counter record: %+v", cc)
	}
	// Nothing in the state's files holds the code, the citizen's ID or the agent's, in clear.
	files, _ := filepath.Glob(filepath.Join(w.dir, "state.db*"))
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		for _, secret := range []string{code, alice, bob, "王小明"} {
			if bytes.Contains(raw, []byte(secret)) {
				t.Errorf("%s holds %q in clear", filepath.Base(f), secret)
			}
		}
	}
	// Online redemption does not know counter codes.
	if _, err := w.redeem(code, sp); err == nil {
		t.Fatal("a counter code was redeemed as an authorization code")
	}
}

func TestCounterRedeem(t *testing.T) {
	for _, tc := range []struct {
		name   string
		caller fedid.Parsed
		before func(w *counterWorld, code string) // what happens to the code first
		code   func(code string) string           // what staff type
		at     time.Duration                      // after the issue
		status int
		errc   string
	}{
		{name: "redeemed", caller: sp, status: http.StatusOK},
		{name: "typed in lower case with a hyphen", caller: sp, code: func(c string) string { return strings.ToLower(c[:4] + "-" + c[4:]) }, status: http.StatusOK},
		{name: "another service's connector", caller: otherSP, status: http.StatusForbidden, errc: hubapi.CounterWrongClient},
		{name: "unknown", caller: sp, code: func(string) string { return "ZZZZ2222" }, status: http.StatusNotFound, errc: hubapi.CounterInvalidCode},
		{name: "not a code", caller: sp, code: func(string) string { return "hello" }, status: http.StatusNotFound, errc: hubapi.CounterInvalidCode},
		{name: "expired", caller: sp, at: 21 * time.Minute, status: http.StatusNotFound, errc: hubapi.CounterInvalidCode},
		{name: "cancelled", caller: sp, before: func(w *counterWorld, _ string) {
			if err := w.svc.Revoke("k1", alice, time.Now()); err != nil {
				w.t.Fatal(err)
			}
		}, status: http.StatusNotFound, errc: hubapi.CounterInvalidCode},
		{name: "used twice", caller: sp, before: func(w *counterWorld, code string) {
			if _, err := w.redeemAt(sp, code, "t0", "", time.Now()); err != nil {
				w.t.Fatal(err)
			}
		}, status: http.StatusConflict, errc: hubapi.CounterUsed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newCounterWorld(t)
			w.t = t
			code, err := w.svc.IssueCounter(counterConsent("k1", "bank.counter", alice), nil, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if tc.before != nil {
				tc.before(w, code)
			}
			typed := code
			if tc.code != nil {
				typed = tc.code(code)
			}
			resp, err := w.redeemAt(tc.caller, typed, "desk-1", "", time.Now().Add(tc.at))
			if tc.status == http.StatusOK {
				if err != nil {
					t.Fatal(err)
				}
				if resp.ConsentID != "k1" || resp.Subject != alice || len(resp.Tickets) != 1 || resp.Agent != nil {
					t.Fatalf("answer: %+v", resp)
				}
				k, _ := w.f.Consent("k1")
				cc, _ := w.f.Counter("k1")
				if k.State != fsm.ConsentUsed || len(k.SubjectSealed) != 0 || cc.Terminal != "desk-1" || cc.Redeemer != "spiffe://mydata.test/org/bank/connector/sp1" {
					t.Fatalf("after use: %+v %+v", k, cc)
				}
				return
			}
			ce := counterErr(t, err)
			if ce.Status != tc.status || ce.Code != tc.errc {
				t.Fatalf("got %d %s (%s), want %d %s", ce.Status, ce.Code, ce.Description, tc.status, tc.errc)
			}
		})
	}
}

func TestCounterRequestChecks(t *testing.T) {
	w := newCounterWorld(t)
	code, _ := w.svc.IssueCounter(counterConsent("k1", "bank.counter", alice), nil, time.Now())
	for _, terminal := range []string{"", strings.Repeat("x", 101), "desk\n1"} {
		_, err := w.redeemAt(sp, code, terminal, "", time.Now())
		if ce := counterErr(t, err); ce.Status != http.StatusBadRequest {
			t.Errorf("terminal %q: %d %s", terminal, ce.Status, ce.Code)
		}
	}
	_, err := w.svc.RedeemCounter(context.Background(), sp, hubapi.CounterRedeemRequest{Code: code, Terminal: "t", RecipientKEM: seal.KEMHybrid, RecipientKey: []byte("short")}, time.Now())
	if ce := counterErr(t, err); ce.Status != http.StatusBadRequest {
		t.Errorf("bad key: %d %s", ce.Status, ce.Code)
	}
}

func TestCounterLockout(t *testing.T) {
	w := newCounterWorld(t)
	start := time.Now()
	code, _ := w.svc.IssueCounter(counterConsent("k1", "bank.counter", alice), nil, start)
	for i := 1; i <= CounterMaxFailures; i++ {
		_, err := w.redeemAt(sp, "ZZZZ2222", "desk-1", "", start.Add(time.Duration(i)*time.Second))
		ce := counterErr(t, err)
		if i < CounterMaxFailures && ce.Status != http.StatusNotFound {
			t.Fatalf("wrong code %d: %d %s", i, ce.Status, ce.Code)
		}
		if i == CounterMaxFailures && (ce.Status != http.StatusTooManyRequests || ce.Code != hubapi.CounterLocked || ce.RetryAfter < 14*time.Minute) {
			t.Fatalf("wrong code %d: %d %s, retry after %s", i, ce.Status, ce.Code, ce.RetryAfter)
		}
	}
	// Locked: the right code too is refused, and says how long; another terminal, and another SP's, are not locked.
	_, err := w.redeemAt(sp, code, "desk-1", "", start.Add(time.Minute))
	if ce := counterErr(t, err); ce.Status != http.StatusTooManyRequests || ce.RetryAfter <= 0 || ce.RetryAfter > CounterLock {
		t.Fatalf("while locked: %d %s %s", ce.Status, ce.Code, ce.RetryAfter)
	}
	if _, err := w.redeemAt(otherSP, "ZZZZ2222", "desk-1", "", start.Add(time.Minute)); counterErr(t, err).Status != http.StatusNotFound {
		t.Fatalf("another SP's terminal of the same name is locked too: %v", err)
	}
	// The lock ends.
	resp, err := w.redeemAt(sp, code, "desk-1", "", start.Add(6*time.Second+CounterLock))
	if err != nil || resp.ConsentID != "k1" {
		t.Fatalf("after the lock: %v", err)
	}
}

func TestCounterOTP(t *testing.T) {
	w := newCounterWorld(t)
	now := time.Now()
	code, _ := w.svc.IssueCounter(counterConsent("k1", "bank.otp", alice), nil, now)
	// First: a code is sent, and the answer says to ask for it; again without it: none sent again.
	for i := range 2 {
		_, err := w.redeemAt(sp, code, "desk-1", "", now)
		if ce := counterErr(t, err); ce.Status != http.StatusPreconditionRequired || ce.Code != hubapi.CounterOTPRequired {
			t.Fatalf("without otp (%d): %d %s", i, ce.Status, ce.Code)
		}
		if len(w.otp.sent) != 1 {
			t.Fatalf("%d codes sent, want 1", len(w.otp.sent))
		}
	}
	wrong := "000000"
	if w.otp.sent[0] == wrong {
		wrong = "111111"
	}
	_, err := w.redeemAt(sp, code, "desk-1", wrong, now)
	if ce := counterErr(t, err); ce.Status != http.StatusUnauthorized || ce.Code != hubapi.CounterOTPWrong || !strings.Contains(ce.Description, "4 tries") {
		t.Fatalf("wrong otp: %d %s %s", ce.Status, ce.Code, ce.Description)
	}
	if k, _ := w.f.Consent("k1"); k.State != fsm.ConsentGranted {
		t.Fatalf("a wrong one-time code spent the consent: %s", k.State)
	}
	resp, err := w.redeemAt(sp, code, "desk-1", w.otp.sent[0], now)
	if err != nil || resp.Subject != alice {
		t.Fatalf("right otp: %v", err)
	}
	// A citizen with no contact to send to is told so through the answer.
	w.otp.nobody = true
	code2, _ := w.svc.IssueCounter(counterConsent("k2", "bank.otp", alice), nil, now)
	_, err = w.redeemAt(sp, code2, "desk-2", "", now)
	if ce := counterErr(t, err); ce.Status != http.StatusPreconditionRequired || !strings.Contains(ce.Description, "no verified") {
		t.Fatalf("no contact: %d %s", ce.Status, ce.Description)
	}
}

func TestCounterAgent(t *testing.T) {
	w := newCounterWorld(t)
	agent := &hubapi.CounterAgent{NationalID: bob, Name: "王小明"}
	code, _ := w.svc.IssueCounter(counterConsent("k1", "bank.counter", alice), agent, time.Now())
	resp, err := w.redeemAt(sp, code, "desk-1", "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Agent == nil || *resp.Agent != *agent || resp.Subject != alice {
		t.Fatalf("agent: %+v", resp.Agent)
	}
	if cc, _ := w.f.Counter("k1"); len(cc.AgentSealed) != 0 {
		t.Fatal("the sealed agent outlived the use")
	}
	// An agent of a code that expires unused is cleared by the upkeep's CounterForget.
	code2, _ := w.svc.IssueCounter(counterConsent("k2", "bank.counter", alice), agent, time.Now())
	_ = code2
	if err := w.apply(&fsm.CounterForget{Now: time.Now().Add(21 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if cc, _ := w.f.Counter("k2"); len(cc.AgentSealed) != 0 {
		t.Fatal("the sealed agent of an expired code is kept")
	}
}

func TestCounterIssueTwice(t *testing.T) {
	w := newCounterWorld(t)
	if _, err := w.svc.IssueCounter(counterConsent("k1", "bank.counter", alice), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	var fe *fsm.Error
	if _, err := w.svc.IssueCounter(counterConsent("k1", "bank.counter", alice), nil, time.Now()); !errors.As(err, &fe) || fe.Code != fsm.Conflict {
		t.Fatalf("the same page agreed twice: %v", err)
	}
}
