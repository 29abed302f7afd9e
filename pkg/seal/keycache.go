package seal

import (
	"crypto/hpke"
	"sync"
)

// PublicKeys parses public keys and remembers the last ones: the same few keys (a DP's published key, an
// SP connector's current recipient key) come back on every ticket, and parsing an ML-KEM-768 key expands
// its matrix each time (about 20 µs). The zero value is ready to use.
type PublicKeys struct {
	mu sync.Mutex
	m  map[keyID]hpke.PublicKey
}

type keyID struct {
	kem uint16
	b   string
}

// maxCachedKeys bounds the memory a stream of distinct keys can take: the cache starts over when full.
const maxCachedKeys = 256

// Parse is ParsePublicKey, from the cache when the key was parsed before.
func (c *PublicKeys) Parse(kemID uint16, b []byte) (hpke.PublicKey, error) {
	id := keyID{kemID, string(b)}
	c.mu.Lock()
	pk, ok := c.m[id]
	c.mu.Unlock()
	if ok {
		return pk, nil
	}
	pk, err := ParsePublicKey(kemID, b)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCachedKeys {
		c.m = map[keyID]hpke.PublicKey{}
	}
	c.m[id] = pk
	c.mu.Unlock()
	return pk, nil
}
