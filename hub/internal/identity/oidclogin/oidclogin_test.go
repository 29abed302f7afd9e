package oidclogin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/federationtest/oidctest"
)

const testMethod = "tw-wallet"

func testConfig(o *oidctest.OP) Config {
	return Config{
		ID:           testMethod,
		Issuer:       o.Issuer,
		ClientID:     testClientID,
		ClientSecret: testClientSecret,
		RedirectURL:  testRedirectURL,
		SubjectClaim: "national_id",
		ACRLevels:    map[string]int{"urn:mydata:loa:low": 1, "urn:mydata:loa:high": 3},
		AMRLevels:    map[string]int{"pwd": 1, "otp": 2, "hwk": 3},
		RequestedACR: []string{"urn:mydata:loa:high"},
	}
}

func newRP(t *testing.T, cfg Config) *RP {
	t.Helper()
	rp, err := New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return rp
}

// login runs Start and the browser's trip through the OP; it returns what the portal would hold at the
// callback.
func login(t *testing.T, o *oidctest.OP, rp *RP) (State, url.Values) {
	t.Helper()
	authURL, st, err := rp.Start(context.Background())
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return st, o.Browse(t, authURL, testRedirectURL)
}

func TestLogin(t *testing.T) {
	o := startOP(t, nil)
	tests := []struct {
		name     string
		cfg      func(*Config)
		op       func(*oidctest.Settings)
		subject  string
		level    int
		evidence string // after the issuer
		err      error
	}{
		{name: "acr and amr, national id claim",
			subject: testNationalID, level: 3, evidence: " acr=urn:mydata:loa:high amr=pwd,hwk"},
		{name: "sub as the subject claim", cfg: func(c *Config) { c.SubjectClaim = "" },
			subject: testUserID, level: 3, evidence: " acr=urn:mydata:loa:high amr=pwd,hwk"},
		{name: "an amr above the acr wins",
			op:      func(s *oidctest.Settings) { s.ACR, s.AMR = "urn:mydata:loa:low", []string{"pwd", "otp"} },
			subject: testNationalID, level: 2, evidence: " acr=urn:mydata:loa:low amr=pwd,otp"},
		{name: "an acr above every amr wins",
			op:      func(s *oidctest.Settings) { s.ACR, s.AMR = "urn:mydata:loa:high", []string{"pwd"} },
			subject: testNationalID, level: 3, evidence: " acr=urn:mydata:loa:high amr=pwd"},
		{name: "acr alone", op: func(s *oidctest.Settings) { s.AMR = nil },
			subject: testNationalID, level: 3, evidence: " acr=urn:mydata:loa:high amr=-"},
		{name: "amr alone, unknown values ignored", op: func(s *oidctest.Settings) { s.ACR, s.AMR = "", []string{"sms", "otp"} },
			subject: testNationalID, level: 2, evidence: " acr=- amr=sms,otp"},
		{name: "nothing maps, default level", cfg: func(c *Config) { c.DefaultLevel = 1 },
			op:      func(s *oidctest.Settings) { s.ACR, s.AMR = "urn:other:loa", []string{"sms"} },
			subject: testNationalID, level: 1, evidence: " acr=urn:other:loa amr=sms"},
		{name: "nothing maps, no default level",
			op:  func(s *oidctest.Settings) { s.ACR, s.AMR = "urn:other:loa", []string{"sms"} },
			err: ErrLevel},
		{name: "several audiences, issued to us (azp)",
			op:      func(s *oidctest.Settings) { s.Audience = []string{testClientID, "another-rp"} },
			subject: testNationalID, level: 3, evidence: " acr=urn:mydata:loa:high amr=pwd,hwk"},
		{name: "subject claim absent", cfg: func(c *Config) { c.SubjectClaim = "tax_id" },
			err: ErrNoSubject},
		{name: "subject claim not a string", op: func(s *oidctest.Settings) { s.Claims = map[string]any{"national_id": 123456789} },
			err: ErrNoSubject},
		{name: "subject claim empty", op: func(s *oidctest.Settings) { s.Claims = map[string]any{"national_id": ""} },
			err: ErrNoSubject},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o.Configure(func(s *oidctest.Settings) {
				defaults(s)
				if tt.op != nil {
					tt.op(s)
				}
			})
			cfg := testConfig(o)
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			rp := newRP(t, cfg)
			st, q := login(t, o, rp)
			subject, level, evidence, err := rp.Finish(context.Background(), st, q)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("Finish: err %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Finish: %v", err)
			}
			if subject != tt.subject || level != tt.level || evidence != o.Issuer+tt.evidence {
				t.Errorf("Finish = %q, %d, %q; want %q, %d, %q", subject, level, evidence, tt.subject, tt.level, o.Issuer+tt.evidence)
			}
		})
	}
}

