package seal

import (
	"bytes"
	"testing"
)

func TestPublicKeysCache(t *testing.T) {
	c := NewPublicKeys()
	sk, err := GenerateKey(KEMHybrid)
	if err != nil {
		t.Fatal(err)
	}
	pub := sk.PublicKey().Bytes()
	a, err := c.Parse(KEMHybrid, pub)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Parse(KEMHybrid, pub)
	if err != nil || a != b {
		t.Fatalf("second parse: %v, same key %v", err, a == b)
	}
	if !bytes.Equal(b.Bytes(), pub) {
		t.Fatal("cached key differs from the one parsed")
	}
	// A bad key is refused every time and never cached.
	for range 2 {
		if _, err := c.Parse(KEMHybrid, pub[:100]); err == nil {
			t.Fatal("a truncated key parsed")
		}
	}
	// The same bytes under another KEM are another key.
	if _, err := c.Parse(KEMX25519, pub); err == nil {
		t.Fatal("hybrid key bytes parsed as an X25519 key")
	}
	// Full: the cache starts over rather than growing.
	for range maxCachedKeys + 1 {
		k, _ := GenerateKey(KEMX25519)
		if _, err := c.Parse(KEMX25519, k.PublicKey().Bytes()); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.m.Len(); n > maxCachedKeys {
		t.Fatalf("%d keys cached, at most %d", n, maxCachedKeys)
	}
}
