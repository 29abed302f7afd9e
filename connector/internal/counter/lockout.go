package counter

import (
	"sync"
	"time"
)

// lockout counts failures per key (a staff account's codes, its passwords) and locks the key for a while
// after too many. A success clears the count; a lock ends by itself.
type lockout struct {
	after int
	dur   time.Duration
	now   func() time.Time

	mu    sync.Mutex
	fails map[string]*failures
}

type failures struct {
	n     int
	first time.Time // failures count within dur of the first
	until time.Time
}

func newLockout(after int, dur time.Duration, now func() time.Time) *lockout {
	return &lockout{after: after, dur: dur, now: now, fails: map[string]*failures{}}
}

// locked says until when key is locked, if it is.
func (l *lockout) locked(key string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.fails[key]
	if f == nil || f.until.IsZero() {
		return time.Time{}, false
	}
	if !l.now().Before(f.until) {
		delete(l.fails, key) // the lock has run out: a fresh count
		return time.Time{}, false
	}
	return f.until, true
}

// fail counts a failure; at the limit it locks the key and says until when. left is how many failures
// remain before the lock.
func (l *lockout) fail(key string) (until time.Time, left int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	f := l.fails[key]
	if f == nil || f.until.IsZero() && now.Sub(f.first) >= l.dur {
		f = &failures{first: now}
		l.fails[key] = f
	}
	f.n++
	if f.n >= l.after {
		f.until = now.Add(l.dur)
		return f.until, 0
	}
	return time.Time{}, l.after - f.n
}

// lockUntil locks key until t, as when the hub has locked the terminal: the page then says so, and
// keeps codes from going to the hub only to be refused.
func (l *lockout) lockUntil(key string, t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.fails[key]
	if f == nil {
		f = &failures{first: l.now()}
		l.fails[key] = f
	}
	if t.After(f.until) {
		f.until = t
	}
}

// reset clears key's failures.
func (l *lockout) reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.fails, key)
}

// sweep forgets locks that ran out and counts older than a lock's length, so that the map stays small.
func (l *lockout) sweep() {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for k, f := range l.fails {
		if !f.until.IsZero() && !now.Before(f.until) || f.until.IsZero() && now.Sub(f.first) >= l.dur {
			delete(l.fails, k)
		}
	}
}
