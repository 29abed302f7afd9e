// Package hubapi is the hub's HTTPS API as both sides see it: the request and response bodies, the error
// envelope, strict decoding with size limits, and the client that connectors and the operator CLI use.
package hubapi

import (
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/strictjson"
)

// Paths of the API.
const (
	PathEnroll        = "/v1/enroll"
	PathRenew         = "/v1/renew"
	PathDirectory     = "/v1/directory"
	PathBundle        = "/v1/bundle"
	PathHealth        = "/v1/health"
	PathOrgs          = "/v1/admin/orgs"
	PathConnectors    = "/v1/admin/connectors"
	PathTokens        = "/v1/admin/tokens"
	PathIntermediates = "/v1/admin/intermediates"
	PathCertificates  = "/v1/admin/certificates"
	PathBackup        = "/v1/admin/backup"
	PathKeys          = "/v1/keys"
)

// MaxBody bounds every request body the hub reads.
const MaxBody = 64 << 10

// Error is the body of every non-2xx answer.
type Error struct {
	Status  int    `json:"-"`
	Message string `json:"error"`
	// Description is set by the redemption endpoint, which answers like an OAuth token endpoint (RFC 6749
	// section 5.2): Message is then the error code (invalid_grant, invalid_client, invalid_request) and
	// Description says why.
	Description string `json:"error_description,omitempty"`
	// RetryAfter is the answer's Retry-After header (a lockout's remaining time, say); 0 if it had none.
	RetryAfter time.Duration `json:"-"`
}

func (e *Error) Error() string {
	if e.Description != "" {
		return fmt.Sprintf("hub: %s: %s (HTTP %d)", e.Message, e.Description, e.Status)
	}
	return fmt.Sprintf("hub: %s (HTTP %d)", e.Message, e.Status)
}

// Organisation types, from the kinds of bodies that join the real platform.
var OrgTypes = []string{"central-agency", "local-government", "university", "state-owned-enterprise", "financial-institution", "other"}

// Connector states.
const (
	StatusActive    = "active"
	StatusSuspended = "suspended"
	StatusRevoked   = "revoked"
)

// Connector roles.
const (
	RoleDP = "dp"
	RoleSP = "sp"
)

// Org is an organisation of the federation.
type Org struct {
	Code      string    `json:"code"`
	NameZh    string    `json:"name_zh"`
	NameEn    string    `json:"name_en"`
	Type      string    `json:"type"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
	// ContactEmail is where the hub e-mails the organisation what became of its applications; empty if
	// it has none. The hub checks its form (fsm.ValidContactEmail), as it does an application's.
	ContactEmail string `json:"contact_email,omitempty"`
}

// Validate checks an org as an operator submits it.
func (o Org) Validate() error {
	if err := fedid.ValidName(o.Code); err != nil {
		return fmt.Errorf("code: %w", err)
	}
	if o.NameZh == "" || len(o.NameZh) > 200 {
		return errors.New("name_zh: required, at most 200 bytes")
	}
	if o.NameEn == "" || len(o.NameEn) > 200 {
		return errors.New("name_en: required, at most 200 bytes")
	}
	for _, t := range OrgTypes {
		if o.Type == t {
			return nil
		}
	}
	return fmt.Errorf("type: %q is not one of %v", o.Type, OrgTypes)
}

// Connector is a connector of an organisation.
type Connector struct {
	Org     string   `json:"org"`
	Name    string   `json:"name"`
	Roles   []string `json:"roles"`
	Address string   `json:"address"`
	// TCPAddress is where the connector takes TLS over TCP, for peers whose UDP is blocked; empty if
	// it has none.
	TCPAddress string    `json:"tcp_address,omitempty"`
	Status     string    `json:"status"`
	SPIFFEID   string    `json:"spiffe_id,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	// HPKEKEM and HPKEKey are the connector's published HPKE key: hub-sealed subjects are sealed to it.
	HPKEKEM uint16 `json:"hpke_kem,omitempty"`
	HPKEKey []byte `json:"hpke_key,omitempty"`
	// Down says no hub node has heard from the connector for a while (it holds the directory's
	// long-poll open while it runs): an SP tries a dataset's other connectors first.
	Down bool `json:"down,omitempty"`
}

// ConnectorAddressRequest moves a connector: its QUIC address and TCP address ("" for none).
type ConnectorAddressRequest struct {
	Address    string `json:"address"`
	TCPAddress string `json:"tcp_address"`
}

// KeyRequest publishes a connector's HPKE public key.
type KeyRequest struct {
	KEM       uint16 `json:"kem"`
	PublicKey []byte `json:"public_key"`
}

