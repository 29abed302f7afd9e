// Package otp issues and checks one-time login codes: the weakest login method on its own, and the second
// factor after a weak first one. A code is 6 digits, lives 5 minutes, allows 5 tries and is good once.
//
// Challenges live in the hub's replicated state (the Store), so a code issued through one hub node can be
// checked on any other. The store holds only an HMAC of the code under a key the hub supplies: a copy of
// the state, a snapshot or a backup does not reveal live codes, and with only a million possible codes an
// unkeyed hash would be no protection at all.
package otp

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// The platform's rules for a code.
const (
	// Digits is the length of a code.
	Digits = 6
	// DefaultTTL is how long a code is valid.
	DefaultTTL = 5 * time.Minute
	// DefaultMaxTries is how many codes may be typed against one challenge, right or wrong.
	DefaultMaxTries = 5
	// MinKeyLen is the shortest HMAC key New accepts.
	MinKeyLen = 32
)

// Challenge is one issued code as the store keeps it.
type Challenge struct {
	ID string
	// Subject is whoever the caller says the code is for. The hub passes the keyed hash of the national
	// ID, never the ID itself: the store is replicated and backed up.
	Subject string
	// Purpose keeps a code issued for one thing ("login", "second-factor", ...) from being spent on another.
	Purpose string
	// Channel is how the code was sent ("sms", "email"); kept for the records, not checked.
	Channel string
	// CodeHash is HMAC-SHA256 under the hub's key over the id and the code (see mac). Never the code.
	CodeHash  []byte
	Tries     int
	MaxTries  int
	ExpiresAt time.Time
	Used      bool
}

// Store keeps challenges. The hub implements it on its replicated state.
type Store interface {
	PutChallenge(Challenge) error
	// Challenge returns nil, nil when the id is unknown.
	Challenge(id string) (*Challenge, error)
	// RecordTry atomically increments Tries (and marks Used on success) and returns the updated challenge.
	// Check relies on the atomicity: concurrent tries on one challenge must each see a distinct Tries.
	RecordTry(id string, success bool, at time.Time) (*Challenge, error)
}

// Errors Check returns. A wrong code is a *WrongCodeError, which matches ErrWrong with errors.Is.
var (
	ErrWrong        = errors.New("otp: wrong code")
	ErrExpired      = errors.New("otp: code expired")
	ErrUsed         = errors.New("otp: code already used")
	ErrTooManyTries = errors.New("otp: too many wrong codes")
	// ErrUnknown is returned for an unknown id, and for a challenge issued to another subject or for
	// another purpose: the caller learns nothing about challenges that are not its own.
	ErrUnknown = errors.New("otp: unknown challenge")
	// ErrMalformed: what was typed is not a code at all. It does not count as a try.
	ErrMalformed = errors.New("otp: not a 6-digit code")
)

// WrongCodeError is a wrong code, with how many tries remain (0: the challenge is now dead).
type WrongCodeError struct {
	TriesLeft int
}

func (e *WrongCodeError) Error() string {
	return fmt.Sprintf("otp: wrong code, %d tries left", e.TriesLeft)
}

// Is makes errors.Is(err, ErrWrong) true.
func (e *WrongCodeError) Is(target error) bool { return target == ErrWrong }

// Config wires the service.
type Config struct {
	Store Store
	// Key is the HMAC key for code hashes, at least MinKeyLen bytes. Every hub node must use the same
	// key (the hub's keyring), or a code issued on one node cannot be checked on another.
	Key []byte
	// TTL and MaxTries default to DefaultTTL and DefaultMaxTries.
	TTL      time.Duration
	MaxTries int
	// Now defaults to time.Now.
	Now func() time.Time
}

// Service issues and checks codes.
type Service struct {
	store    Store
	key      []byte
	ttl      time.Duration
	maxTries int
	now      func() time.Time
}

