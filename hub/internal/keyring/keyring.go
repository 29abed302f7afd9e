// Package keyring is the hub cluster's shared secrets: the keys that sign citizens' sessions and consent
// pages, open login hints, seal national IDs and key their lookup hashes. Every node holds the same ones
// (a citizen logged in through one node goes on through another; a hint sealed once opens anywhere). The
// keys live in the replicated state, each sealed under the cluster key-encryption key (KEK), which is a
// file on every node's disk that a joining node receives over mutual TLS and that never enters raft —
// Vault's keyring pattern. Rotation is a raft command; retired keys keep verifying and opening what they
// made until they are purged.
package keyring

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/pkg/pemfile"
	"github.com/mydatafed/mydata/pkg/seal"
)

// KEKSize is the size of the cluster key-encryption key (AES-256).
const KEKSize = 32

// LoadKEK reads the cluster key-encryption key.
func LoadKEK(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cluster key: %w", err)
	}
	if len(b) != KEKSize {
		return nil, fmt.Errorf("cluster key: %s holds %d bytes, want %d", path, len(b), KEKSize)
	}
	return b, nil
}

// LoadOrCreateKEK reads the key at path, or makes one (mode 0600) if there is none: what the first node of
// a cluster does. created says which happened.
func LoadOrCreateKEK(path string) (kek []byte, created bool, err error) {
	kek, err = LoadKEK(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return kek, false, err
	}
	kek = make([]byte, KEKSize)
	_, _ = rand.Read(kek)
	if err := WriteKEK(path, kek); err != nil {
		return nil, false, err
	}
	return kek, true, nil
}

