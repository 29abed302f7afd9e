package api

import "github.com/mydatafed/mydata/hub/internal/fsm"

// parties is what a receipt check needs of a consent, its service and datasets, which never change once
// the consent is recorded. Every transfer brings two receipts for a consent redeemed a moment before, and
// reading the whole consent from SQLite for each was a tenth of the hub's receipt work, so the server
// remembers them (Server.parties), from the redemption on.
type parties struct {
	service  string
	datasets []string
}

// maxRememberedConsents bounds that memory; receipts come within seconds of their redemption.
const maxRememberedConsents = 8192

func (s *Server) rememberParties(k *fsm.Consent) {
	s.parties.Put(k.ID, parties{service: k.Service, datasets: k.Datasets})
}

// partiesOf returns a consent's service and datasets, from memory when it can; ok is false when there is
// no such consent.
func (s *Server) partiesOf(id string) (p parties, ok bool, err error) {
	if p, ok := s.parties.Get(id); ok {
		return p, true, nil
	}
	k, err := s.cfg.State.Consent(id)
	if err != nil || k == nil {
		return parties{}, false, err
	}
	s.rememberParties(k)
	return parties{service: k.Service, datasets: k.Datasets}, true, nil
}
