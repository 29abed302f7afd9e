package api

import (
	"sync"

	"github.com/mydatafed/mydata/hub/internal/fsm"
)

// consentParties remembers what a receipt check needs of a consent, its service and datasets, which
// never change once the consent is recorded. Every transfer brings two receipts for a consent redeemed a
// moment before; reading the whole consent from SQLite for each was a tenth of the hub's receipt work.
type consentParties struct {
	mu sync.Mutex
	m  map[string]parties
}

type parties struct {
	service  string
	datasets []string
}

// maxRememberedConsents bounds the memory: the map starts over when full (receipts come within seconds
// of the redemption that put a consent here).
const maxRememberedConsents = 8192

func (c *consentParties) remember(k *fsm.Consent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxRememberedConsents {
		c.m = map[string]parties{}
	}
	c.m[k.ID] = parties{service: k.Service, datasets: k.Datasets}
}

func (c *consentParties) lookup(id string) (parties, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.m[id]
	return p, ok
}

// partiesOf returns a consent's service and datasets, from memory when it can; ok is false when there is
// no such consent.
func (s *Server) partiesOf(id string) (p parties, ok bool, err error) {
	if p, ok := s.parties.lookup(id); ok {
		return p, true, nil
	}
	k, err := s.cfg.State.Consent(id)
	if err != nil || k == nil {
		return parties{}, false, err
	}
	s.parties.remember(k)
	return parties{service: k.Service, datasets: k.Datasets}, true, nil
}
