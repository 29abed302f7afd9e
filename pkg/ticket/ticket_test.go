package ticket

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

func sample(now time.Time) *Claims {
	return &Claims{ID: "t1", ConsentID: "c1", Dataset: "moi.household", DP: "spiffe://mydata.test/org/moi/connector/dp1",
		Redeemer: "spiffe://mydata.test/org/bank/connector/sp1", SealedSubject: []byte{1, 2, 3}, RecipientKEM: 0x647a,
		RecipientKey: []byte{4, 5}, Issuer: "spiffe://mydata.test/hub/hub-1", IssuedAt: now.Unix(), ExpiresAt: now.Add(5 * time.Minute).Unix()}
}

func newSigner(t testing.TB) (*Signer, *ecdsa.PrivateKey) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s, err := NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	return s, key
}

func TestSignVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s, key := newSigner(t)
	keys := Keys{s.KeyID(): &key.PublicKey}
	tok, err := s.Sign(sample(now))
	if err != nil {
		t.Fatal(err)
	}
	c, err := Verify(tok, keys, now.Add(time.Minute))
	if err != nil || c.Dataset != "moi.household" || c.ID != "t1" {
		t.Fatalf("verify: %+v %v", c, err)
	}

	other, _ := newSigner(t)
	foreign, _ := other.Sign(sample(now))
	parts := strings.Split(tok, ".")
	tamperedPayload := parts[0] + "." + parts[1][:len(parts[1])-2] + "AA." + parts[2]
	// Another JWS signed by the same key but not a ticket (no typ) must not pass.
	plain, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", s.KeyID()))
	obj, _ := plain.Sign([]byte(`{"jti":"x"}`))
	untyped, _ := obj.CompactSerialize()

	tests := []struct {
		name string
		tok  string
		keys Keys
		at   time.Time
		want error
	}{
		{"expired", tok, keys, now.Add(6 * time.Minute), ErrExpired},
		{"within skew", tok, keys, now.Add(5*time.Minute + 10*time.Second), nil},
		{"issued in the future", tok, keys, now.Add(-time.Minute), ErrMalformed},
		{"foreign signer", foreign, keys, now, ErrUnknownKey},
		{"foreign signer claiming our kid", foreign, Keys{other.KeyID(): &key.PublicKey}, now, ErrSignature},
		{"tampered", tamperedPayload, keys, now, ErrSignature},
		{"not a ticket", untyped, keys, now, ErrMalformed},
		{"garbage", "a.b.c", keys, now, ErrMalformed},
		{"huge", strings.Repeat("a", MaxSize+1), keys, now, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Verify(tt.tok, tt.keys, tt.at)
			if !errors.Is(err, tt.want) && !(tt.want == nil && err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestLifetimeLimits(t *testing.T) {
	now := time.Now()
	s, _ := newSigner(t)
	long := sample(now)
	long.ExpiresAt = now.Add(6 * time.Minute).Unix()
	if _, err := s.Sign(long); !errors.Is(err, ErrMalformed) {
		t.Fatalf("6-minute ticket: %v", err)
	}
	long.Async = true
	if _, err := s.Sign(long); err != nil {
		t.Fatalf("async ticket: %v", err)
	}
	long.ExpiresAt = now.Add(91 * time.Minute).Unix()
	if _, err := s.Sign(long); !errors.Is(err, ErrMalformed) {
		t.Fatalf("91-minute async ticket: %v", err)
	}
	missing := sample(now)
	missing.Redeemer = ""
	if _, err := s.Sign(missing); !errors.Is(err, ErrMalformed) {
		t.Fatalf("no redeemer: %v", err)
	}
}

// TestStageClaim: a sandbox ticket carries its stage through signing and verifying; no other stage is a
// ticket's (pilot and production tickets are for real data and carry none).
func TestStageClaim(t *testing.T) {
	now := time.Now()
	s, key := newSigner(t)
	keys := Keys{s.KeyID(): &key.PublicKey}
	for _, tc := range []struct {
		stage string
		err   error
	}{{"", nil}, {StageSandbox, nil}, {"pilot", ErrMalformed}, {"production", ErrMalformed}} {
		c := sample(now)
		c.Stage = tc.stage
		tok, err := s.Sign(c)
		if !errors.Is(err, tc.err) {
			t.Fatalf("stage %q: %v", tc.stage, err)
		}
		if err != nil {
			continue
		}
		got, err := Verify(tok, keys, now)
		if err != nil || got.Stage != tc.stage {
			t.Fatalf("stage %q verified as %+v %v", tc.stage, got, err)
		}
	}
}

func FuzzVerify(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	s, key := newSigner(f)
	keys := Keys{s.KeyID(): &key.PublicKey}
	tok, _ := s.Sign(sample(now))
	f.Add(tok)
	f.Add("eyJhbGciOiJFUzI1NiJ9.e30.AAAA")
	f.Add("...")
	f.Fuzz(func(t *testing.T, in string) {
		c, err := Verify(in, keys, now)
		if err == nil && in != tok {
			// Only a token signed by our key verifies; the fuzzer cannot forge one.
			if c.ID != "t1" {
				t.Fatalf("forged ticket verified: %+v", c)
			}
		}
	})
}

// TestAlternates: a ticket may name up to MaxDPs connectors, each with its own sealed subject, and at that
// size (hybrid-KEM subjects and recipient key) still fits MaxSize; a repeated, empty or extra one is refused.
func TestAlternates(t *testing.T) {
	now := time.Now()
	s, key := newSigner(t)
	keys := Keys{s.KeyID(): &key.PublicKey}
	hybridSubject := make([]byte, 1120+10+16) // ML-KEM-768+X25519 encapsulation, a national ID, the tag
	alt := func(n int) []Alternate {
		var out []Alternate
		for i := range n {
			out = append(out, Alternate{DP: "spiffe://mydata.test/org/moi/connector/dp" + string(rune('2'+i)), SealedSubject: hybridSubject})
		}
		return out
	}
	for _, tc := range []struct {
		name string
		alt  []Alternate
		err  error
	}{
		{"none", nil, nil},
		{"most", alt(MaxDPs - 1), nil},
		{"too many", alt(MaxDPs), ErrMalformed},
		{"repeats the dp", []Alternate{{DP: "spiffe://mydata.test/org/moi/connector/dp1", SealedSubject: []byte{1}}}, ErrMalformed},
		{"twice", append(alt(1), alt(1)...), ErrMalformed},
		{"no subject", []Alternate{{DP: "spiffe://mydata.test/org/moi/connector/dp2"}}, ErrMalformed},
		{"no dp", []Alternate{{SealedSubject: []byte{1}}}, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := sample(now)
			c.SealedSubject, c.RecipientKey = hybridSubject, make([]byte, 1216)
			c.Alternates = tc.alt
			tok, err := s.Sign(c)
			if !errors.Is(err, tc.err) {
				t.Fatalf("sign: %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			got, err := Verify(tok, keys, now)
			if err != nil {
				t.Fatalf("verify a %d-byte ticket: %v", len(tok), err)
			}
			if dps := got.DPs(); len(dps) != 1+len(tc.alt) || dps[0] != c.DP {
				t.Fatalf("DPs = %v", dps)
			}
			for _, a := range tc.alt {
				if ssub, ok := got.ForDP(a.DP); !ok || len(ssub) != len(hybridSubject) {
					t.Fatalf("ForDP(%s) = %d bytes, %v", a.DP, len(ssub), ok)
				}
			}
			if _, ok := got.ForDP("spiffe://mydata.test/org/moi/connector/other"); ok {
				t.Fatal("ForDP found a connector the ticket does not name")
			}
		})
	}
}
