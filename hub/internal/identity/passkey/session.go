package passkey

import (
	"encoding/binary"
	"errors"
	"time"
)

// session is what the portal keeps (signed, in a cookie) between the begin and the finish of a ceremony. It
// carries no national ID: a cookie is signed, not sealed, and the user handle is opaque.
//
// Wire form, version 1:
//
//	version(1) kind(1) expires(8, unix seconds, big endian) len(1) challenge len(1) handle
type session struct {
	kind      byte
	expires   time.Time
	challenge []byte
	// handle is the user handle the ceremony is bound to: the registering citizen's, or for a login the
	// citizen the portal expects; empty for a discoverable login.
	handle []byte
}

const (
	sessionVersion   = 1
	kindRegistration = 1
	kindLogin        = 2

	// grace is added to the browser's timeout before a blob expires: the browser gives up first, and the post
	// that follows a last-second touch still arrives in time.
	grace = 30 * time.Second

	minChallenge = 16
	maxChallenge = 64
	maxHandle    = 64
)

var errSessionFormat = errors.New("not a passkey session")

func (s session) marshal() []byte {
	b := make([]byte, 0, 12+len(s.challenge)+len(s.handle))
	b = append(b, sessionVersion, s.kind)
	b = binary.BigEndian.AppendUint64(b, uint64(s.expires.Unix()))
	b = append(b, byte(len(s.challenge)))
	b = append(b, s.challenge...)
	b = append(b, byte(len(s.handle)))
	b = append(b, s.handle...)
	return b
}

func parseSession(b []byte) (session, error) {
	var s session
	if len(b) < 11 || b[0] != sessionVersion {
		return s, errSessionFormat
	}
	s.kind = b[1]
	if s.kind != kindRegistration && s.kind != kindLogin {
		return s, errSessionFormat
	}
	exp := binary.BigEndian.Uint64(b[2:10])
	if exp > 1<<62 {
		return s, errSessionFormat
	}
	s.expires = time.Unix(int64(exp), 0)
	rest := b[10:]
	n := int(rest[0])
	if n < minChallenge || n > maxChallenge || len(rest) < 1+n+1 {
		return s, errSessionFormat
	}
	s.challenge = rest[1 : 1+n]
	rest = rest[1+n:]
	m := int(rest[0])
	if m > maxHandle || len(rest) != 1+m {
		return s, errSessionFormat
	}
	if m > 0 {
		s.handle = rest[1:]
	}
	return s, nil
}
