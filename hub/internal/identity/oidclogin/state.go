package oidclogin

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// State is what the portal keeps between Start and Finish, in a signed cookie: the values that bind the
// IdP's answer to this browser (state), the ID token to this login (nonce) and the code to this client
// (the PKCE verifier), plus the method it belongs to and when it was issued. The portal must sign it (it
// holds the verifier, so it should also not be readable by anyone but the browser it was given to) and
// refuse it after StateLifetime; Finish refuses it too.
type State struct {
	// Method is the configured method id, so a state made for one IdP is not accepted at another's
	// callback (a mix-up).
	Method string
	// State is the OAuth 2.0 state parameter: 16 random bytes, base64url.
	State string
	// Nonce is the OpenID Connect nonce: 16 random bytes, base64url.
	Nonce string
	// Verifier is the PKCE code verifier: 32 random bytes, base64url (43 characters, RFC 7636).
	Verifier string
	// IssuedAt is when Start made it, to the second.
	IssuedAt time.Time
}

// StateLifetime is how long a State is accepted after Start. IdPs that ask for a second factor on a
// phone need minutes; an authorization code itself lives for far less.
const StateLifetime = 15 * time.Minute

const (
	stateVersion = 1
	stateLen     = 16
	nonceLen     = 16
	verifierLen  = 32
	// version, issued-at, state, nonce, verifier; the method id fills the rest.
	stateFixedLen = 1 + 8 + stateLen + nonceLen + verifierLen
	maxIDLen      = 64
)

var (
	b64       = base64.RawURLEncoding
	b64Strict = base64.RawURLEncoding.Strict()
)

// errStateEncoding is wrapped in ErrState by Unmarshal's callers; kept apart so Marshal's error does not
// claim the browser sent something bad.
var errStateEncoding = errors.New("malformed")

func newState(method string, now time.Time) State {
	return State{
		Method:   method,
		State:    b64.EncodeToString(randomBytes(stateLen)),
		Nonce:    b64.EncodeToString(randomBytes(nonceLen)),
		Verifier: b64.EncodeToString(randomBytes(verifierLen)),
		IssuedAt: now.Truncate(time.Second).UTC(),
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails since Go 1.24; it crashes the program instead.
	return b
}

// Marshal encodes the State compactly as base64url text (about 100 bytes plus the method id), which a
// cookie value can carry as is. It fails only for a State that Start did not make.
func (s State) Marshal() ([]byte, error) {
	if err := validID(s.Method); err != nil {
		return nil, fmt.Errorf("state method: %w", err)
	}
	buf := make([]byte, 0, stateFixedLen+len(s.Method))
	buf = append(buf, stateVersion)
	buf = binary.BigEndian.AppendUint64(buf, uint64(s.IssuedAt.Unix()))
	for _, f := range []struct {
		name, v string
		n       int
	}{{"state", s.State, stateLen}, {"nonce", s.Nonce, nonceLen}, {"verifier", s.Verifier, verifierLen}} {
		raw, err := b64Strict.DecodeString(f.v)
		if err != nil || len(raw) != f.n {
			return nil, fmt.Errorf("state %s: not %d bytes of base64url", f.name, f.n)
		}
		buf = append(buf, raw...)
	}
	buf = append(buf, s.Method...)
	out := make([]byte, b64.EncodedLen(len(buf)))
	b64.Encode(out, buf)
	return out, nil
}

// Unmarshal decodes what Marshal made. The bytes come back from the browser: the portal checks its
// signature first, but Unmarshal still trusts nothing — exact lengths, a known version, a valid method id.
func (s *State) Unmarshal(data []byte) error {
	if len(data) > b64.EncodedLen(stateFixedLen+maxIDLen) {
		return fmt.Errorf("state: %w: too long", errStateEncoding)
	}
	// The decoder skips \r and \n; a cookie with them would decode to a State whose Marshal differs.
	for _, c := range data {
		if !isB64URL(c) {
			return fmt.Errorf("state: %w: not base64url", errStateEncoding)
		}
	}
	raw := make([]byte, b64Strict.DecodedLen(len(data)))
	n, err := b64Strict.Decode(raw, data)
	if err != nil {
		return fmt.Errorf("state: %w: not base64url", errStateEncoding)
	}
	raw = raw[:n]
	if len(raw) <= stateFixedLen {
		return fmt.Errorf("state: %w: too short", errStateEncoding)
	}
	if raw[0] != stateVersion {
		return fmt.Errorf("state: %w: version %d", errStateEncoding, raw[0])
	}
	method := string(raw[stateFixedLen:])
	if err := validID(method); err != nil {
		return fmt.Errorf("state: %w: method: %v", errStateEncoding, err)
	}
	p := raw[1:]
	issued := int64(binary.BigEndian.Uint64(p))
	p = p[8:]
	*s = State{
		Method:   method,
		State:    b64.EncodeToString(p[:stateLen]),
		Nonce:    b64.EncodeToString(p[stateLen : stateLen+nonceLen]),
		Verifier: b64.EncodeToString(p[stateLen+nonceLen : stateLen+nonceLen+verifierLen]),
		IssuedAt: time.Unix(issued, 0).UTC(),
	}
	return nil
}

func isB64URL(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// validID accepts what can sit in a URL path and a log line unescaped: lower-case letters, digits, '.',
// '_' and '-', starting with a letter or digit, at most 64 bytes.
func validID(id string) error {
	if id == "" {
		return errors.New("empty")
	}
	if len(id) > maxIDLen {
		return fmt.Errorf("longer than %d characters", maxIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return fmt.Errorf("%q: only a-z, 0-9, '.', '_' and '-', starting with a letter or digit", id)
		}
	}
	return nil
}
