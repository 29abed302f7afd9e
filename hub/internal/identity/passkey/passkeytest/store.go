// Package passkeytest has what tests of the passkey method and of the portal need: an in-memory Store and a
// software authenticator that answers the options the method produces with the JSON the browser script posts.
package passkeytest

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/mydatafed/mydata/hub/internal/identity/passkey"
)

// Store is an in-memory passkey.Store. UpdateCredential compares and sets the counter, as the hub's should.
type Store struct {
	mu    sync.Mutex
	creds []passkey.Credential
}

var _ passkey.Store = (*Store)(nil)

// Credentials implements passkey.Store.
func (s *Store) Credentials(subject string) ([]passkey.Credential, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []passkey.Credential
	for _, c := range s.creds {
		if c.Subject == subject {
			out = append(out, clone(c))
		}
	}
	return out, nil
}

// CredentialByID implements passkey.Store.
func (s *Store) CredentialByID(id []byte) (*passkey.Credential, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := s.find(id); i >= 0 {
		c := clone(s.creds[i])
		return &c, nil
	}
	return nil, nil
}

// AddCredential implements passkey.Store.
func (s *Store) AddCredential(c passkey.Credential) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.find(c.ID) >= 0 {
		return fmt.Errorf("credential exists")
	}
	s.creds = append(s.creds, clone(c))
	return nil
}

// UpdateCredential implements passkey.Store.
func (s *Store) UpdateCredential(id []byte, signCount uint32, backupState bool, usedAt time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.find(id)
	if i < 0 {
		return fmt.Errorf("no such credential")
	}
	c := &s.creds[i]
	if (signCount != 0 || c.SignCount != 0) && signCount <= c.SignCount {
		return passkey.ErrCloned
	}
	c.SignCount, c.BackupState, c.LastUsedAt = signCount, backupState, usedAt
	return nil
}

// RemoveCredential implements passkey.Store.
func (s *Store) RemoveCredential(subject string, id []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.creds = slices.DeleteFunc(s.creds, func(c passkey.Credential) bool {
		return c.Subject == subject && bytes.Equal(c.ID, id)
	})
	return nil
}

func (s *Store) find(id []byte) int {
	return slices.IndexFunc(s.creds, func(c passkey.Credential) bool { return bytes.Equal(c.ID, id) })
}

func clone(c passkey.Credential) passkey.Credential {
	c.ID = bytes.Clone(c.ID)
	c.UserHandle = bytes.Clone(c.UserHandle)
	c.PublicKey = bytes.Clone(c.PublicKey)
	c.AAGUID = bytes.Clone(c.AAGUID)
	c.Transports = slices.Clone(c.Transports)
	return c
}