func TestStartURL(t *testing.T) {
	o := startOP(t, nil)
	rp := newRP(t, testConfig(o))
	before := time.Now().Truncate(time.Second)
	authURL, st, err := rp.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(authURL)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(authURL, o.Issuer+"/authorize?") {
		t.Errorf("auth URL %s is not the OP's authorization endpoint", authURL)
	}
	sum := sha256.Sum256([]byte(st.Verifier))
	want := map[string]string{
		"response_type":         "code",
		"client_id":             testClientID,
		"redirect_uri":          testRedirectURL,
		"scope":                 "openid",
		"state":                 st.State,
		"nonce":                 st.Nonce,
		"code_challenge":        base64.RawURLEncoding.EncodeToString(sum[:]),
		"code_challenge_method": "S256",
		"acr_values":            "urn:mydata:loa:high",
	}
	for k, v := range want {
		if got := u.Query().Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if st.Method != testMethod || len(st.Verifier) != 43 || st.IssuedAt.Before(before) || st.IssuedAt.After(time.Now()) {
		t.Errorf("state %+v", st)
	}
	_, st2, err := rp.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st2.State == st.State || st2.Nonce == st.Nonce || st2.Verifier == st.Verifier {
		t.Error("two logins share a random value")
	}
}

func TestFinishRefuses(t *testing.T) {
	o := startOP(t, nil)
	ctx := context.Background()
	tests := []struct {
		name string
		op   func(*oidctest.Settings)
		// finish runs one attack or failure and returns Finish's error.
		finish func(t *testing.T, rp *RP) error
		err    error
		detail string // in the error's text
	}{
		{name: "callback state differs", err: ErrState,
			finish: func(t *testing.T, rp *RP) error {
				st, q := login(t, o, rp)
				q.Set("state", "c29tZW9uZSBlbHNlJ3Mgc3RhdGU")
				return finishErr(rp.Finish(ctx, st, q))
			}},
		{name: "callback without state", err: ErrState,
			finish: func(t *testing.T, rp *RP) error {
				st, q := login(t, o, rp)
				q.Del("state")
				return finishErr(rp.Finish(ctx, st, q))
			}},
		{name: "no state cookie", err: ErrState,
			finish: func(t *testing.T, rp *RP) error {
				_, q := login(t, o, rp)
				return finishErr(rp.Finish(ctx, State{}, q))
			}},
		{name: "state made for another method", err: ErrState, detail: "other-idp",
			finish: func(t *testing.T, rp *RP) error {
				st, q := login(t, o, rp)
				st.Method = "other-idp"
				return finishErr(rp.Finish(ctx, st, q))
			}},
		{name: "state expired", err: ErrState,
			finish: func(t *testing.T, rp *RP) error {
				st, q := login(t, o, rp)
				st.IssuedAt = st.IssuedAt.Add(-StateLifetime - time.Second)
				return finishErr(rp.Finish(ctx, st, q))
			}},
		{name: "response names another issuer (RFC 9207)", err: ErrState,
			finish: func(t *testing.T, rp *RP) error {
				st, q := login(t, o, rp)
				q.Set("iss", "https://idp.evil.example")
				return finishErr(rp.Finish(ctx, st, q))
			}},
		{name: "citizen cancels at the OP", op: func(s *oidctest.Settings) { s.Deny = true }, err: ErrIdP,
			finish: func(t *testing.T, rp *RP) error {
				st, q := login(t, o, rp)
				err := finishErr(rp.Finish(ctx, st, q))
				var ie *IdPError
				if !errors.As(err, &ie) || ie.Code != "access_denied" || ie.Description != "the citizen cancelled" {
					t.Errorf("err %#v, want an *IdPError access_denied with the OP's description", err)
				}
				return err
			}},
		{name: "callback without code", err: ErrToken,
			finish: func(t *testing.T, rp *RP) error {
				st, q := login(t, o, rp)
				q.Del("code")
				return finishErr(rp.Finish(ctx, st, q))
			}},
		{name: "code replayed", err: ErrToken, detail: "redeem code",
			finish: func(t *testing.T, rp *RP) error {
				st, q := login(t, o, rp)
				if _, _, _, err := rp.Finish(ctx, st, q); err != nil {
					t.Fatalf("first Finish: %v", err)
				}
				return finishErr(rp.Finish(ctx, st, q))
			}},
		{name: "code of another login injected (PKCE)", err: ErrToken, detail: "redeem code",
			finish: func(t *testing.T, rp *RP) error {
				victim, vq := login(t, o, rp)
				_, aq := login(t, o, rp) // the attacker's own login
				vq.Set("code", aq.Get("code"))
				return finishErr(rp.Finish(ctx, victim, vq))
			}},
		{name: "nonce swapped in the authorization request", err: ErrToken, detail: "nonce",
			finish: func(t *testing.T, rp *RP) error {
				authURL, st, err := rp.Start(ctx)
				if err != nil {
					t.Fatal(err)
				}
				u, _ := url.Parse(authURL)
				q := u.Query()
				q.Set("nonce", "YW5vdGhlciBub25jZQ")
				u.RawQuery = q.Encode()
				return finishErr(rp.Finish(ctx, st, o.Browse(t, u.String(), testRedirectURL)))
			}},
		{name: "id token issued to another client", err: ErrToken, detail: "audience",
			finish: func(t *testing.T, rp *RP) error {
				st, q := login(t, o, rp)
				// Same OP, same signing key, same nonce even: only the audience is not the hub.
				other := o.IDTokenFor(t, otherClient, st.Nonce)
				o.Configure(func(s *oidctest.Settings) { s.RewriteIDToken = func(string) string { return other } })
				return finishErr(rp.Finish(ctx, st, q))
			}},
		{name: "id token signature broken", err: ErrToken, detail: "signature",
			finish: func(t *testing.T, rp *RP) error {
				st, q := login(t, o, rp)
				o.Configure(func(s *oidctest.Settings) {
					s.RewriteIDToken = func(idt string) string {
						// Re-encode the claims with another subject under the OP's signature.
						parts := strings.Split(idt, ".")
						claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
						claims = bytes.Replace(claims, []byte(testNationalID), []byte("B987654321"), 1)
						parts[1] = base64.RawURLEncoding.EncodeToString(claims)
						return strings.Join(parts, ".")
					}
				})
				return finishErr(rp.Finish(ctx, st, q))
			}},
		{name: "id token expired", err: ErrToken, detail: "expired",
			finish: func(t *testing.T, _ *RP) error {
				rp := newRP(t, testConfig(o))
				clock := &fakeClock{now: time.Now()}
				rp.now = clock.Now
				st, q := login(t, o, rp)
				// The OP's ID tokens live an hour; the state is forged fresh so that only the
				// token's expiry is wrong.
				clock.Advance(2 * time.Hour)
				st.IssuedAt = clock.Now()
				return finishErr(rp.Finish(ctx, st, q))
			}},
		{name: "wrong client secret", err: ErrToken, detail: "redeem code",
			finish: func(t *testing.T, _ *RP) error {
				cfg := testConfig(o)
				cfg.ClientSecret = "not-the-secret"
				rp := newRP(t, cfg)
				st, q := login(t, o, rp)
				return finishErr(rp.Finish(ctx, st, q))
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o.Configure(func(s *oidctest.Settings) {
				defaults(s)
				if tt.op != nil {
					tt.op(s)
				}
			})
			err := tt.finish(t, newRP(t, testConfig(o)))
			if !errors.Is(err, tt.err) {
				t.Fatalf("err %v, want %v", err, tt.err)
			}
			if !strings.Contains(err.Error(), tt.detail) {
				t.Errorf("err %q does not say %q", err, tt.detail)
			}
			for _, other := range []error{ErrState, ErrIdP, ErrToken, ErrNoSubject, ErrLevel, ErrUnavailable} {
				if other != tt.err && errors.Is(err, other) {
					t.Errorf("err %v is also %v", err, other)
				}
			}
		})
	}
}

func finishErr(_ string, _ int, _ string, err error) error { return err }

// fakeClock moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestIdPDownAtStartUpLater(t *testing.T) {
	// Reserve a port for the OP, then leave it closed: connections are refused, as with a stopped IdP.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	cfg := testConfig(&oidctest.OP{Issuer: "http://" + addr})
	rp, err := New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatalf("New with the IdP down: %v", err)
	}
	clock := &fakeClock{now: time.Now()}
	rp.now = clock.Now

	if _, _, err := rp.Start(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Start with the IdP down: err %v, want ErrUnavailable", err)
	}

	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the reserved port %s was taken meanwhile: %v", addr, err)
	}
	o := startOP(t, ln)

	// The failure is remembered for a while, so that a dead IdP is not asked on every click.
	if _, _, err := rp.Start(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Start right after the failure: err %v, want the remembered ErrUnavailable", err)
	}
	clock.Advance(discoveryRetry)
	st, q := login(t, o, rp)
	subject, level, _, err := rp.Finish(context.Background(), st, q)
	if err != nil || subject != testNationalID || level != 3 {
		t.Fatalf("Finish once the IdP is up: %q, %d, %v", subject, level, err)
	}

	// Once discovered, the OP's endpoints are kept: a discovery document that goes away later does
	// not stop logins.
	o.Configure(func(s *oidctest.Settings) { s.FailPath = "/.well-known/" })
	if _, _, err := rp.Start(context.Background()); err != nil {
		t.Errorf("Start after discovery, document now failing: %v", err)
	}
}

