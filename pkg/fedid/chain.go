package fedid

import (
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// OrgCAURI is the URI SAN of an intermediate CA the hub issues to one organisation (for its SPIRE server):
// spiffe://<td>/org/<org>. CheckChain holds every SVID under such a CA to that organisation.
func OrgCAURI(td spiffeid.TrustDomain, org string) (spiffeid.ID, error) { return build(td, "org", org) }

// CheckChain enforces where an ID may come from in the chain that verified it. X.509 name constraints
// cannot limit URI paths, so this is where an agency's intermediate CA is kept to its own organisation:
//   - hub nodes and operators only directly under the root (only the hub's own CA issues them);
//   - a connector directly under the root, or under an intermediate whose certificate directly under the
//     root names the connector's organisation with OrgCAURI.
//
// It passes if any of the verified chains passes.
func CheckChain(td spiffeid.TrustDomain, id spiffeid.ID, chains [][]*x509.Certificate) error {
	if len(chains) == 0 {
		return errors.New("no verified chain")
	}
	p, err := Parse(id)
	if err != nil {
		return err
	}
	var last error
	for _, chain := range chains {
		if last = checkOne(td, p, chain); last == nil {
			return nil
		}
	}
	return fmt.Errorf("%s: %w", id, last)
}

func checkOne(td spiffeid.TrustDomain, p Parsed, chain []*x509.Certificate) error {
	if len(chain) < 2 {
		return errors.New("chain too short")
	}
	if len(chain) == 2 {
		return nil // issued by the root itself
	}
	if p.Kind != KindConnector {
		return fmt.Errorf("a %s SVID must be issued by the federation root itself, not an intermediate", p.Kind)
	}
	top := chain[len(chain)-2]
	want, err := OrgCAURI(td, p.Org)
	if err != nil {
		return err
	}
	if len(top.URIs) != 1 || top.URIs[0].String() != want.String() {
		return fmt.Errorf("issued under an intermediate CA that is not bound to organisation %s (want URI %s)", p.Org, want)
	}
	return nil
}

// Authorizer authorises peers of one kind (any federation ID for KindUnknown) in td, from an allowed place
// in the chain, and then by check if it is not nil.
func Authorizer(td spiffeid.TrustDomain, k Kind, check func(spiffeid.ID) error) tlsconfig.Authorizer {
	return func(id spiffeid.ID, chains [][]*x509.Certificate) error {
		if id.TrustDomain() != td {
			return fmt.Errorf("%s is not in trust domain %s", id, td)
		}
		if k != KindUnknown {
			if err := MatchKind(td, k)(id); err != nil {
				return err
			}
		}
		if err := CheckChain(td, id, chains); err != nil {
			return err
		}
		if check != nil {
			return check(id)
		}
		return nil
	}
}
