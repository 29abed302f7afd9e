package fsm

import (
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mydatafed/mydata/pkg/hubapi"
)

// Keyring purposes: what a key is for. The material is sealed under the cluster key-encryption key before
// it is proposed, so the log, snapshots and backups never hold it in clear.
const (
	// PurposeSession signs citizens' session cookies, CSRF tokens and consent pages (HMAC-SHA256).
	PurposeSession = "session"
	// PurposeHint opens login hints that SPs seal to the hub (HPKE); its public key is in the directory.
	PurposeHint = "hint"
	// PurposeSubject seals citizens' national IDs for as long as a consent can be redeemed (AES-256-GCM).
	PurposeSubject = "subject"
	// PurposeLookup keys the hash under which national IDs are found (HMAC-SHA256). Rotating it adds a
	// key; lookups try every one, so it is never purged.
	PurposeLookup = "lookup"
)

// KeyringPurposes lists every purpose.
var KeyringPurposes = []string{PurposeSession, PurposeHint, PurposeSubject, PurposeLookup}

// KeyringKey is a key of the replicated keyring.
type KeyringKey struct {
	ID      string `json:"id"`
	Purpose string `json:"purpose"`
	// Sealed is the material sealed under the cluster key-encryption key.
	Sealed []byte `json:"sealed"`
	// Public is the HPKE public key of a hint key (KEM in KEM), published in the directory.
	Public    []byte    `json:"public,omitempty"`
	KEM       uint16    `json:"kem,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// RetiredAt is when a newer key of the purpose took over; zero while active. A retired key still
	// verifies and opens what it made until it is purged.
	RetiredAt time.Time `json:"retired_at,omitzero"`
}

// KeyringAdd adds a key and makes it the active one of its purpose; the previous active key is retired.
type KeyringAdd struct {
	Key KeyringKey `json:"key"`
}

// KeyringPurge deletes keys retired before Before, except lookup keys (hashes made with them are kept).
type KeyringPurge struct {
	Before time.Time `json:"before"`
}

func (c *KeyringAdd) Validate() error {
	k := c.Key
	if k.ID == "" || len(k.Sealed) == 0 || k.CreatedAt.IsZero() {
		return errors.New("keyring key: id, sealed material and creation time are required")
	}
	switch k.Purpose {
	case PurposeSession, PurposeSubject, PurposeLookup:
	case PurposeHint:
		if len(k.Public) == 0 || k.KEM == 0 {
			return errors.New("keyring key: a hint key needs its public key and KEM")
		}
	default:
		return fmt.Errorf("keyring key: purpose %q is not one of %v", k.Purpose, KeyringPurposes)
	}
	return nil
}

func (c *KeyringPurge) Validate() error {
	if c.Before.IsZero() {
		return errors.New("keyring purge: before required")
	}
	return nil
}

func applyKeyringAdd(tx *sql.Tx, c *KeyringAdd) (Result, bool, error) {
	k := c.Key
	var n int
	if err := tx.QueryRow(`SELECT count(*) FROM keyring WHERE id = ?`, k.ID).Scan(&n); err != nil {
		return Result{}, false, err
	}
	if n > 0 {
		return refuse(Conflict, "keyring key %s already exists", k.ID), false, nil
	}
	if _, err := tx.Exec(`UPDATE keyring SET retired_at = ? WHERE purpose = ? AND retired_at = 0`, ms(k.CreatedAt), k.Purpose); err != nil {
		return Result{}, false, err
	}
	if _, err := tx.Exec(`INSERT INTO keyring(id, purpose, sealed, public, kem, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		k.ID, k.Purpose, k.Sealed, k.Public, k.KEM, ms(k.CreatedAt)); err != nil {
		return Result{}, false, err
	}
	if k.Purpose != PurposeHint {
		return Result{}, false, nil
	}
	// The directory lists the active hint key only: SPs seal new hints to it, while the retired key stays
	// in the keyring to open the hints sealed to it a moment ago.
	if _, err := tx.Exec(`DELETE FROM hub_keys WHERE kind = ?`, hubapi.HubKeyHPKE); err != nil {
		return Result{}, false, err
	}
	_, err := tx.Exec(`INSERT INTO hub_keys(kid, node, kind, kem, public, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		k.ID, KeyringNode, hubapi.HubKeyHPKE, k.KEM, k.Public, ms(k.CreatedAt))
	return Result{}, true, err
}

// KeyringNode is the node name under which the directory lists keyring keys: they belong to the cluster.
const KeyringNode = "cluster"

func applyKeyringPurge(tx *sql.Tx, c *KeyringPurge) (Result, bool, error) {
	_, err := tx.Exec(`DELETE FROM keyring WHERE retired_at > 0 AND retired_at < ? AND purpose != ?`, ms(c.Before), PurposeLookup)
	return Result{}, false, err
}

// Keyring lists the keyring, oldest first.
func (f *FSM) Keyring() ([]KeyringKey, error) {
	rows, err := f.db.Query(`SELECT id, purpose, sealed, public, kem, created_at, retired_at FROM keyring ORDER BY created_at, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []KeyringKey
	for rows.Next() {
		var k KeyringKey
		var created, retired int64
		if err := rows.Scan(&k.ID, &k.Purpose, &k.Sealed, &k.Public, &k.KEM, &created, &retired); err != nil {
			return nil, err
		}
		k.CreatedAt = fromMS(created)
		if retired > 0 {
			k.RetiredAt = fromMS(retired)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// KeyringVersion changes whenever the keyring does: the raft index of its last change.
func (f *FSM) KeyringVersion() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.keyringVersion
}
