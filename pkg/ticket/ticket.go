// Package ticket is the hub's signed, short-lived, single-use transfer ticket: the proof a data provider's
// connector checks, offline, before it sends one dataset of one citizen to one recipient. A ticket is a
// compact JWS (ES256) rather than COSE: JWS libraries exist for every stack an agency runs, a ticket is a
// few hundred bytes either way, and go-jose is already in our dependency tree through go-spiffe.
package ticket

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/mydatafed/mydata/pkg/strictjson"
)

// Limits.
const (
	// MaxSize fits a ticket that names MaxDPs connectors, each with its hybrid-KEM sealed subject
	// (about 2 KiB apiece in the compact form).
	MaxSize      = 16 << 10
	MaxLife      = 5 * time.Minute
	MaxAsyncLife = 90 * time.Minute
	// Skew tolerates clocks of hub and connector that disagree a little.
	Skew = 30 * time.Second
)

// typ marks our tickets, so that no other JWS signed by a hub key passes as one.
const typ = "mydata-ticket+jws"

// Claims is what a ticket says.
type Claims struct {
	ID        string `json:"jti"`
	ConsentID string `json:"cid"`
	Dataset   string `json:"ds"`
	// DP is the SPIFFE ID of the connector that serves the dataset.
	DP string `json:"dp"`
	// Redeemer is the only SPIFFE ID that may present the ticket.
	Redeemer string `json:"red"`
	// SealedSubject is the citizen's ID sealed to the DP connector's HPKE key, with SubjectInfo(ID).
	SealedSubject []byte `json:"ssub"`
	// RecipientKEM and RecipientKey are the HPKE key the content must be sealed to.
	RecipientKEM uint16 `json:"rkem"`
	RecipientKey []byte `json:"rkey"`
	Issuer       string `json:"iss"`
	IssuedAt     int64  `json:"iat"`
	ExpiresAt    int64  `json:"exp"`
	// Async marks a dataset whose agency may answer later: the ticket may live up to MaxAsyncLife and be
	// presented again while the DP says "not ready".
	Async bool `json:"async,omitempty"`
	// Mode is ModeDownload for a ticket the hub presents to relay a citizen's own download to their browser;
	// empty for every other ticket, which only a connector may present.
	Mode string `json:"mode,omitempty"`
	// Stage is StageSandbox for a ticket of a service or dataset in its sandbox: the DP answers it from
	// the dataset's synthetic backend only, never the real one. Empty for real data (pilot, production).
	Stage string `json:"stage,omitempty"`
	// Service is the SP service the consent was given to, empty for a citizen's own download: a DP
	// refuses the ticket when its directory lists the service as suspended or terminated.
	Service string `json:"svc,omitempty"`
	// Alternates are the dataset's other DP connectors (connector HA): any one of DP and these may serve
	// the ticket, once in all, which the hub decides (a DP claims the ticket there before it serves).
	// Each has the subject sealed to its own key. Empty for a dataset served by one connector.
	Alternates []Alternate `json:"alt,omitempty"`
}

// Alternate is one more connector that may serve a ticket.
type Alternate struct {
	DP            string `json:"dp"`
	SealedSubject []byte `json:"ssub"`
}

// MaxDPs bounds the connectors one ticket names (DP and its alternates).
const MaxDPs = 4

// ForDP is the subject sealed to dp, the SPIFFE ID of one of the ticket's connectors; false if the ticket
// does not name dp.
func (c *Claims) ForDP(dp string) ([]byte, bool) {
	if dp == c.DP {
		return c.SealedSubject, true
	}
	for _, a := range c.Alternates {
		if a.DP == dp {
			return a.SealedSubject, true
		}
	}
	return nil, false
}

// DPs are the connectors that may serve the ticket, DP first.
func (c *Claims) DPs() []string {
	out := []string{c.DP}
	for _, a := range c.Alternates {
		out = append(out, a.DP)
	}
	return out
}

// StageSandbox marks a sandbox ticket (hubapi.StageSandbox).
const StageSandbox = "sandbox"

// ModeDownload marks a download ticket: its redeemer is the hub, its recipient the citizen's browser.
const ModeDownload = "download"

// SubjectInfo is the HPKE info under which the subject is sealed: bound to one ticket.
func SubjectInfo(ticketID string) []byte { return []byte("mydata subject " + ticketID) }

// ContentInfo is the HPKE info under which content is sealed: bound to one ticket.
func ContentInfo(ticketID string) []byte { return []byte("mydata content " + ticketID) }

// Errors callers branch on.
var (
	ErrMalformed  = errors.New("ticket: malformed")
	ErrSignature  = errors.New("ticket: signature does not verify")
	ErrUnknownKey = errors.New("ticket: signed with a key the directory does not list")
	ErrExpired    = errors.New("ticket: expired")
)

