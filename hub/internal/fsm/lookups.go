package fsm

import (
	"sync"
	"sync/atomic"
)

// lookups caches the registry and catalogue rows that every authorization, consent page, redemption and
// receipt reads: a service, its datasets, organisations, connectors. They change only by operator and
// enrollment commands, while reading them from SQLite each time (a parse, a query, JSON) was a tenth of
// the hub's CPU in small exchanges. Any command other than a consent or receipt one starts a new
// generation, which empties the cache.
type lookups struct {
	gen atomic.Uint64
	mu  sync.Mutex
	at  uint64 // the generation m holds
	m   map[string]any
}

// get returns the cached value of key, if any, and the generation to store a fresh one under.
func (l *lookups) get(key string) (v any, ok bool, gen uint64) {
	gen = l.gen.Load()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.at != gen {
		return nil, false, gen
	}
	v, ok = l.m[key]
	return v, ok, gen
}

// put stores v as key's value read in generation gen; a value read before a newer generation started is
// dropped, since the row may have changed since.
func (l *lookups) put(key string, gen uint64, v any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if gen != l.gen.Load() {
		return
	}
	if l.at != gen || l.m == nil {
		l.m, l.at = map[string]any{}, gen
	}
	l.m[key] = v
}

// invalidate starts a new generation; call it after committing a change to what is cached.
func (l *lookups) invalidate() { l.gen.Add(1) }

// cached returns fetch's answer for key, from the cache when it holds one. T is a pointer to a row the
// callers may modify, so the cache hands out copies.
func cached[T any](l *lookups, key string, fetch func() (*T, error)) (*T, error) {
	v, ok, gen := l.get(key)
	if ok {
		if v == nil {
			return nil, nil
		}
		c := *v.(*T)
		return &c, nil
	}
	row, err := fetch()
	if err != nil {
		return nil, err
	}
	if row == nil {
		l.put(key, gen, nil)
		return nil, nil
	}
	c := *row
	l.put(key, gen, &c)
	return row, nil
}
