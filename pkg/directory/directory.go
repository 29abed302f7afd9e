// Package directory is the hub's signed list of the federation's connectors, their addresses and status,
// and the trust bundle. Connectors keep a copy on disk and authorise peers from it, so it must be
// verifiable offline: it is signed with a hub node's SVID and carries a version and an expiry.
package directory

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// MaxSize bounds a signed directory; a federation of some thousand connectors fits many times over.
const MaxSize = 4 << 20

// Document is the directory's content.
type Document struct {
	Version     uint64             `json:"version"`
	TrustDomain string             `json:"trust_domain"`
	IssuedAt    time.Time          `json:"issued_at"`
	ExpiresAt   time.Time          `json:"expires_at"`
	Bundle      [][]byte           `json:"bundle"`
	Connectors  []hubapi.Connector `json:"connectors"`
	// HubKeys are the hub nodes' ticket signing keys and HPKE keys. Connectors verify tickets offline
	// against them.
	HubKeys []hubapi.HubKey `json:"hub_keys"`
	// Withdrawn are the services and datasets suspended or terminated: a DP refuses their tickets, even
	// one the hub signed before the change took effect.
	Withdrawn []Withdrawn `json:"withdrawn,omitempty"`
}

// Withdrawn is a service or dataset that may not be served.
type Withdrawn struct {
	On     string `json:"on"` // service or dataset
	ID     string `json:"id"`
	Status string `json:"status"`
}

// WithdrawnStatus is the status of a withdrawn service or dataset; "" if it is not withdrawn.
func (d *Document) WithdrawnStatus(on, id string) string {
	for _, w := range d.Withdrawn {
		if w.On == on && w.ID == id {
			return w.Status
		}
	}
	return ""
}

// Signed is the directory as it travels and rests: the payload as signed, the signature and the signer's
// certificate chain.
type Signed struct {
	Payload   []byte   `json:"payload"`
	Signature []byte   `json:"signature"`
	Chain     [][]byte `json:"chain"`
}

// Sign signs doc with a hub node's SVID.
func Sign(doc *Document, svid *x509svid.SVID) (*Signed, error) {
	payload, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	digest := sha256.Sum256(payload)
	sig, err := svid.PrivateKey.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("sign directory: %w", err)
	}
	chain := make([][]byte, len(svid.Certificates))
	for i, c := range svid.Certificates {
		chain[i] = c.Raw
	}
	return &Signed{Payload: payload, Signature: sig, Chain: chain}, nil
}

// ErrExpired is returned with the document when the signature is good but the directory has expired.
var ErrExpired = errors.New("directory has expired")

// Verify checks that a hub node of td signed the directory and returns its content. The signer's chain is
// checked at the time the directory was issued, so a copy kept on disk stays verifiable after the signing
// SVID rotates; the directory's own expiry bounds its life. An expired directory is returned with
// ErrExpired.
func (s *Signed) Verify(bundles x509bundle.Source, td spiffeid.TrustDomain, now time.Time) (*Document, error) {
	var doc Document
	if err := hubapi.DecodeBytes(s.Payload, MaxSize, &doc); err != nil {
		return nil, fmt.Errorf("directory payload: %w", err)
	}
	id, chains, err := x509svid.ParseAndVerify(s.Chain, bundles, x509svid.WithTime(doc.IssuedAt))
	if err != nil {
		return nil, fmt.Errorf("directory signer: %w", err)
	}
	if err := fedid.Authorizer(td, fedid.KindHub, nil)(id, chains); err != nil {
		return nil, fmt.Errorf("directory signer: %w", err)
	}
	pub, ok := chains[0][0].PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("directory signer key is not ECDSA")
	}
	digest := sha256.Sum256(s.Payload)
	if !ecdsa.VerifyASN1(pub, digest[:], s.Signature) {
		return nil, errors.New("directory signature does not verify")
	}
	if doc.TrustDomain != td.Name() {
		return nil, fmt.Errorf("directory is for trust domain %q, not %q", doc.TrustDomain, td.Name())
	}
	if !now.Before(doc.ExpiresAt) {
		return &doc, fmt.Errorf("%w at %s", ErrExpired, doc.ExpiresAt.Format(time.RFC3339))
	}
	return &doc, nil
}

// Parse decodes a signed directory as received or read from disk, before verification.
func Parse(data []byte) (*Signed, error) {
	var s Signed
	if err := hubapi.DecodeBytes(data, MaxSize*2, &s); err != nil {
		return nil, fmt.Errorf("signed directory: %w", err)
	}
	if len(s.Payload) == 0 || len(s.Signature) == 0 || len(s.Chain) == 0 {
		return nil, errors.New("signed directory: payload, signature and chain are required")
	}
	return &s, nil
}

// BundleCerts parses the document's trust bundle.
func (d *Document) BundleCerts() ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for _, der := range d.Bundle {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("directory bundle: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("directory bundle is empty")
	}
	return certs, nil
}

// Lookup finds a connector by SPIFFE ID.
func (d *Document) Lookup(id spiffeid.ID) (hubapi.Connector, bool) {
	p, err := fedid.Parse(id)
	if err != nil || p.Kind != fedid.KindConnector {
		return hubapi.Connector{}, false
	}
	for _, c := range d.Connectors {
		if c.Org == p.Org && c.Name == p.Name {
			return c, true
		}
	}
	return hubapi.Connector{}, false
}
