// Package jointoken is the form of the single-use tokens with which an operator lets a connector enroll:
// a random secret, which the hub keeps only as a hash, and the fingerprint of the hub's root CA, so that the
// connector can pin the hub on first contact without a second value to copy.
package jointoken

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
)

const prefix = "mdj1"

// Token is a parsed join token.
type Token struct {
	Secret [32]byte
	// CAFingerprint is the SHA-256 of the hub's root certificate.
	CAFingerprint [32]byte
}

// New makes a token with a fresh secret.
func New(caFingerprint [32]byte) Token {
	var t Token
	_, _ = rand.Read(t.Secret[:]) // crypto/rand.Read never fails on supported platforms
	t.CAFingerprint = caFingerprint
	return t
}

// String is the form an operator hands over: mdj1.<secret>.<fingerprint>, both base64url.
func (t Token) String() string {
	enc := base64.RawURLEncoding
	return prefix + "." + enc.EncodeToString(t.Secret[:]) + "." + enc.EncodeToString(t.CAFingerprint[:])
}

// Hash is what the hub stores and looks tokens up by; it cannot be turned back into a token.
func (t Token) Hash() string {
	h := sha256.Sum256(t.Secret[:])
	return hex.EncodeToString(h[:])
}

// ErrMalformed is returned for anything that is not a token.
var ErrMalformed = errors.New("malformed join token (want mdj1.<secret>.<ca-fingerprint>)")

// Parse reads a token.
func Parse(s string) (Token, error) {
	var t Token
	if len(s) > 128 {
		return t, ErrMalformed
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] != prefix {
		return t, ErrMalformed
	}
	enc := base64.RawURLEncoding
	sec, err := enc.DecodeString(parts[1])
	if err != nil || len(sec) != 32 {
		return t, ErrMalformed
	}
	fp, err := enc.DecodeString(parts[2])
	if err != nil || len(fp) != 32 {
		return t, ErrMalformed
	}
	copy(t.Secret[:], sec)
	copy(t.CAFingerprint[:], fp)
	return t, nil
}

// ParseFingerprint reads a CA fingerprint given as hex (with or without colons) or as base64url, the two
// forms `mydata-hub` prints.
func ParseFingerprint(s string) ([32]byte, error) {
	var fp [32]byte
	clean := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(s, "sha256:")), ":", "")
	if b, err := hex.DecodeString(clean); err == nil && len(b) == 32 {
		copy(fp[:], b)
		return fp, nil
	}
	if b, err := base64.RawURLEncoding.DecodeString(s); err == nil && len(b) == 32 {
		copy(fp[:], b)
		return fp, nil
	}
	return fp, errors.New("CA fingerprint must be 32 bytes as hex or base64url")
}

// FormatFingerprint is the hex form with the sha256: prefix.
func FormatFingerprint(fp [32]byte) string { return "sha256:" + hex.EncodeToString(fp[:]) }
