package passkey_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
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
	carol   = "C123456780"
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

func newFixture(t testing.TB, mutate func(*passkey.Config)) *fixture {
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

// mutate rewrites a credential JSON body, as a tampering client would.
func mutate(t testing.TB, body []byte, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func flipLastByte(t testing.TB, s any) string {
	b, err := base64.RawURLEncoding.DecodeString(s.(string))
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 0x01
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestLogin(t *testing.T) {
	tests := []struct {
		name   string
		cfg    func(*passkey.Config)
		auth   func(*passkeytest.Authenticator)
		begin  func(*passkey.Method) ([]byte, []byte, error)
		logins int
		// count is the sign count after the last login.
		count uint32
	}{
		{name: "discoverable", logins: 3, count: 3},
		{name: "known subject lists credentials", begin: func(m *passkey.Method) ([]byte, []byte, error) { return m.BeginLoginFor(alice) }, logins: 1, count: 1},
		{name: "known subject, authenticator omits the user handle", auth: func(a *passkeytest.Authenticator) { a.OmitUserHandle = true },
			begin: func(m *passkey.Method) ([]byte, []byte, error) { return m.BeginLoginFor(alice) }, logins: 2, count: 2},
		{name: "synced passkey with a zero counter", auth: func(a *passkeytest.Authenticator) { a.ZeroCounter, a.BackupEligible, a.BackupState = true, true, true }, logins: 3, count: 0},
		{name: "verification preferred accepts presence only", cfg: func(c *passkey.Config) { c.UserVerification = "preferred" },
			auth: func(a *passkeytest.Authenticator) { a.NoUserVerification = true }, logins: 1, count: 1},
		{name: "origin under the RP id", cfg: func(c *passkey.Config) { c.RPID = "mydata.example" }, logins: 1, count: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.cfg)
			a := passkeytest.NewAuthenticator(origin)
			if tt.auth != nil {
				tt.auth(a)
			}
			f.register(t, alice, a)
			f.register(t, bob, passkeytest.NewAuthenticator(origin)) // someone else's, never offered
			begin := tt.begin
			if begin == nil {
				begin = func(m *passkey.Method) ([]byte, []byte, error) { return m.BeginLogin() }
			}
			var cred passkey.Credential
			for i := 0; i < tt.logins; i++ {
				f.clock.Advance(time.Minute)
				opts, sess, err := begin(f.m)
				if err != nil {
					t.Fatalf("begin: %v", err)
				}
				body, err := a.Get(opts)
				if err != nil {
					t.Fatalf("authenticator: %v", err)
				}
				var subject string
				subject, cred, err = f.m.FinishLogin(sess, body)
				if err != nil {
					t.Fatalf("login %d: %v", i+1, err)
				}
				if subject != alice || cred.Subject != alice {
					t.Fatalf("login %d: subject %q", i+1, subject)
				}
			}
			if cred.SignCount != tt.count || !cred.LastUsedAt.Equal(f.clock.Now()) {
				t.Errorf("credential after login: count %d, last used %v", cred.SignCount, cred.LastUsedAt)
			}
			stored, _ := f.store.CredentialByID(cred.ID)
			if stored.SignCount != tt.count || !stored.LastUsedAt.Equal(f.clock.Now()) {
				t.Errorf("stored after login: count %d, last used %v", stored.SignCount, stored.LastUsedAt)
			}
		})
	}
}

func TestLoginRefused(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(*passkey.Config)
		// before runs after registration and before the login begins.
		before func(*fixture, *passkeytest.Authenticator)
		begin  func(*passkey.Method) ([]byte, []byte, error)
		// tamper changes the session blob or body on their way back.
		tamper func(f *fixture, sess, body []byte) ([]byte, []byte)
		want   error
	}{
		{name: "wrong origin", before: func(_ *fixture, a *passkeytest.Authenticator) {
			a.Origin = "https://portal.mydata.example.evil.example"
		}, want: passkey.ErrVerification},
		{name: "http origin", before: func(_ *fixture, a *passkeytest.Authenticator) { a.Origin = "http://portal.mydata.example" }, want: passkey.ErrVerification},
		{name: "wrong RP ID", before: func(_ *fixture, a *passkeytest.Authenticator) { a.RPID = "evil.example" }, want: passkey.ErrVerification},
		{name: "expired session", tamper: func(f *fixture, s, b []byte) ([]byte, []byte) {
			f.clock.Advance(5*time.Minute + 31*time.Second)
			return s, b
		}, want: passkey.ErrExpired},
		{name: "tampered signature", tamper: func(f *fixture, s, b []byte) ([]byte, []byte) {
			return s, mutate(t, b, func(m map[string]any) {
				r := m["response"].(map[string]any)
				r["signature"] = flipLastByte(t, r["signature"])
			})
		}, want: passkey.ErrVerification},
		{name: "tampered authenticator data", tamper: func(f *fixture, s, b []byte) ([]byte, []byte) {
			return s, mutate(t, b, func(m map[string]any) {
				r := m["response"].(map[string]any)
				r["authenticatorData"] = flipLastByte(t, r["authenticatorData"]) // the counter
			})
		}, want: passkey.ErrVerification},
		{name: "another ceremony's challenge", tamper: func(f *fixture, s, b []byte) ([]byte, []byte) {
			_, other, err := f.m.BeginLogin()
			if err != nil {
				t.Fatal(err)
			}
			return other, b
		}, want: passkey.ErrVerification},
		{name: "unknown credential", before: func(f *fixture, a *passkeytest.Authenticator) {
			cs, _ := f.store.Credentials(alice)
			_ = f.store.RemoveCredential(alice, cs[0].ID)
		}, want: passkey.ErrUnknownCredential},
		{name: "counter goes backwards", before: func(f *fixture, a *passkeytest.Authenticator) {
			for range 3 {
				if _, _, err := f.login(t, a); err != nil {
					t.Fatal(err)
				}
			}
			a.SetCounter(0) // the clone signs with 1 after the original reached 3
		}, want: passkey.ErrCloned},
		{name: "counter does not advance", before: func(f *fixture, a *passkeytest.Authenticator) {
			if _, _, err := f.login(t, a); err != nil {
				t.Fatal(err)
			}
			a.SetCounter(0) // signs with 1 again
		}, want: passkey.ErrCloned},
		{name: "counter drops to zero", before: func(f *fixture, a *passkeytest.Authenticator) {
			if _, _, err := f.login(t, a); err != nil {
				t.Fatal(err)
			}
			a.ZeroCounter = true
			a.SetCounter(0)
		}, want: passkey.ErrCloned},
		{name: "user verification missing", before: func(_ *fixture, a *passkeytest.Authenticator) { a.NoUserVerification = true }, want: passkey.ErrVerification},
		{name: "another citizen expected, client ignores allowCredentials", begin: func(m *passkey.Method) ([]byte, []byte, error) {
			opts, sess, err := m.BeginLoginFor(bob)
			return mutate(t, opts, func(m map[string]any) { delete(m["publicKey"].(map[string]any), "allowCredentials") }), sess, err
		}, want: passkey.ErrVerification},
		{name: "expected citizen has no passkey", begin: func(m *passkey.Method) ([]byte, []byte, error) { return m.BeginLoginFor(carol) }, want: passkey.ErrVerification},
		{name: "no user handle in a discoverable login", before: func(_ *fixture, a *passkeytest.Authenticator) { a.OmitUserHandle = true }, want: passkey.ErrVerification},
		{name: "user handle of another citizen", tamper: func(f *fixture, s, b []byte) ([]byte, []byte) {
			return s, mutate(t, b, func(m map[string]any) {
				m["response"].(map[string]any)["userHandle"] = base64.RawURLEncoding.EncodeToString(userHandle(bob))
			})
		}, want: passkey.ErrVerification},
		{name: "backup eligibility changed", before: func(_ *fixture, a *passkeytest.Authenticator) { a.BackupEligible = true }, want: passkey.ErrVerification},
		{name: "registration session", tamper: func(f *fixture, s, b []byte) ([]byte, []byte) {
			_, reg, err := f.m.BeginRegistration(alice, "王小明")
			if err != nil {
				t.Fatal(err)
			}
			return reg, b
		}, want: passkey.ErrSession},
		{name: "garbage session", tamper: func(f *fixture, s, b []byte) ([]byte, []byte) { return []byte("cookie"), b }, want: passkey.ErrSession},
		{name: "truncated session", tamper: func(f *fixture, s, b []byte) ([]byte, []byte) { return s[:len(s)-1], b }, want: passkey.ErrSession},
		{name: "not JSON", tamper: func(f *fixture, s, b []byte) ([]byte, []byte) { return s, b[:len(b)/2] }, want: passkey.ErrVerification},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.cfg)
			a := passkeytest.NewAuthenticator(origin)
			f.register(t, alice, a)
			f.register(t, bob, passkeytest.NewAuthenticator(origin))
			if tt.before != nil {
				tt.before(f, a)
			}
			begin := tt.begin
			if begin == nil {
				begin = func(m *passkey.Method) ([]byte, []byte, error) { return m.BeginLogin() }
			}
			opts, sess, err := begin(f.m)
			if err != nil {
				t.Fatal(err)
			}
			body, err := a.Get(opts)
			if err != nil {
				t.Fatal(err)
			}
			if tt.tamper != nil {
				sess, body = tt.tamper(f, sess, body)
			}
			subject, _, err := f.m.FinishLogin(sess, body)
			t.Logf("refused: %v", err)
			if !errors.Is(err, tt.want) {
				t.Fatalf("FinishLogin = %q, %v; want %v", subject, err, tt.want)
			}
			if subject != "" {
				t.Errorf("a refused login returned subject %q", subject)
			}
			for _, other := range []error{passkey.ErrExpired, passkey.ErrSession, passkey.ErrUnknownCredential, passkey.ErrVerification, passkey.ErrCloned} {
				if other != tt.want && errors.Is(err, other) {
					t.Errorf("error %v also matches %v", err, other)
				}
			}
		})
	}
}