func TestIdPUnavailable(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		// fail makes the OP fail after the browser's trip and before Finish.
		fail func(o *oidctest.OP)
	}{
		{name: "OP stopped", fail: func(o *oidctest.OP) { o.Close() }},
		{name: "token endpoint 503", fail: func(o *oidctest.OP) {
			o.Configure(func(s *oidctest.Settings) { s.FailPath = "/oauth/token" })
		}},
		{name: "keys endpoint 503", fail: func(o *oidctest.OP) {
			o.Configure(func(s *oidctest.Settings) { s.FailPath = "/keys" })
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := startOP(t, nil)
			rp := newRP(t, testConfig(o))
			st, q := login(t, o, rp)
			tt.fail(o)
			_, _, _, err := rp.Finish(ctx, st, q)
			if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrToken) {
				t.Fatalf("Finish: err %v, want ErrUnavailable only", err)
			}
		})
	}

	t.Run("discovery 503", func(t *testing.T) {
		o := startOP(t, nil)
		o.Configure(func(s *oidctest.Settings) { s.FailPath = "/.well-known/" })
		rp := newRP(t, testConfig(o))
		if _, _, err := rp.Start(ctx); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Start: err %v, want ErrUnavailable", err)
		}
	})

	t.Run("slow OP times out", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close() // accepts into the backlog, never answers
		cfg := testConfig(&oidctest.OP{Issuer: "http://" + ln.Addr().String()})
		cfg.HTTPTimeout = 200 * time.Millisecond
		rp := newRP(t, cfg)
		start := time.Now()
		if _, _, err := rp.Start(ctx); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Start: err %v, want ErrUnavailable", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Start took %s with http_timeout 200ms", d)
		}
	})
}

