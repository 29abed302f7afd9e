// Package seal encrypts payloads end to end with HPKE (RFC 9180, crypto/hpke) so that only the intended
// recipient can read them: whole small values (a citizen's ID sealed to a data provider) and chunked
// streams (a dataset sealed to the service provider's or the browser's key). Between connectors the KEM is
// the hybrid ML-KEM-768 + X25519, so recorded traffic stays safe against a future quantum computer; a
// browser, which WebCrypto limits to X25519, gets DHKEM(X25519).
package seal

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hpke"
	"errors"
	"fmt"
)

// KEM identifiers (RFC 9180 and draft-ietf-hpke-pq).
const (
	KEMHybrid uint16 = 0x647a // ML-KEM-768 + X25519
	KEMX25519 uint16 = 0x0020 // DHKEM(X25519, HKDF-SHA256)
)

// ChunkSize is the most plaintext one sealed chunk carries.
const ChunkSize = 64 << 10

// Overhead is what sealing adds to a chunk (the AES-GCM tag).
const Overhead = 16

func kem(id uint16) (hpke.KEM, error) {
	switch id {
	case KEMHybrid:
		return hpke.MLKEM768X25519(), nil
	case KEMX25519:
		return hpke.DHKEM(ecdh.X25519()), nil
	}
	return nil, fmt.Errorf("seal: KEM 0x%04x is not allowed (want 0x%04x or 0x%04x)", id, KEMHybrid, KEMX25519)
}

// AES-256-GCM runs at GB/s per core with AES-NI, well above what QUIC carries; HKDF-SHA256 and AES-256-GCM
// are what WebCrypto does too, so a browser opens what a connector seals with the same suite.
func suite() (hpke.KDF, hpke.AEAD) { return hpke.HKDFSHA256(), hpke.AES256GCM() }

// GenerateKey makes a key pair for the KEM.
func GenerateKey(kemID uint16) (hpke.PrivateKey, error) {
	k, err := kem(kemID)
	if err != nil {
		return nil, err
	}
	return k.GenerateKey()
}

// ParsePublicKey reads a serialised public key of the KEM.
func ParsePublicKey(kemID uint16, b []byte) (hpke.PublicKey, error) {
	k, err := kem(kemID)
	if err != nil {
		return nil, err
	}
	pk, err := k.NewPublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("seal: public key: %w", err)
	}
	return pk, nil
}

// ParsePrivateKey reads a serialised private key of the KEM.
func ParsePrivateKey(kemID uint16, b []byte) (hpke.PrivateKey, error) {
	k, err := kem(kemID)
	if err != nil {
		return nil, err
	}
	sk, err := k.NewPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("seal: private key: %w", err)
	}
	return sk, nil
}

// Seal seals one value to pk; info binds it to its purpose (for example the ticket it belongs to), so a
// sealed value cannot be moved to another context.
func Seal(pk hpke.PublicKey, info, plaintext []byte) ([]byte, error) {
	kdf, aead := suite()
	return hpke.Seal(pk, kdf, aead, info, plaintext)
}

// Open opens a value sealed with Seal.
func Open(sk hpke.PrivateKey, info, ciphertext []byte) ([]byte, error) {
	kdf, aead := suite()
	pt, err := hpke.Open(sk, kdf, aead, info, ciphertext)
	if err != nil {
		return nil, errors.New("seal: cannot open: wrong key, wrong context or tampered data")
	}
	return pt, nil
}

// The final chunk is sealed with its own associated data, so that a stream cut after any other chunk never
// looks complete, and the final chunk cannot be moved earlier.
var (
	aadChunk = []byte("mydata chunk")
	aadFinal = []byte("mydata final")
)

// Sender seals a stream of chunks to one recipient. HPKE's nonce counter orders the chunks: a reordered,
// repeated or dropped chunk fails to open.
type Sender struct {
	s    *hpke.Sender
	fast *streamAEAD // the context's AEAD, sealing in place; nil: s.Seal
	done bool
}