func TestRegistrationRefused(t *testing.T) {
	tests := []struct {
		name   string
		auth   func(*passkeytest.Authenticator)
		tamper func(f *fixture, sess, body []byte) ([]byte, []byte)
		// subject finishes the registration; alice began it.
		subject string
		want    error
	}{
		{name: "wrong origin", auth: func(a *passkeytest.Authenticator) { a.Origin = "https://evil.example" }, want: passkey.ErrVerification},
		{name: "wrong RP ID", auth: func(a *passkeytest.Authenticator) { a.RPID = "evil.example" }, want: passkey.ErrVerification},
		{name: "user verification missing", auth: func(a *passkeytest.Authenticator) { a.NoUserVerification = true }, want: passkey.ErrVerification},
		{name: "backup state without eligibility", auth: func(a *passkeytest.Authenticator) { a.BackupState = true }, want: passkey.ErrVerification},
		{name: "expired session", tamper: func(f *fixture, s, b []byte) ([]byte, []byte) {
			f.clock.Advance(6 * time.Minute)
			return s, b
		}, want: passkey.ErrExpired},
		{name: "finished as another citizen", subject: bob, want: passkey.ErrSession},
		{name: "login session", tamper: func(f *fixture, s, b []byte) ([]byte, []byte) {
			_, login, _ := f.m.BeginLogin()
			return login, b
		}, want: passkey.ErrSession},
		{name: "attestation object not CBOR", tamper: func(f *fixture, s, b []byte) ([]byte, []byte) {
			return s, mutate(t, b, func(m map[string]any) {
				m["response"].(map[string]any)["attestationObject"] = base64.RawURLEncoding.EncodeToString([]byte("garbage"))
			})
		}, want: passkey.ErrVerification},
		{name: "tampered client data", tamper: func(f *fixture, s, b []byte) ([]byte, []byte) {
			return s, mutate(t, b, func(m map[string]any) {
				r := m["response"].(map[string]any)
				r["clientDataJSON"] = base64.RawURLEncoding.EncodeToString([]byte(`{"type":"webauthn.get","challenge":"AAAAAAAAAAAAAAAAAAAAAA","origin":"` + origin + `"}`))
			})
		}, want: passkey.ErrVerification},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			a := passkeytest.NewAuthenticator(origin)
			if tt.auth != nil {
				tt.auth(a)
			}
			opts, sess, err := f.m.BeginRegistration(alice, "王小明")
			if err != nil {
				t.Fatal(err)
			}
			body, err := a.Create(opts)
			if err != nil {
				t.Fatal(err)
			}
			if tt.tamper != nil {
				sess, body = tt.tamper(f, sess, body)
			}
			subject := tt.subject
			if subject == "" {
				subject = alice
			}
			_, err = f.m.FinishRegistration(subject, sess, body, "x")
			t.Logf("refused: %v", err)
			if !errors.Is(err, tt.want) {
				t.Fatalf("FinishRegistration = %v, want %v", err, tt.want)
			}
			if cs, _ := f.store.Credentials(alice); len(cs) != 0 {
				t.Errorf("a refused registration stored %d credentials", len(cs))
			}
		})
	}
}