func TestConfig(t *testing.T) {
	good := Config{
		ID:           testMethod,
		Issuer:       "https://idp.example.gov.tw",
		ClientID:     testClientID,
		ClientSecret: testClientSecret,
		RedirectURL:  testRedirectURL,
		AMRLevels:    map[string]int{"hwk": 3},
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	tests := []struct {
		name string
		edit func(*Config)
		key  string // the error starts with it
	}{
		{"no id", func(c *Config) { c.ID = "" }, "id:"},
		{"id with slash", func(c *Config) { c.ID = "tw/wallet" }, "id:"},
		{"id upper case", func(c *Config) { c.ID = "TW" }, "id:"},
		{"no issuer", func(c *Config) { c.Issuer = "" }, "issuer:"},
		{"http issuer", func(c *Config) { c.Issuer = "http://idp.example.gov.tw" }, "issuer:"},
		{"relative issuer", func(c *Config) { c.Issuer = "idp.example.gov.tw" }, "issuer:"},
		{"issuer with fragment", func(c *Config) { c.Issuer = "https://idp.example/#x" }, "issuer:"},
		{"no client id", func(c *Config) { c.ClientID = "" }, "client_id:"},
		{"no secret", func(c *Config) { c.ClientSecret = "" }, "client_secret_file:"},
		{"two secrets", func(c *Config) { c.ClientSecretFile = "/etc/mydata/secret" }, "client_secret, client_secret_file:"},
		{"no redirect", func(c *Config) { c.RedirectURL = "" }, "redirect_url:"},
		{"ftp redirect", func(c *Config) { c.RedirectURL = "ftp://portal.example/cb" }, "redirect_url:"},
		{"scope with space", func(c *Config) { c.Scopes = []string{"openid profile"} }, "scopes[0]:"},
		{"protocol claim as subject", func(c *Config) { c.SubjectClaim = "aud" }, "subject_claim:"},
		{"level 0", func(c *Config) { c.ACRLevels = map[string]int{"urn:x": 0} }, "acr_levels["},
		{"negative amr level", func(c *Config) { c.AMRLevels = map[string]int{"pwd": -1} }, "amr_levels["},
		{"empty amr value", func(c *Config) { c.AMRLevels = map[string]int{"": 1} }, "amr_levels:"},
		{"negative default", func(c *Config) { c.DefaultLevel = -1 }, "default_level:"},
		{"no way to a level", func(c *Config) { c.AMRLevels = nil }, "acr_levels, amr_levels:"},
		{"empty requested acr", func(c *Config) { c.RequestedACR = []string{""} }, "requested_acr[0]:"},
		{"negative timeout", func(c *Config) { c.HTTPTimeout = -time.Second }, "http_timeout:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.edit(&c)
			err := c.Validate()
			if err == nil || !strings.HasPrefix(err.Error(), tt.key) {
				t.Fatalf("Validate: %v, want an error about %s", err, tt.key)
			}
			if _, err := New(context.Background(), c, nil); err == nil {
				t.Error("New accepted what Validate refuses")
			}
		})
	}

	t.Run("loopback http and defaults", func(t *testing.T) {
		c := good
		c.Issuer, c.RedirectURL = "http://127.0.0.1:9999", "http://localhost:8080/login/oidc/tw-wallet/callback"
		c.Scopes = []string{"profile"}
		rp, err := New(context.Background(), c, nil)
		if err != nil {
			t.Fatal(err)
		}
		if rp.cfg.SubjectClaim != "sub" || rp.cfg.HTTPTimeout != defaultHTTPTimeout ||
			strings.Join(rp.cfg.Scopes, " ") != "openid profile" || rp.ID() != testMethod {
			t.Errorf("defaults not applied: %+v", rp.cfg)
		}
		if strings.Join(c.Scopes, " ") != "profile" {
			t.Error("New changed the caller's scopes")
		}
	})

	t.Run("secret file", func(t *testing.T) {
		dir := t.TempDir()
		tests := []struct {
			name, content, want string
			missing             bool
		}{
			{name: "read and trimmed", content: "from-file\n", want: "from-file"},
			{name: "empty", content: " \n"},
			{name: "missing", missing: true},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
				if !tt.missing {
					if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
						t.Fatal(err)
					}
				}
				c := good
				c.ClientSecret, c.ClientSecretFile = "", path
				rp, err := New(context.Background(), c, nil)
				if tt.want == "" {
					if err == nil || !strings.HasPrefix(err.Error(), "client_secret_file:") {
						t.Fatalf("New: %v, want a client_secret_file error", err)
					}
					return
				}
				if err != nil || rp.secret != tt.want {
					t.Fatalf("New: %v, secret %q", err, rp.secret)
				}
			})
		}
	})
}