// WriteKEK keeps a key received at join.
func WriteKEK(path string, kek []byte) error {
	if len(kek) != KEKSize {
		return fmt.Errorf("cluster key: %d bytes, want %d", len(kek), KEKSize)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return pemfile.WriteAtomic(path, kek, 0o600)
}

// State is what the keyring reads from the replicated state.
type State interface {
	Keyring() ([]fsm.KeyringKey, error)
	KeyringVersion() uint64
}

// Keyring gives the hub's shared keys, decrypted from the state on demand.
type Keyring struct {
	aead  cipher.AEAD
	state State
	now   func() time.Time

	mu      sync.Mutex
	loaded  bool
	version uint64
	keys    map[string]*key // by id
	active  map[string]*key // by purpose
	lookups []*key          // every lookup key, newest first
}

type key struct {
	fsm.KeyringKey
	material []byte
	hint     hpke.PrivateKey
	aead     cipher.AEAD
}

// New makes a keyring over the state with the cluster key.
func New(kek []byte, state State) (*Keyring, error) {
	aead, err := newAEAD(kek)
	if err != nil {
		return nil, err
	}
	return &Keyring{aead: aead, state: state, now: time.Now}, nil
}

func newAEAD(k []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// sealMaterial seals key material under the KEK, bound to the key's id and purpose.
func (k *Keyring) sealMaterial(id, purpose string, material []byte) []byte {
	nonce := make([]byte, k.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return k.aead.Seal(nonce, nonce, material, []byte(id+"\x00"+purpose))
}

func (k *Keyring) openMaterial(id, purpose string, sealed []byte) ([]byte, error) {
	n := k.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("sealed key too short")
	}
	return k.aead.Open(nil, sealed[:n], sealed[n:], []byte(id+"\x00"+purpose))
}

// NewKey makes a fresh key for purpose, sealed and ready to propose as a KeyringAdd.
func (k *Keyring) NewKey(purpose string) (*fsm.KeyringAdd, error) {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	id := purpose[:1] + "-" + base64.RawURLEncoding.EncodeToString(b)
	rec := fsm.KeyringKey{ID: id, Purpose: purpose, CreatedAt: k.now().UTC().Truncate(time.Millisecond)}
	var material []byte
	switch purpose {
	case fsm.PurposeHint:
		sk, err := seal.GenerateKey(seal.KEMHybrid)
		if err != nil {
			return nil, err
		}
		if material, err = sk.Bytes(); err != nil {
			return nil, err
		}
		rec.Public, rec.KEM = sk.PublicKey().Bytes(), seal.KEMHybrid
	case fsm.PurposeSession, fsm.PurposeSubject, fsm.PurposeLookup:
		material = make([]byte, 32)
		_, _ = rand.Read(material)
	default:
		return nil, fmt.Errorf("keyring: unknown purpose %q", purpose)
	}
	rec.Sealed = k.sealMaterial(id, purpose, material)
	return &fsm.KeyringAdd{Key: rec}, nil
}

// load decrypts the keyring when the state's copy changed.
func (k *Keyring) load() error {
	v := k.state.KeyringVersion()
	if k.loaded && v == k.version {
		return nil
	}
	recs, err := k.state.Keyring()
	if err != nil {
		return err
	}
	keys, active := map[string]*key{}, map[string]*key{}
	var lookups []*key
	for _, r := range recs {
		m, err := k.openMaterial(r.ID, r.Purpose, r.Sealed)
		if err != nil {
			return fmt.Errorf("keyring key %s cannot be opened with this node's cluster key: %w", r.ID, err)
		}
		kk := &key{KeyringKey: r, material: m}
		switch r.Purpose {
		case fsm.PurposeHint:
			if kk.hint, err = seal.ParsePrivateKey(r.KEM, m); err != nil {
				return fmt.Errorf("keyring key %s: %w", r.ID, err)
			}
		case fsm.PurposeSubject:
			if kk.aead, err = newAEAD(m); err != nil {
				return err
			}
		case fsm.PurposeLookup:
			lookups = append([]*key{kk}, lookups...)
		}
		keys[r.ID] = kk
		if r.RetiredAt.IsZero() {
			active[r.Purpose] = kk
		}
	}
	k.keys, k.active, k.lookups, k.version, k.loaded = keys, active, lookups, v, true
	return nil
}

// ErrNoKey is returned until the leader has made the cluster's first keys.
var ErrNoKey = errors.New("keyring: no active key yet")

func (k *Keyring) activeKey(purpose string) (*key, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.load(); err != nil {
		return nil, err
	}
	a := k.active[purpose]
	if a == nil {
		return nil, fmt.Errorf("%w for %s", ErrNoKey, purpose)
	}
	return a, nil
}

func (k *Keyring) byID(id, purpose string) *key {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.load() != nil {
		return nil
	}
	kk := k.keys[id]
	if kk == nil || kk.Purpose != purpose {
		return nil
	}
	return kk
}

// Missing lists the purposes that have no active key.
func (k *Keyring) Missing() ([]string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.load(); err != nil {
		return nil, err
	}
	var out []string
	for _, p := range fsm.KeyringPurposes {
		if k.active[p] == nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// ActiveAges gives the age of each purpose's active key.
func (k *Keyring) ActiveAges() map[string]time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := map[string]time.Duration{}
	if k.load() != nil {
		return out
	}
	for p, a := range k.active {
		out[p] = k.now().Sub(a.CreatedAt)
	}
	return out
}

func mac(key []byte, parts []string) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return m.Sum(nil)
}

// Sign makes a MAC over parts with the active session key: "<key id>.<base64url tag>".
func (k *Keyring) Sign(parts ...string) (string, error) {
	a, err := k.activeKey(fsm.PurposeSession)
	if err != nil {
		return "", err
	}
	return a.ID + "." + base64.RawURLEncoding.EncodeToString(mac(a.material, parts)), nil
}

// Verify checks a tag made by Sign on any node, with the active or a retired session key.
func (k *Keyring) Verify(tag string, parts ...string) bool {
	id, t, ok := strings.Cut(tag, ".")
	if !ok {
		return false
	}
	got, err := base64.RawURLEncoding.DecodeString(t)
	if err != nil {
		return false
	}
	kk := k.byID(id, fsm.PurposeSession)
	return kk != nil && hmac.Equal(got, mac(kk.material, parts))
}

// HintKey is the private hint key with the id a login hint names; nil if there is none.
func (k *Keyring) HintKey(id string) hpke.PrivateKey {
	kk := k.byID(id, fsm.PurposeHint)
	if kk == nil {
		return nil
	}
	return kk.hint
}

// LookupHash is the keyed hash of a national ID under the active lookup key: what the state stores and
// searches by instead of the ID.
func (k *Keyring) LookupHash(id string) (string, error) {
	a, err := k.activeKey(fsm.PurposeLookup)
	if err != nil {
		return "", err
	}
	return a.ID + ":" + hex.EncodeToString(mac(a.material, []string{"national-id", id})), nil
}

// LookupHashes are the hashes of a national ID under every lookup key, newest first: a search for a
// citizen's records finds those stored under an earlier key too.
func (k *Keyring) LookupHashes(id string) ([]string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.load(); err != nil {
		return nil, err
	}
	if len(k.lookups) == 0 {
		return nil, fmt.Errorf("%w for %s", ErrNoKey, fsm.PurposeLookup)
	}
	out := make([]string, 0, len(k.lookups))
	for _, l := range k.lookups {
		out = append(out, l.ID+":"+hex.EncodeToString(mac(l.material, []string{"national-id", id})))
	}
	return out, nil
}

// SealSubject seals a national ID under the active subject key, bound to context (a consent id).
func (k *Keyring) SealSubject(id, context string) ([]byte, error) {
	a, err := k.activeKey(fsm.PurposeSubject)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, a.aead.NonceSize())
	_, _ = rand.Read(nonce)
	out := append([]byte(a.ID+"."), nonce...)
	return a.aead.Seal(out, nonce, []byte(id), []byte(context)), nil
}

// OpenSubject opens what SealSubject sealed, with the key it names.
func (k *Keyring) OpenSubject(sealed []byte, context string) (string, error) {
	id, rest, ok := strings.Cut(string(sealed), ".")
	if !ok {
		return "", errors.New("sealed subject: no key id")
	}
	kk := k.byID(id, fsm.PurposeSubject)
	if kk == nil {
		return "", fmt.Errorf("sealed subject: key %s is not in the keyring (purged?)", id)
	}
	b := []byte(rest)
	n := kk.aead.NonceSize()
	if len(b) < n {
		return "", errors.New("sealed subject: too short")
	}
	pt, err := kk.aead.Open(nil, b[:n], b[n:], []byte(context))
	if err != nil {
		return "", errors.New("sealed subject: cannot be opened")
	}
	return string(pt), nil
}

// Ensure proposes a first key for every purpose that has none; the leader runs it.
func (k *Keyring) Ensure(apply func(fsm.Command) error) error {
	missing, err := k.Missing()
	if err != nil {
		return err
	}
	for _, p := range missing {
		cmd, err := k.NewKey(p)
		if err != nil {
			return err
		}
		if err := apply(cmd); err != nil {
			return fmt.Errorf("keyring: add a %s key: %w", p, err)
		}
	}
	return nil
}

// Rotate proposes a new active key for purpose; the previous one is retired.
func (k *Keyring) Rotate(purpose string, apply func(fsm.Command) error) (string, error) {
	cmd, err := k.NewKey(purpose)
	if err != nil {
		return "", err
	}
	if err := apply(cmd); err != nil {
		return "", err
	}
	return cmd.Key.ID, nil
}

// Upkeep makes the missing keys now and then purges retired keys older than keep: the leader runs it.
func (k *Keyring) Upkeep(ctx context.Context, keep time.Duration, apply func(fsm.Command) error, warn func(error)) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	lastPurge := time.Time{}
	for {
		if err := k.Ensure(apply); err != nil {
			warn(err)
		} else if time.Since(lastPurge) > time.Hour {
			if err := apply(&fsm.KeyringPurge{Before: k.now().Add(-keep)}); err != nil {
				warn(err)
			} else {
				lastPurge = time.Now()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