func TestRegistrationOnce(t *testing.T) {
	f := newFixture(t, nil)
	a := passkeytest.NewAuthenticator(origin)
	opts, sess, err := f.m.BeginRegistration(alice, "王小明")
	if err != nil {
		t.Fatal(err)
	}
	body, err := a.Create(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.FinishRegistration(alice, sess, body, "phone"); err != nil {
		t.Fatal(err)
	}
	// The same answer posted twice.
	if _, err := f.m.FinishRegistration(alice, sess, body, "phone"); !errors.Is(err, passkey.ErrDuplicate) {
		t.Errorf("second finish = %v, want ErrDuplicate", err)
	}
	// The same authenticator again: the options exclude it, so the browser refuses.
	opts, _, err = f.m.BeginRegistration(alice, "王小明")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Create(opts); !errors.Is(err, passkeytest.ErrNotAllowed) {
		t.Errorf("registering the same authenticator again = %v, want it excluded", err)
	}
	// A second authenticator is fine, and either logs in.
	b := passkeytest.NewAuthenticator(origin)
	f.register(t, alice, b)
	for _, x := range []*passkeytest.Authenticator{a, b} {
		if s, _, err := f.login(t, x); err != nil || s != alice {
			t.Errorf("login = %q, %v", s, err)
		}
	}
}

func TestOptionsCarryNoNationalID(t *testing.T) {
	f := newFixture(t, nil)
	f.register(t, alice, passkeytest.NewAuthenticator(origin))
	for name, begin := range map[string]func() ([]byte, []byte, error){
		"registration": func() ([]byte, []byte, error) { return f.m.BeginRegistration(alice, "王小明") },
		"login":        f.m.BeginLogin,
		"login for":    func() ([]byte, []byte, error) { return f.m.BeginLoginFor(alice) },
	} {
		opts, sess, err := begin()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for what, b := range map[string][]byte{"options": opts, "session": sess} {
			if strings.Contains(string(b), alice) {
				t.Errorf("%s %s contain the national ID: %s", name, what, b)
			}
		}
		if len(sess) > 100 {
			t.Errorf("%s session is %d bytes", name, len(sess))
		}
	}
	opts, _, _ := f.m.BeginRegistration(alice, "王小明")
	var o struct {
		PublicKey struct {
			User struct {
				ID   string `json:"id"`
				Name string `json:"name"`
			} `json:"user"`
			AuthenticatorSelection struct {
				ResidentKey      string `json:"residentKey"`
				UserVerification string `json:"userVerification"`
			} `json:"authenticatorSelection"`
			Attestation string `json:"attestation"`
			Exclude     []any  `json:"excludeCredentials"`
		} `json:"publicKey"`
	}
	if err := json.Unmarshal(opts, &o); err != nil {
		t.Fatal(err)
	}
	pk := o.PublicKey
	if id, _ := base64.RawURLEncoding.DecodeString(pk.User.ID); string(id) != string(userHandle(alice)) {
		t.Errorf("user.id = %q, want the keyed handle", pk.User.ID)
	}
	if pk.User.Name != "王小明" || pk.AuthenticatorSelection.ResidentKey != "required" ||
		pk.AuthenticatorSelection.UserVerification != "required" || pk.Attestation != "none" || len(pk.Exclude) != 1 {
		t.Errorf("creation options = %+v", pk)
	}
	if _, _, err := f.m.BeginRegistration(alice, "a123456789"); err == nil {
		t.Error("a display name holding the national ID was accepted")
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(*passkey.Config)
		key  string
	}{
		{"no RP id", func(c *passkey.Config) { c.RPID = "" }, "rp_id"},
		{"RP id with a port", func(c *passkey.Config) { c.RPID = "portal.mydata.example:443" }, "rp_id"},
		{"RP id an address", func(c *passkey.Config) { c.RPID = "192.0.2.1" }, "rp_id"},
		{"no origins", func(c *passkey.Config) { c.Origins = nil }, "origins"},
		{"origin elsewhere", func(c *passkey.Config) { c.Origins = []string{"https://evil.example"} }, "origins[0]"},
		{"origin lookalike", func(c *passkey.Config) { c.Origins = []string{"https://xportal.mydata.example"} }, "origins[0]"},
		{"plain http", func(c *passkey.Config) { c.Origins = []string{"http://portal.mydata.example"} }, "origins[0]"},
		{"origin with a path", func(c *passkey.Config) { c.Origins = []string{"https://portal.mydata.example/login"} }, "origins[0]"},
		{"user verification", func(c *passkey.Config) { c.UserVerification = "always" }, "user_verification"},
		{"timeout too short", func(c *passkey.Config) { c.Timeout = time.Second }, "timeout"},
		{"timeout too long", func(c *passkey.Config) { c.Timeout = time.Hour }, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := passkey.Config{RPID: rpID, Origins: []string{origin}}
			tt.cfg(&cfg)
			_, err := passkey.New(cfg, &passkeytest.Store{}, userHandle)
			if err == nil || !strings.HasPrefix(err.Error(), tt.key+":") {
				t.Fatalf("New = %v, want an error about %s", err, tt.key)
			}
		})
	}
	// The embedded demo runs on localhost over plain http, and a trailing slash is forgiven.
	if _, err := passkey.New(passkey.Config{RPID: "localhost", Origins: []string{"http://localhost:8443/"}}, &passkeytest.Store{}, userHandle); err != nil {
		t.Errorf("localhost: %v", err)
	}
	if _, err := passkey.New(passkey.Config{RPID: rpID, Origins: []string{origin}}, &passkeytest.Store{}, func(string) []byte { return []byte("short") }); err != nil {
		t.Fatal(err)
	}
}

func TestUserHandleLength(t *testing.T) {
	m, err := passkey.New(passkey.Config{RPID: rpID, Origins: []string{origin}}, &passkeytest.Store{}, func(string) []byte { return []byte("short") })
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.BeginRegistration(alice, "王小明"); err == nil {
		t.Error("a short user handle was accepted")
	}
}

func TestEvidence(t *testing.T) {
	c := passkey.Credential{ID: []byte{1, 2, 3}, AAGUID: make([]byte, 16)}
	got := passkey.Evidence(c)
	if got != "passkey aaguid=00000000-0000-0000-0000-000000000000 credential=039058c6f2c0cb49" {
		t.Errorf("Evidence = %q", got)
	}
}
