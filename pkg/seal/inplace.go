package seal

import (
	"bytes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hpke"
	"encoding/binary"
	"reflect"
	"sync"
	"unsafe"
)

// crypto/hpke's Seal and Open return every chunk in a new slice (they have no dst argument): 64 KiB of
// garbage per chunk on each side, and zeroing it was a tenth of a connector's CPU in a bulk transfer
// (docs/benchmarks.md, session 6). A stream's context is an AEAD with a base nonce (RFC 9180 5.2: nonce =
// base_nonce XOR I2OSP(seq, Nn)); streamAEAD uses the context's own AEAD and base nonce to seal and open in
// caller-owned buffers. crypto/hpke does not export them, so they are read by name and type through
// reflect; if the fields are not there as expected, or a sealing through them does not interoperate with
// crypto/hpke (checked once per process with a throwaway key), streams use crypto/hpke's own Seal and
// Open, which only cost more. The bytes on the wire are the same either way.

// streamAEAD seals or opens the chunks of one stream in place. It owns the sequence number from the moment
// it is made; the hpke context it came from must not be used to seal or open again.
type streamAEAD struct {
	aead      cipher.AEAD
	baseNonce []byte
	nonce     []byte
	seq       uint64
}

// nextNonce computes the nonce of the current sequence number into s.nonce.
func (s *streamAEAD) nextNonce() []byte {
	n := len(s.nonce)
	clear(s.nonce[:n-8])
	binary.BigEndian.PutUint64(s.nonce[n-8:], s.seq)
	for i, b := range s.baseNonce {
		s.nonce[i] ^= b
	}
	return s.nonce
}

// sealAppend appends the sealed plaintext to dst; plaintext and the appended part may overlap exactly.
func (s *streamAEAD) sealAppend(dst, aad, plaintext []byte) []byte {
	out := s.aead.Seal(dst, s.nextNonce(), plaintext, aad)
	s.seq++
	return out
}

// openInPlace opens ciphertext over itself. On failure the sequence number stays, as crypto/hpke's does,
// and the buffer holds nothing of the plaintext (GCM clears it).
func (s *streamAEAD) openInPlace(aad, ciphertext []byte) ([]byte, error) {
	pt, err := s.aead.Open(ciphertext[:0], s.nextNonce(), ciphertext, aad)
	if err != nil {
		return nil, err
	}
	s.seq++
	return pt, nil
}

// contextAEAD takes the AEAD and base nonce of a fresh hpke.Sender or hpke.Recipient (a pointer to a
// struct embedding a pointer to the context), or returns nil if their fields are not as expected.
func contextAEAD(hctx any) *streamAEAD {
	v := reflect.ValueOf(hctx)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct || v.Elem().NumField() != 1 {
		return nil
	}
	c := v.Elem().Field(0)
	if c.Kind() != reflect.Pointer || c.IsNil() || c.Elem().Kind() != reflect.Struct {
		return nil
	}
	c = c.Elem()
	aeadF, nonceF, seqF := c.FieldByName("aead"), c.FieldByName("baseNonce"), c.FieldByName("seqNum")
	if !aeadF.IsValid() || !nonceF.IsValid() || !seqF.IsValid() ||
		aeadF.Type() != reflect.TypeFor[cipher.AEAD]() || nonceF.Type() != reflect.TypeFor[[]byte]() || seqF.Type() != reflect.TypeFor[uint64]() {
		return nil
	}
	read := func(f reflect.Value) any {
		return reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Interface()
	}
	aead, _ := read(aeadF).(cipher.AEAD)
	baseNonce, _ := read(nonceF).([]byte)
	if aead == nil || read(seqF).(uint64) != 0 || aead.NonceSize() < 8 || len(baseNonce) != aead.NonceSize() || aead.Overhead() != Overhead {
		return nil
	}
	return &streamAEAD{aead: aead, baseNonce: bytes.Clone(baseNonce), nonce: make([]byte, aead.NonceSize())}
}

// inPlaceWorks says whether chunks sealed and opened through contextAEAD interoperate with crypto/hpke's
// own Seal and Open, both ways, on a throwaway X25519 key in this suite; checked once per process.
var inPlaceWorks = sync.OnceValue(func() bool {
	sk, err := hpke.DHKEM(ecdh.X25519()).GenerateKey()
	if err != nil {
		return false
	}
	kdf, aead := suite()
	info, aad := []byte("mydata in-place check"), []byte("aad")
	msg := []byte("a chunk sealed in place opens with crypto/hpke, and the other way round")

	// Ours to theirs: two chunks, so the sequence numbers are checked too.
	enc, hs, err := hpke.NewSender(sk.PublicKey(), kdf, aead, info)
	if err != nil {
		return false
	}
	fs := contextAEAD(hs)
	hr, err := hpke.NewRecipient(enc, sk, kdf, aead, info)
	if fs == nil || err != nil {
		return false
	}
	for range 2 {
		ct := fs.sealAppend(nil, aad, msg)
		if pt, err := hr.Open(aad, ct); err != nil || !bytes.Equal(pt, msg) {
			return false
		}
	}

	// Theirs to ours, opened in place.
	enc, hs, err = hpke.NewSender(sk.PublicKey(), kdf, aead, info)
	if err != nil {
		return false
	}
	hr, err = hpke.NewRecipient(enc, sk, kdf, aead, info)
	if err != nil {
		return false
	}
	fr := contextAEAD(hr)
	if fr == nil {
		return false
	}
	for range 2 {
		ct, err := hs.Seal(aad, msg)
		if err != nil {
			return false
		}
		if pt, err := fr.openInPlace(aad, ct); err != nil || !bytes.Equal(pt, msg) {
			return false
		}
	}
	return true
})

// streamOf returns the in-place AEAD of a fresh hpke context, or nil to use the context itself.
func streamOf(hctx any) *streamAEAD {
	if !inPlaceWorks() {
		return nil
	}
	return contextAEAD(hctx)
}