// NewSender starts a stream to pk. enc must reach the recipient before the chunks.
func NewSender(pk hpke.PublicKey, info []byte) (enc []byte, s *Sender, err error) {
	kdf, aead := suite()
	enc, hs, err := hpke.NewSender(pk, kdf, aead, info)
	if err != nil {
		return nil, nil, err
	}
	return enc, &Sender{s: hs, fast: streamOf(hs)}, nil
}

// Seal seals the next chunk into a new slice; final marks the last one, after which the sender refuses
// more.
func (s *Sender) Seal(plaintext []byte, final bool) ([]byte, error) {
	return s.SealAppend(nil, plaintext, final)
}

// SealAppend seals the next chunk as Seal does and appends it to dst: with room for len(plaintext)+Overhead
// more bytes in dst, it allocates nothing. plaintext may be that room itself (dst[len(dst):], sealed in
// place), or must not overlap it.
func (s *Sender) SealAppend(dst, plaintext []byte, final bool) ([]byte, error) {
	if s.done {
		return nil, errors.New("seal: stream already finished")
	}
	if len(plaintext) > ChunkSize {
		return nil, fmt.Errorf("seal: chunk of %d bytes exceeds %d", len(plaintext), ChunkSize)
	}
	aad := aadChunk
	if final {
		aad, s.done = aadFinal, true
	}
	if s.fast != nil {
		return s.fast.sealAppend(dst, aad, plaintext), nil
	}
	ct, err := s.s.Seal(aad, plaintext)
	if err != nil {
		return nil, err
	}
	return append(dst, ct...), nil
}

// Receiver opens a stream sealed by a Sender.
type Receiver struct {
	r    *hpke.Recipient
	fast *streamAEAD // the context's AEAD, opening in place; nil: r.Open
	done bool
}

// NewReceiver starts opening the stream whose encapsulated key is enc.
func NewReceiver(sk hpke.PrivateKey, enc, info []byte) (*Receiver, error) {
	kdf, aead := suite()
	r, err := hpke.NewRecipient(enc, sk, kdf, aead, info)
	if err != nil {
		return nil, fmt.Errorf("seal: stream key: %w", err)
	}
	return &Receiver{r: r, fast: streamOf(r)}, nil
}

// ErrChunk is returned for a chunk that does not open in its place in the stream.
var ErrChunk = errors.New("seal: chunk does not open: tampered, reordered, replayed or not the final one claimed")

// Open opens the next chunk into a new slice; final must say whether the sender marked it last.
func (r *Receiver) Open(ciphertext []byte, final bool) ([]byte, error) {
	return r.open(bytes.Clone(ciphertext), final)
}

// OpenInPlace opens the next chunk as Open does, over ciphertext itself: the plaintext it returns is the
// start of ciphertext's memory, and allocates nothing. A chunk that does not open leaves none of its
// plaintext there.
func (r *Receiver) OpenInPlace(ciphertext []byte, final bool) ([]byte, error) {
	return r.open(ciphertext, final)
}

func (r *Receiver) open(ciphertext []byte, final bool) ([]byte, error) {
	if r.done {
		return nil, errors.New("seal: data after the final chunk")
	}
	if len(ciphertext) > ChunkSize+Overhead {
		return nil, fmt.Errorf("seal: chunk of %d bytes exceeds %d", len(ciphertext), ChunkSize+Overhead)
	}
	aad := aadChunk
	if final {
		aad = aadFinal
	}
	var pt []byte
	var err error
	if r.fast != nil {
		pt, err = r.fast.openInPlace(aad, ciphertext)
	} else if pt, err = r.r.Open(aad, ciphertext); err == nil {
		pt = ciphertext[:copy(ciphertext, pt)]
	}
	if err != nil {
		return nil, ErrChunk
	}
	r.done = final
	return pt, nil
}

// Done says whether the final chunk has been opened.
func (r *Receiver) Done() bool { return r.done }
