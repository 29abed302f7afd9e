package ca

import (
	"context"
	"crypto/x509"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// NodeSource is an x509svid.Source for a hub node's own SVID, issued by the local CA and renewed at half
// its lifetime. Its chain carries the root, so that a connector enrolling for the first time can find the
// CA it pinned.
type NodeSource struct {
	ca  *CA
	id  spiffeid.ID
	ttl time.Duration

	mu   sync.RWMutex
	svid *x509svid.SVID
}

// NewNodeSource issues the first SVID for id.
func NewNodeSource(c *CA, id spiffeid.ID, ttl time.Duration) (*NodeSource, error) {
	s := &NodeSource{ca: c, id: id, ttl: ttl}
	if err := s.rotate(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *NodeSource) rotate() error {
	certs, key, err := s.ca.Issue(s.id, s.ttl)
	if err != nil {
		return err
	}
	svid := &x509svid.SVID{ID: s.id, Certificates: append(certs, s.ca.root), PrivateKey: key}
	s.mu.Lock()
	s.svid = svid
	s.mu.Unlock()
	return nil
}

// GetX509SVID implements x509svid.Source.
func (s *NodeSource) GetX509SVID() (*x509svid.SVID, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.svid, nil
}

// Leaf is the current SVID's certificate.
func (s *NodeSource) Leaf() *x509.Certificate {
	svid, _ := s.GetX509SVID()
	return svid.Certificates[0]
}

// Run renews the SVID at half its lifetime until ctx ends.
func (s *NodeSource) Run(ctx context.Context) error {
	for {
		leaf := s.Leaf()
		wait := max(time.Until(leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore)/2)), time.Second)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		if err := s.rotate(); err != nil {
			return err
		}
	}
}
