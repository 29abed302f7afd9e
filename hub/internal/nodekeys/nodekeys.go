// Package nodekeys holds a hub node's own keys besides its SVID: the key that signs transfer tickets and
// the HPKE key to which service providers seal login hints. Both stay on the node's disk; their public
// halves go into the replicated state and from there into the signed directory.
package nodekeys

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/pemfile"
	"github.com/mydatafed/mydata/pkg/seal"
	"github.com/mydatafed/mydata/pkg/ticket"
)

// Keys are a node's keys.
type Keys struct {
	Node    string
	Tickets *ticket.Signer
	ticket  *ecdsa.PrivateKey
	HPKE    hpke.PrivateKey
	HPKEKID string
	// Session signs citizens' login cookies and consent forms.
	Session []byte
	// When each key was made, as its file's modification time: a key is only ever written when made.
	ticketCreated, hpkeCreated time.Time
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
	hpath := filepath.Join(dir, "hpke.key")
	if k.HPKE, err = seal.LoadOrCreateKey(hpath, seal.KEMHybrid); err != nil {
		return nil, fmt.Errorf("HPKE key: %w", err)
	}
	k.HPKEKID = HPKEKeyID(k.HPKE.PublicKey().Bytes())
	if k.hpkeCreated, err = modTime(hpath); err != nil {
		return nil, fmt.Errorf("HPKE key: %w", err)
	}
	if k.Session, err = loadOrCreateSecret(filepath.Join(dir, "session.key")); err != nil {
		return nil, fmt.Errorf("session key: %w", err)
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

func loadOrCreateSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if len(b) != 32 {
			return nil, fmt.Errorf("%s: want 32 bytes, have %d", path, len(b))
		}
		return b, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	b = make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	return b, pemfile.WriteAtomic(path, b, 0o600)
}

// HPKEKeyID names an HPKE public key.
func HPKEKeyID(pub []byte) string {
	h := sha256.Sum256(pub)
	return base64.RawURLEncoding.EncodeToString(h[:16])
}

// Public is what the node publishes.
func (k *Keys) Public() ([]hubapi.HubKey, error) {
	der, err := x509.MarshalPKIXPublicKey(&k.ticket.PublicKey)
	if err != nil {
		return nil, err
	}
	return []hubapi.HubKey{
		{KID: k.Tickets.KeyID(), Node: k.Node, Kind: hubapi.HubKeyTicket, PublicKey: der, CreatedAt: k.ticketCreated},
		{KID: k.HPKEKID, Node: k.Node, Kind: hubapi.HubKeyHPKE, KEM: k.HPKE.KEM().ID(), PublicKey: k.HPKE.PublicKey().Bytes(), CreatedAt: k.hpkeCreated},
	}, nil
}