// New makes a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("otp: no store")
	}
	if len(cfg.Key) < MinKeyLen {
		return nil, fmt.Errorf("otp: key is %d bytes, want at least %d", len(cfg.Key), MinKeyLen)
	}
	s := &Service{
		store:    cfg.Store,
		key:      append([]byte(nil), cfg.Key...),
		ttl:      cfg.TTL,
		maxTries: cfg.MaxTries,
		now:      cfg.Now,
	}
	if s.ttl == 0 {
		s.ttl = DefaultTTL
	}
	if s.ttl < 0 {
		return nil, fmt.Errorf("otp: ttl %v is negative", cfg.TTL)
	}
	if s.maxTries == 0 {
		s.maxTries = DefaultMaxTries
	}
	if s.maxTries < 0 {
		return nil, fmt.Errorf("otp: max tries %d is negative", cfg.MaxTries)
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// Issue makes a challenge for subject and purpose, stores it, and returns its id and the code to send
// over channel. The code goes to the citizen and nowhere else: not to the store, not to a log.
func (s *Service) Issue(subject, purpose, channel string) (id, code string, err error) {
	if subject == "" || purpose == "" {
		return "", "", errors.New("otp: issue: subject and purpose are required")
	}
	code, err = newCode()
	if err != nil {
		return "", "", fmt.Errorf("otp: issue: %w", err)
	}
	// 128 random bits: the id is not guessable, so a challenge cannot be attacked without being shown it.
	id = rand.Text()
	c := Challenge{
		ID:        id,
		Subject:   subject,
		Purpose:   purpose,
		Channel:   channel,
		CodeHash:  s.mac(id, code),
		MaxTries:  s.maxTries,
		ExpiresAt: s.now().Add(s.ttl),
	}
	if err := s.store.PutChallenge(c); err != nil {
		return "", "", fmt.Errorf("otp: store challenge: %w", err)
	}
	return id, code, nil
}

// Check spends one try of challenge id with the code the citizen typed (see ParseCode for what is
// accepted). It returns nil exactly once per challenge, for the right code within the time and tries.
func (s *Service) Check(id, subject, purpose, code string) error {
	code, err := ParseCode(code)
	if err != nil {
		return err
	}
	c, err := s.store.Challenge(id)
	if err != nil {
		return fmt.Errorf("otp: read challenge: %w", err)
	}
	if c == nil || c.Subject != subject || c.Purpose != purpose {
		return ErrUnknown
	}
	now := s.now()
	switch {
	case c.Used:
		return ErrUsed
	case !now.Before(c.ExpiresAt):
		return ErrExpired
	case c.Tries >= c.MaxTries:
		return ErrTooManyTries
	}
	ok := subtle.ConstantTimeCompare(s.mac(id, code), c.CodeHash) == 1
	u, err := s.store.RecordTry(id, ok, now)
	if err != nil {
		return fmt.Errorf("otp: record try: %w", err)
	}
	if u == nil {
		return ErrUnknown
	}
	// Concurrent tries all pass the checks above before any is recorded, so what counts is the Tries
	// the atomic RecordTry gave this one: beyond MaxTries it gets no answer, whatever the code was, and
	// a flood of parallel guesses learns no more than MaxTries of them.
	if u.Tries > u.MaxTries {
		return ErrTooManyTries
	}
	if ok {
		// The right code wins only if no other try was recorded since this one read the challenge:
		// otherwise another, possibly also right, may have spent it first. This refuses the rare right
		// code racing a wrong one, rather than ever letting a code be used twice.
		if !u.Used || u.Tries != c.Tries+1 {
			return ErrUsed
		}
		return nil
	}
	return &WrongCodeError{TriesLeft: u.MaxTries - u.Tries}
}

// mac is the stored form of a code. The code has a fixed length, so id||code is unambiguous; the label
// keeps these MACs apart from anything else the hub might compute with the same key.
func (s *Service) mac(id, code string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("mydata otp v1\x00"))
	m.Write([]byte(id))
	m.Write([]byte{0})
	m.Write([]byte(code))
	return m.Sum(nil)
}

// codeSpace is 10^Digits; bound is the largest multiple of it that fits in a uint32. Drawing below bound
// and reducing keeps every code equally likely (no modulo bias); a draw at or above it is thrown away,
// which happens about once in 4300 draws.
const (
	codeSpace = 1_000_000
	bound     = (1 << 32) / codeSpace * codeSpace
)

func newCode() (string, error) {
	var b [4]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		if n := binary.BigEndian.Uint32(b[:]); n < bound {
			return fmt.Sprintf("%06d", n%codeSpace), nil
		}
	}
}