// KeyID names a signing key: the first 16 bytes of the SHA-256 of its SubjectPublicKeyInfo, base64url.
func KeyID(pub *ecdsa.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(h[:16]), nil
}

// Signer signs tickets with one hub key.
type Signer struct {
	key    *ecdsa.PrivateKey
	kid    string
	signer jose.Signer
}

// NewSigner makes a signer for a P-256 key.
func NewSigner(key *ecdsa.PrivateKey) (*Signer, error) {
	if key.Curve != elliptic.P256() {
		return nil, errors.New("ticket: signing key must be P-256")
	}
	kid, err := KeyID(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	opts := (&jose.SignerOptions{}).WithType(typ).WithHeader("kid", kid)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, opts)
	if err != nil {
		return nil, err
	}
	return &Signer{key: key, kid: kid, signer: s}, nil
}

// KeyID is the signer's key ID.
func (s *Signer) KeyID() string { return s.kid }

// Sign makes the compact ticket.
func (s *Signer) Sign(c *Claims) (string, error) {
	if err := c.check(); err != nil {
		return "", err
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	obj, err := s.signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return obj.CompactSerialize()
}

func (c *Claims) check() error {
	switch {
	case c.ID == "" || len(c.ID) > 64:
		return fmt.Errorf("%w: jti", ErrMalformed)
	case c.ConsentID == "" || c.Dataset == "" || c.DP == "" || c.Redeemer == "" || c.Issuer == "":
		return fmt.Errorf("%w: cid, ds, dp, red and iss are required", ErrMalformed)
	case len(c.SealedSubject) == 0 || len(c.RecipientKey) == 0:
		return fmt.Errorf("%w: ssub and rkey are required", ErrMalformed)
	case c.Mode != "" && c.Mode != ModeDownload:
		return fmt.Errorf("%w: mode %q", ErrMalformed, c.Mode)
	case len(c.Service) > 64:
		return fmt.Errorf("%w: svc", ErrMalformed)
	case c.Stage != "" && c.Stage != StageSandbox:
		return fmt.Errorf("%w: stage %q", ErrMalformed, c.Stage)
	case len(c.Alternates) >= MaxDPs:
		return fmt.Errorf("%w: alt names more than %d connectors", ErrMalformed, MaxDPs-1)
	}
	seen := map[string]bool{c.DP: true}
	for _, a := range c.Alternates {
		if a.DP == "" || len(a.SealedSubject) == 0 {
			return fmt.Errorf("%w: each alt needs dp and ssub", ErrMalformed)
		}
		if seen[a.DP] {
			return fmt.Errorf("%w: alt names %s twice", ErrMalformed, a.DP)
		}
		seen[a.DP] = true
	}
	life := time.Duration(c.ExpiresAt-c.IssuedAt) * time.Second
	limit := MaxLife
	if c.Async {
		limit = MaxAsyncLife
	}
	if life <= 0 || life > limit {
		return fmt.Errorf("%w: lifetime %s is not within (0, %s]", ErrMalformed, life, limit)
	}
	return nil
}

// KeySet finds hub ticket keys by key ID; the connector's copy of the directory provides one.
type KeySet interface {
	TicketKey(kid string) (*ecdsa.PublicKey, bool)
}

// Verify checks the signature, the type, the claims' shape and the time, all offline.
func Verify(token string, keys KeySet, now time.Time) (*Claims, error) {
	if len(token) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(token))
	}
	obj, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(obj.Signatures) != 1 {
		return nil, fmt.Errorf("%w: want one signature", ErrMalformed)
	}
	h := obj.Signatures[0].Protected
	if t, _ := h.ExtraHeaders[jose.HeaderType].(string); t != typ {
		return nil, fmt.Errorf("%w: type %q is not %q", ErrMalformed, t, typ)
	}
	pub, ok := keys.TicketKey(h.KeyID)
	if !ok {
		return nil, fmt.Errorf("%w: kid %q", ErrUnknownKey, h.KeyID)
	}
	payload, err := obj.Verify(pub)
	if err != nil {
		return nil, ErrSignature
	}
	var c Claims
	if err := strictjson.Unmarshal(payload, MaxSize, &c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	n := now.Unix()
	if c.IssuedAt > n+int64(Skew/time.Second) {
		return nil, fmt.Errorf("%w: issued in the future", ErrMalformed)
	}
	if n >= c.ExpiresAt+int64(Skew/time.Second) {
		return nil, fmt.Errorf("%w at %s", ErrExpired, time.Unix(c.ExpiresAt, 0).UTC().Format(time.RFC3339))
	}
	return &c, nil
}
