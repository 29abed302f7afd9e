package seal

import (
	"crypto/hpke"

	"github.com/mydatafed/mydata/pkg/memo"
)

// PublicKeys parses public keys and remembers the last ones: the same few keys (a DP's published key, an
// SP connector's current recipient key) come back on every ticket, and parsing an ML-KEM-768 key expands
// its matrix each time (about 20 µs). Make one with NewPublicKeys.
type PublicKeys struct {
	m memo.Map[keyID, hpke.PublicKey]
}

type keyID struct {
	kem uint16
	b   string
}

// maxCachedKeys bounds the memory a stream of distinct keys can take.
const maxCachedKeys = 256

// NewPublicKeys makes an empty cache.
func NewPublicKeys() *PublicKeys {
	return &PublicKeys{m: memo.Map[keyID, hpke.PublicKey]{Max: maxCachedKeys}}
}

// Parse is ParsePublicKey, from the cache when the key was parsed before.
func (c *PublicKeys) Parse(kemID uint16, b []byte) (hpke.PublicKey, error) {
	id := keyID{kemID, string(b)}
	if pk, ok := c.m.Get(id); ok {
		return pk, nil
	}
	pk, err := ParsePublicKey(kemID, b)
	if err != nil {
		return nil, err
	}
	c.m.Put(id, pk)
	return pk, nil
}
