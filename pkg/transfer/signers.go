package transfer

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/binary"
	"time"

	"github.com/mydatafed/mydata/pkg/memo"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Signers remembers DP certificate chains already verified, so that a DP's thousandth delivery does not
// parse and verify the same chain again (a tenth of an SP connector's CPU went to ECDSA in small
// exchanges, half of it on the chain). A chain is trusted from memory for at most signerMemory, and never
// past its leaf's expiry, so a change of trust bundle takes effect within that time. Make one with
// NewSigners; a nil *Signers verifies every chain.
type Signers struct {
	m memo.Map[[32]byte, verifiedChain]
}

type verifiedChain struct {
	id    spiffeid.ID
	key   *ecdsa.PublicKey
	until time.Time
}

const (
	signerMemory   = time.Minute
	maxSignerCache = 1024
)

// NewSigners makes an empty memory of verified chains.
func NewSigners() *Signers {
	return &Signers{m: memo.Map[[32]byte, verifiedChain]{Max: maxSignerCache}}
}

// chainKey identifies a chain by all of its bytes.
func chainKey(chain [][]byte) [32]byte {
	h := sha256.New()
	var n [4]byte
	for _, c := range chain {
		binary.BigEndian.PutUint32(n[:], uint32(len(c)))
		h.Write(n[:])
		h.Write(c)
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func (s *Signers) get(k [32]byte, now time.Time) (verifiedChain, bool) {
	if s == nil {
		return verifiedChain{}, false
	}
	v, ok := s.m.Get(k)
	if !ok || !now.Before(v.until) {
		return verifiedChain{}, false
	}
	return v, true
}

func (s *Signers) put(k [32]byte, v verifiedChain) {
	if s != nil {
		s.m.Put(k, v)
	}
}
