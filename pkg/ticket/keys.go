package ticket

import "crypto/ecdsa"

// Keys is a KeySet held in a map.
type Keys map[string]*ecdsa.PublicKey

// TicketKey implements KeySet.
func (k Keys) TicketKey(kid string) (*ecdsa.PublicKey, bool) {
	p, ok := k[kid]
	return p, ok
}
