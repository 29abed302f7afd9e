package counter

import (
	"context"
	"sync"
	"time"

	"github.com/mydatafed/mydata/connector/internal/exchange"
	"github.com/mydatafed/mydata/pkg/hubapi"
)

// held is what one terminal shows: one redeemed code and its datasets, in memory only.
type held struct {
	ex *exchange.Exchange
	// cancel stops fetches of datasets that were pending when the page first showed.
	cancel   context.CancelFunc
	service  string
	masked   string
	agent    *hubapi.CounterAgent
	checked  bool // staff ticked "I checked the agent's ID card"
	redeemed time.Time
	expires  time.Time
}

// store holds each terminal's data, by session id, until Done, logout or its TTL. Purging overwrites the
// content and drops every reference the store has.
type store struct {
	mu        sync.Mutex
	bySession map[string]*held
}

func newStore() *store { return &store{bySession: map[string]*held{}} }

func (s *store) put(sid string, h *held) {
	s.mu.Lock()
	old := s.bySession[sid]
	s.bySession[sid] = h
	s.mu.Unlock()
	if old != nil {
		old.purge()
	}
}

// get copies a terminal's record, so that the caller reads it without the lock.
func (s *store) get(sid string) (held, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.bySession[sid]
	if !ok {
		return held{}, false
	}
	return *h, true
}

// confirmAgent records that staff checked the agent's ID card.
func (s *store) confirmAgent(sid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.bySession[sid]
	if ok {
		h.checked = true
	}
	return ok
}

// purge drops a terminal's data, overwriting it.
func (s *store) purge(sid string) bool {
	s.mu.Lock()
	h, ok := s.bySession[sid]
	delete(s.bySession, sid)
	s.mu.Unlock()
	if ok {
		h.purge()
	}
	return ok
}

// purgeExpired drops the data of every terminal past its TTL and says how many.
func (s *store) purgeExpired(now time.Time) int {
	var old []*held
	s.mu.Lock()
	for sid, h := range s.bySession {
		if !now.Before(h.expires) {
			old = append(old, h)
			delete(s.bySession, sid)
		}
	}
	s.mu.Unlock()
	for _, h := range old {
		h.purge()
	}
	return len(old)
}

// purgeAll drops everything, at shutdown.
func (s *store) purgeAll() {
	s.mu.Lock()
	all := s.bySession
	s.bySession = map[string]*held{}
	s.mu.Unlock()
	for _, h := range all {
		h.purge()
	}
}

// count and heldBytes are what the metrics show: terminals with data, and the bytes of content held.
func (s *store) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.bySession)
}

func (s *store) heldBytes() int64 {
	s.mu.Lock()
	hs := make([]*held, 0, len(s.bySession))
	for _, h := range s.bySession {
		hs = append(hs, h)
	}
	s.mu.Unlock()
	var n int64
	for _, h := range hs {
		n += h.ex.HeldBytes()
	}
	return n
}

func (h *held) purge() {
	if h.cancel != nil {
		h.cancel()
	}
	h.ex.Purge()
}
