// Package nodekeys holds a hub node's own key besides its SVID: the key that signs transfer tickets. It
// stays on the node's disk and is retired with the node; its public half goes into the replicated state and
// from there into the signed directory. The keys all nodes share (sessions, login hints) are in the
// keyring instead.
package nodekeys

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/pemfile"
	"github.com/mydatafed/mydata/pkg/ticket"
)

// Keys are a node's keys.
type Keys struct {
	Node    string
	Tickets *ticket.Signer
	ticket  *ecdsa.PrivateKey
	// When the key was made, as its file's modification time: a key is only ever written when made.
	ticketCreated time.Time
}

// LoadOrCreate reads the keys kept in dir, making any that are missing (mode 0600).
func LoadOrCreate(dir, node string) (*Keys, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	k := &Keys{Node: node}
	tpath := filepath.Join(dir, "ticket.key")
	signer, err := pemfile.ReadKey(tpath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		pemKey, err := pemfile.EncodeKey(key)
		if err != nil {
			return nil, err
		}
		if err := pemfile.WriteAtomic(tpath, pemKey, 0o600); err != nil {
			return nil, err
		}
		k.ticket = key
	case err != nil:
		return nil, fmt.Errorf("ticket key: %w", err)
	default:
		key, ok := signer.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("ticket key: %s is not an ECDSA key", tpath)
		}
		k.ticket = key
	}
	if k.Tickets, err = ticket.NewSigner(k.ticket); err != nil {
		return nil, fmt.Errorf("ticket key: %s: %w", tpath, err)
	}
	if k.ticketCreated, err = modTime(tpath); err != nil {
		return nil, fmt.Errorf("ticket key: %w", err)
	}
	return k, nil
}

func modTime(path string) (time.Time, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return time.Time{}, err
	}
	return fi.ModTime().UTC(), nil
}

// Public is what the node publishes.
func (k *Keys) Public() ([]hubapi.HubKey, error) {
	der, err := x509.MarshalPKIXPublicKey(&k.ticket.PublicKey)
	if err != nil {
		return nil, err
	}
	return []hubapi.HubKey{
		{KID: k.Tickets.KeyID(), Node: k.Node, Kind: hubapi.HubKeyTicket, PublicKey: der, CreatedAt: k.ticketCreated},
	}, nil
}
