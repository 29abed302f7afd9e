// Package memo remembers values that are costly to compute again and never change for their key (a parsed
// public key, a verified certificate chain, the parties of a recorded consent), within a bound: a stream
// of distinct keys, which a peer may choose, costs at most Max entries, because the map starts over when
// full. Starting over rather than evicting one by one keeps it to a map and a mutex; the entries are cheap
// to compute again.
package memo

import "sync"

// Map is a bounded memo. The zero value is not ready: set Max.
type Map[K comparable, V any] struct {
	Max int

	mu sync.Mutex
	m  map[K]V
}

// Get returns the value remembered for k.
func (c *Map[K, V]) Get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[k]
	return v, ok
}

// Put remembers v for k, starting over first if the memo is full.
func (c *Map[K, V]) Put(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= c.Max {
		c.m = make(map[K]V)
	}
	c.m[k] = v
}

// Len is how many values the memo holds.
func (c *Map[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
