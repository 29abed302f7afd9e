// Package fedid is the federation's SPIFFE ID scheme: which paths name hub nodes, operators and connectors,
// and what names may appear in them.
package fedid

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Kind says what sort of workload an ID names.
type Kind int

// The workloads of a federation.
const (
	KindUnknown Kind = iota
	KindHub
	KindOperator
	KindConnector
)

func (k Kind) String() string {
	switch k {
	case KindHub:
		return "hub"
	case KindOperator:
		return "operator"
	case KindConnector:
		return "connector"
	}
	return "unknown"
}

// Parsed is an ID taken apart.
type Parsed struct {
	Kind Kind
	// Org is set for connectors only.
	Org string
	// Name is the hub node, operator or connector name.
	Name string
}

// ErrName is returned for a name that may not appear in an ID.
var ErrName = errors.New("names are 1 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit")

// ValidName reports whether s may be an organisation, connector, operator or node name. The rule is narrower
// than SPIFFE's path rule so that a name is also safe as a file name, a metric label and a DNS label.
func ValidName(s string) error {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' {
		return ErrName
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return ErrName
		}
	}
	return nil
}

func build(td spiffeid.TrustDomain, segments ...string) (spiffeid.ID, error) {
	for _, s := range segments {
		if err := ValidName(s); err != nil {
			return spiffeid.ID{}, fmt.Errorf("%q: %w", s, err)
		}
	}
	return spiffeid.FromSegments(td, segments...)
}

// Connector is spiffe://<td>/org/<org>/connector/<name>.
func Connector(td spiffeid.TrustDomain, org, name string) (spiffeid.ID, error) {
	if err := ValidName(org); err != nil {
		return spiffeid.ID{}, fmt.Errorf("organisation %q: %w", org, err)
	}
	if err := ValidName(name); err != nil {
		return spiffeid.ID{}, fmt.Errorf("connector %q: %w", name, err)
	}
	return spiffeid.FromSegments(td, "org", org, "connector", name)
}

// Hub is spiffe://<td>/hub/<node>.
func Hub(td spiffeid.TrustDomain, node string) (spiffeid.ID, error) {
	return build(td, "hub", node)
}

// Operator is spiffe://<td>/operator/<name>.
func Operator(td spiffeid.TrustDomain, name string) (spiffeid.ID, error) {
	return build(td, "operator", name)
}

// Parse says what an ID of the federation names. IDs outside the scheme are an error.
func Parse(id spiffeid.ID) (Parsed, error) {
	segs := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	bad := fmt.Errorf("%s is not a federation ID (want /hub/<node>, /operator/<name> or /org/<org>/connector/<name>)", id)
	switch {
	case len(segs) == 2 && segs[0] == "hub":
		if ValidName(segs[1]) != nil {
			return Parsed{}, bad
		}
		return Parsed{Kind: KindHub, Name: segs[1]}, nil
	case len(segs) == 2 && segs[0] == "operator":
		if ValidName(segs[1]) != nil {
			return Parsed{}, bad
		}
		return Parsed{Kind: KindOperator, Name: segs[1]}, nil
	case len(segs) == 4 && segs[0] == "org" && segs[2] == "connector":
		if ValidName(segs[1]) != nil || ValidName(segs[3]) != nil {
			return Parsed{}, bad
		}
		return Parsed{Kind: KindConnector, Org: segs[1], Name: segs[3]}, nil
	}
	return Parsed{}, bad
}

// MatchKind is a spiffeid.Matcher that accepts IDs of one kind in one trust domain.
func MatchKind(td spiffeid.TrustDomain, k Kind) spiffeid.Matcher {
	return func(id spiffeid.ID) error {
		if id.TrustDomain() != td {
			return fmt.Errorf("%s is not in trust domain %s", id, td)
		}
		p, err := Parse(id)
		if err != nil {
			return err
		}
		if p.Kind != k {
			return fmt.Errorf("%s is a %s, want a %s", id, p.Kind, k)
		}
		return nil
	}
}
