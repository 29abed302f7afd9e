package passkey_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"sync"
	"testing"
	"time"

	"github.com/mydatafed/mydata/hub/internal/identity/passkey"
	"github.com/mydatafed/mydata/hub/internal/identity/passkey/passkeytest"
)

const (
	origin  = "https://portal.mydata.example"
	rpID    = "portal.mydata.example"
	alice   = "A123456789"
	bob     = "B223456780"
	handKey = "portal's user-handle key"
)

// clock is a fake clock the tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

func userHandle(subject string) []byte {
	m := hmac.New(sha256.New, []byte(handKey))
	m.Write([]byte(subject))
	return m.Sum(nil)
}

type fixture struct {
	m     *passkey.Method
	store *passkeytest.Store
	clock *clock
}

func newFixture(t *testing.T, mutate func(*passkey.Config)) *fixture {
	t.Helper()
	cfg := passkey.DefaultConfig()
	cfg.RPID = rpID
	cfg.Origins = []string{origin}
	if mutate != nil {
		mutate(&cfg)
	}
	f := &fixture{store: &passkeytest.Store{}, clock: &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}}
	m, err := passkey.New(cfg, f.store, userHandle, passkey.WithClock(f.clock.Now))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	f.m = m
	return f
}

// register runs a whole registration for subject with a.
func (f *fixture) register(t *testing.T, subject string, a *passkeytest.Authenticator) passkey.Credential {
	t.Helper()
	opts, sess, err := f.m.BeginRegistration(subject, "王小明")
	if err != nil {
		t.Fatalf("BeginRegistration: %v", err)
	}
	body, err := a.Create(opts)
	if err != nil {
		t.Fatalf("authenticator create: %v", err)
	}
	c, err := f.m.FinishRegistration(subject, sess, body, "my phone")
	if err != nil {
		t.Fatalf("FinishRegistration: %v", err)
	}
	return c
}

func (f *fixture) login(t *testing.T, a *passkeytest.Authenticator) (string, passkey.Credential, error) {
	t.Helper()
	opts, sess, err := f.m.BeginLogin()
	if err != nil {
		t.Fatalf("BeginLogin: %v", err)
	}
	body, err := a.Get(opts)
	if err != nil {
		t.Fatalf("authenticator get: %v", err)
	}
	return f.m.FinishLogin(sess, body)
}

func TestRegisterThenLogin(t *testing.T) {
	f := newFixture(t, nil)
	a := passkeytest.NewAuthenticator(origin)
	c := f.register(t, alice, a)
	if c.Subject != alice || c.Name != "my phone" || len(c.UserHandle) != passkey.HandleSize {
		t.Fatalf("credential = %+v", c)
	}
	subject, got, err := f.login(t, a)
	if err != nil {
		t.Fatalf("FinishLogin: %v", err)
	}
	if subject != alice || got.SignCount != 1 {
		t.Fatalf("login = %q, count %d", subject, got.SignCount)
	}
}
