package fsm

import (
	"crypto/ecdsa"
	"database/sql"

	"github.com/mydatafed/mydata/pkg/hubapi"
)

func applyConnectorKey(tx *sql.Tx, c *ConnectorKey) (Result, bool, error) {
	if c.KEM == 0 || len(c.Key) == 0 || len(c.Key) > 4096 {
		return refuse(Invalid, "key: a KEM and a public key of at most 4096 bytes are required"), false, nil
	}
	st, err := connectorStatus(tx, c.Org, c.Name)
	if err != nil {
		return Result{}, false, err
	}
	switch st {
	case "":
		return refuse(NotFound, "connector %s/%s does not exist", c.Org, c.Name), false, nil
	case hubapi.StatusRevoked:
		return refuse(Gone, "connector %s/%s is revoked", c.Org, c.Name), false, nil
	}
	res, err := tx.Exec(`UPDATE connectors SET hpke_kem = ?, hpke_key = ?, updated_at = ? WHERE org = ? AND name = ? AND (hpke_kem != ? OR hpke_key IS NULL OR hpke_key != ?)`,
		c.KEM, c.Key, ms(c.Now), c.Org, c.Name, c.KEM, c.Key)
	if err != nil {
		return Result{}, false, err
	}
	n, _ := res.RowsAffected()
	return Result{}, n > 0, nil // republishing the same key changes nothing
}

func applyHubKey(tx *sql.Tx, c *HubKey) (Result, bool, error) {
	k := c.Key
	if k.KID == "" || k.Node == "" || len(k.PublicKey) == 0 || (k.Kind != hubapi.HubKeyTicket && k.Kind != hubapi.HubKeyHPKE) {
		return refuse(Invalid, "hub key: kid, node, kind and public key are required"), false, nil
	}
	res, err := tx.Exec(`INSERT INTO hub_keys(kid, node, kind, kem, public, created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(kid) DO NOTHING`,
		k.KID, k.Node, k.Kind, k.KEM, k.PublicKey, ms(k.CreatedAt))
	if err != nil {
		return Result{}, false, err
	}
	n, _ := res.RowsAffected()
	return Result{}, n > 0, nil
}

// HubKeys lists the hub nodes' published keys, oldest first.
// TicketKey implements ticket.KeySet over the hub keys in the state: a ticket any node signed verifies on
// every node (the portal's relay and the API's ticket claims check tickets with it).
func (f *FSM) TicketKey(kid string) (*ecdsa.PublicKey, bool) {
	keys, err := f.HubKeys()
	if err != nil {
		return nil, false
	}
	return hubapi.TicketKey(keys, kid)
}

func (f *FSM) HubKeys() ([]hubapi.HubKey, error) {
	rows, err := f.db.Query(`SELECT kid, node, kind, kem, public, created_at FROM hub_keys ORDER BY created_at, kid`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []hubapi.HubKey{}
	for rows.Next() {
		var k hubapi.HubKey
		var created int64
		if err := rows.Scan(&k.KID, &k.Node, &k.Kind, &k.KEM, &k.PublicKey, &created); err != nil {
			return nil, err
		}
		k.CreatedAt = fromMS(created)
		out = append(out, k)
	}
	return out, rows.Err()
}