// HubKey is a public key of a hub node: a ticket signing key or an HPKE key for sealed login hints.
type HubKey struct {
	KID       string    `json:"kid"`
	Node      string    `json:"node"`
	Kind      string    `json:"kind"`
	KEM       uint16    `json:"kem,omitempty"`
	PublicKey []byte    `json:"public_key"`
	CreatedAt time.Time `json:"created_at"`
}

// TicketKey finds the ticket signing key kid among keys: what verifying a ticket offline needs, on a
// connector (from its directory) and on the hub (from its state).
func TicketKey(keys []HubKey, kid string) (*ecdsa.PublicKey, bool) {
	for _, k := range keys {
		if k.KID != kid || k.Kind != HubKeyTicket {
			continue
		}
		pub, err := x509.ParsePKIXPublicKey(k.PublicKey)
		if err != nil {
			return nil, false
		}
		ec, ok := pub.(*ecdsa.PublicKey)
		return ec, ok
	}
	return nil, false
}

// Kinds of hub keys.
const (
	HubKeyTicket = "ticket"
	HubKeyHPKE   = "hpke"
)

// Validate checks a connector as an operator submits it.
func (c Connector) Validate() error {
	if err := fedid.ValidName(c.Org); err != nil {
		return fmt.Errorf("org: %w", err)
	}
	if err := fedid.ValidName(c.Name); err != nil {
		return fmt.Errorf("name: %w", err)
	}
	if len(c.Roles) == 0 || len(c.Roles) > 2 {
		return errors.New("roles: give dp, sp or both")
	}
	seen := map[string]bool{}
	for _, r := range c.Roles {
		if r != RoleDP && r != RoleSP || seen[r] {
			return fmt.Errorf("roles: %q is not dp or sp, or is repeated", r)
		}
		seen[r] = true
	}
	if err := ValidAddress(c.Address); err != nil {
		return fmt.Errorf("address: %w", err)
	}
	if c.TCPAddress != "" {
		if err := ValidAddress(c.TCPAddress); err != nil {
			return fmt.Errorf("tcp_address: %w", err)
		}
	}
	return nil
}

// ValidAddress checks a QUIC or TCP address host:port.
func ValidAddress(a string) error {
	if len(a) == 0 || len(a) > 255 {
		return errors.New("want host:port")
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" || port == "" {
		return errors.New("want host:port")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: the port %q is not a number from 1 to 65535", a, port)
	}
	return nil
}

// ConnectorStatusRequest changes a connector's status.
type ConnectorStatusRequest struct {
	Status string `json:"status"`
}

// TokenRequest asks for a join token.
type TokenRequest struct {
	Org        string `json:"org"`
	Connector  string `json:"connector"`
	TTLSeconds int64  `json:"ttl_seconds,omitempty"`
}

// TokenResponse carries the token; it is shown once and kept by the hub only as a hash.
type TokenResponse struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// EnrollRequest is what a connector sends with its join token.
type EnrollRequest struct {
	Token     string `json:"token"`
	Org       string `json:"org"`
	Connector string `json:"connector"`
	// CSR is DER; it must ask for the connector's SPIFFE ID only.
	CSR []byte `json:"csr"`
}

// RenewRequest is what an enrolled connector sends over mTLS to renew its SVID.
type RenewRequest struct {
	CSR []byte `json:"csr"`
}

// SVIDResponse answers enroll and renew: the SVID chain and the trust bundle, DER each.
type SVIDResponse struct {
	SPIFFEID    string   `json:"spiffe_id"`
	Chain       [][]byte `json:"chain"`
	Bundle      [][]byte `json:"bundle"`
	TrustDomain string   `json:"trust_domain"`
}

// IntermediateRequest asks for an intermediate CA for an agency's SPIRE server.
type IntermediateRequest struct {
	// Org is the organisation whose connectors the CA may issue SVIDs for.
	Org string `json:"org"`
	// PublicKey is a PKIX DER public key.
	PublicKey  []byte `json:"public_key"`
	TTLSeconds int64  `json:"ttl_seconds,omitempty"`
}

// IntermediateResponse carries the intermediate CA and the root, DER each.
type IntermediateResponse struct {
	Certificate []byte   `json:"certificate"`
	Bundle      [][]byte `json:"bundle"`
}

// Certificate is the record of an issued certificate.
type Certificate struct {
	Serial    string    `json:"serial"`
	SPIFFEID  string    `json:"spiffe_id"`
	Kind      string    `json:"kind"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
}

// Health is the hub's view of itself.
type Health struct {
	Node      string `json:"node"`
	RaftState string `json:"raft_state"`
	Leader    string `json:"leader"`
}

// Decode reads one JSON value of at most max bytes from r into v, refusing unknown fields and trailing data.
func Decode(r io.Reader, max int64, v any) error { return strictjson.Decode(r, max, v) }

// DecodeBytes is Decode on a byte slice.
func DecodeBytes(data []byte, max int64, v any) error { return strictjson.Unmarshal(data, max, v) }
