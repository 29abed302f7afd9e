package fsm

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mydatafed/mydata/pkg/hubapi"
)

func ms(t time.Time) int64         { return t.UnixMilli() }
func fromMS(v int64) time.Time     { return time.UnixMilli(v).UTC() }
func joinRoles(r []string) string  { return strings.Join(r, ",") }
func splitRoles(s string) []string { return strings.Split(s, ",") }

func applyOrgAdd(tx *sql.Tx, c *OrgAdd) (Result, bool, error) {
	var n int
	if err := tx.QueryRow(`SELECT count(*) FROM orgs WHERE code = ?`, c.Code).Scan(&n); err != nil {
		return Result{}, false, err
	}
	if n > 0 {
		return refuse(Conflict, "organisation %q already exists", c.Code), false, nil
	}
	_, err := tx.Exec(`INSERT INTO orgs(code, name_zh, name_en, type, status, created_at, contact_email) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		c.Code, c.NameZh, c.NameEn, c.Type, hubapi.StatusActive, ms(c.Now), c.ContactEmail)
	return Result{}, false, err
}

func applyConnectorAdd(tx *sql.Tx, c *ConnectorAdd) (Result, bool, error) {
	var n int
	if err := tx.QueryRow(`SELECT count(*) FROM orgs WHERE code = ?`, c.Org).Scan(&n); err != nil {
		return Result{}, false, err
	}
	if n == 0 {
		return refuse(NotFound, "organisation %q does not exist", c.Org), false, nil
	}
	if err := tx.QueryRow(`SELECT count(*) FROM connectors WHERE org = ? AND name = ?`, c.Org, c.Name).Scan(&n); err != nil {
		return Result{}, false, err
	}
	if n > 0 {
		return refuse(Conflict, "connector %s/%s already exists", c.Org, c.Name), false, nil
	}
	_, err := tx.Exec(`INSERT INTO connectors(org, name, roles, address, tcp_address, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		c.Org, c.Name, joinRoles(c.Roles), c.Address, c.TCPAddress, hubapi.StatusActive, ms(c.Now), ms(c.Now))
	return Result{}, err == nil, err
}

func applyConnectorStatus(tx *sql.Tx, c *ConnectorStatus) (Result, bool, error) {
	// Checked before proposing too; kept here because releases before the command registry refused a bad
	// status only here, so their logs may hold one that must stay refused on replay.
	if err := validConnectorStatus(c.Status); err != nil {
		return refuse(Invalid, "%v", err), false, nil
	}
	cur, err := connectorStatus(tx, c.Org, c.Name)
	if err != nil {
		return Result{}, false, err
	}
	switch {
	case cur == "":
		return refuse(NotFound, "connector %s/%s does not exist", c.Org, c.Name), false, nil
	case cur == hubapi.StatusRevoked:
		return refuse(Gone, "connector %s/%s is revoked; a revoked connector cannot change status", c.Org, c.Name), false, nil
	case cur == c.Status:
		return refuse(Conflict, "connector %s/%s is already %s", c.Org, c.Name, cur), false, nil
	}
	// Tokens of a revoked connector stay until they expire, so that using one gets "connector is revoked"
	// rather than a puzzling "unknown token"; enrollment checks the status.
	if _, err := tx.Exec(`UPDATE connectors SET status = ?, updated_at = ? WHERE org = ? AND name = ?`, c.Status, ms(c.Now), c.Org, c.Name); err != nil {
		return Result{}, false, err
	}
	return Result{}, true, nil
}

func applyConnectorAddress(tx *sql.Tx, c *ConnectorAddress) (Result, bool, error) {
	var status, addr, tcp string
	err := tx.QueryRow(`SELECT status, address, tcp_address FROM connectors WHERE org = ? AND name = ?`, c.Org, c.Name).Scan(&status, &addr, &tcp)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return refuse(NotFound, "connector %s/%s does not exist", c.Org, c.Name), false, nil
	case err != nil:
		return Result{}, false, err
	case status == hubapi.StatusRevoked:
		return refuse(Gone, "connector %s/%s is revoked", c.Org, c.Name), false, nil
	case addr == c.Address && tcp == c.TCPAddress:
		return refuse(Conflict, "connector %s/%s already has these addresses", c.Org, c.Name), false, nil
	}
	_, err = tx.Exec(`UPDATE connectors SET address = ?, tcp_address = ?, updated_at = ? WHERE org = ? AND name = ?`, c.Address, c.TCPAddress, ms(c.Now), c.Org, c.Name)
	return Result{}, err == nil, err
}

type queryRower interface {
	QueryRow(query string, args ...any) *sql.Row
}

func connectorStatus(q queryRower, org, name string) (string, error) {
	var s string
	err := q.QueryRow(`SELECT status FROM connectors WHERE org = ? AND name = ?`, org, name).Scan(&s)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return s, err
}

func applyTokenCreate(tx *sql.Tx, c *TokenCreate) (Result, bool, error) {
	st, err := connectorStatus(tx, c.Org, c.Connector)
	if err != nil {
		return Result{}, false, err
	}
	switch st {
	case "":
		return refuse(NotFound, "connector %s/%s does not exist", c.Org, c.Connector), false, nil
	case hubapi.StatusRevoked:
		return refuse(Gone, "connector %s/%s is revoked", c.Org, c.Connector), false, nil
	}
	if !c.ExpiresAt.After(c.Now) {
		return refuse(Invalid, "ttl: the token would expire at once"), false, nil
	}
	_, err = tx.Exec(`INSERT INTO join_tokens(hash, org, connector, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`,
		c.Hash, c.Org, c.Connector, ms(c.Now), ms(c.ExpiresAt))
	return Result{}, false, err
}

func applyEnroll(tx *sql.Tx, c *Enroll) (Result, bool, error) {
	tok, err := token(tx, c.TokenHash)
	if err != nil {
		return Result{}, false, err
	}
	if r := CheckToken(tok, c.Cert.Now); r.Code != OK {
		return r, false, nil
	}
	st, err := connectorStatus(tx, tok.Org, tok.Connector)
	if err != nil {
		return Result{}, false, err
	}
	if st != hubapi.StatusActive {
		return refuse(Forbidden, "connector %s/%s is %s", tok.Org, tok.Connector, st), false, nil
	}
	if _, err := tx.Exec(`DELETE FROM join_tokens WHERE hash = ?`, c.TokenHash); err != nil {
		return Result{}, false, err
	}
	return applyCertRecord(tx, &c.Cert)
}

func applyRenew(tx *sql.Tx, c *Renew) (Result, bool, error) {
	st, err := connectorStatus(tx, c.Org, c.Name)
	if err != nil {
		return Result{}, false, err
	}
	if st != hubapi.StatusActive {
		if st == "" {
			st = "unknown"
		}
		return refuse(Forbidden, "connector %s/%s is %s and cannot renew its SVID", c.Org, c.Name, st), false, nil
	}
	return applyCertRecord(tx, &c.Cert)
}

func applyCertRecord(tx *sql.Tx, c *CertRecord) (Result, bool, error) {
	_, err := tx.Exec(`INSERT INTO certificates(serial, spiffe_id, kind, not_before, not_after, issued_at) VALUES (?, ?, ?, ?, ?, ?)`,
		c.Serial, c.SPIFFEID, c.Kind, ms(c.NotBefore), ms(c.NotAfter), ms(c.Now))
	return Result{}, false, err
}

func applyTokenPurge(tx *sql.Tx, c *TokenPurge) (Result, bool, error) {
	_, err := tx.Exec(`DELETE FROM join_tokens WHERE expires_at <= ?`, ms(c.Now))
	return Result{}, false, err
}

// Token is a stored join token.
type Token struct {
	Hash      string
	Org       string
	Connector string
	ExpiresAt time.Time
}

// CheckToken says why a looked-up token (nil if absent) cannot be used at now.
func CheckToken(t *Token, now time.Time) Result {
	if t == nil {
		return refuse(Forbidden, "join token is unknown or already used")
	}
	if !now.Before(t.ExpiresAt) {
		return refuse(Forbidden, "join token expired at %s", t.ExpiresAt.Format(time.RFC3339))
	}
	return Result{}
}

func token(q queryRower, hash string) (*Token, error) {
	t := Token{Hash: hash}
	var exp int64
	err := q.QueryRow(`SELECT org, connector, expires_at FROM join_tokens WHERE hash = ?`, hash).Scan(&t.Org, &t.Connector, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	t.ExpiresAt = fromMS(exp)
	return &t, nil
}

// Token looks up a join token by hash; nil if there is none.
func (f *FSM) Token(hash string) (*Token, error) { return token(f.db, hash) }

// Orgs lists the organisations.
func (f *FSM) Orgs() ([]hubapi.Org, error) {
	rows, err := f.db.Query(`SELECT code, name_zh, name_en, type, status, created_at, contact_email FROM orgs ORDER BY code`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []hubapi.Org{}
	for rows.Next() {
		var o hubapi.Org
		var created int64
		if err := rows.Scan(&o.Code, &o.NameZh, &o.NameEn, &o.Type, &o.Status, &created, &o.ContactEmail); err != nil {
			return nil, err
		}
		o.CreatedAt = fromMS(created)
		out = append(out, o)
	}
	return out, rows.Err()
}

// Org finds one organisation; nil if there is none.
func (f *FSM) Org(code string) (*hubapi.Org, error) {
	return cached(&f.lookups, "org\x00"+code, func() (*hubapi.Org, error) {
		var o hubapi.Org
		var created int64
		err := f.db.QueryRow(`SELECT code, name_zh, name_en, type, status, created_at, contact_email FROM orgs WHERE code = ?`, code).
			Scan(&o.Code, &o.NameZh, &o.NameEn, &o.Type, &o.Status, &created, &o.ContactEmail)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		o.CreatedAt = fromMS(created)
		return &o, nil
	})
}

// Connectors lists the connectors.
func (f *FSM) Connectors() ([]hubapi.Connector, error) {
	return f.connectors(`ORDER BY org, name`)
}

// Connector finds one connector; nil if there is none.
func (f *FSM) Connector(org, name string) (*hubapi.Connector, error) {
	return cached(&f.lookups, "connector\x00"+org+"\x00"+name, func() (*hubapi.Connector, error) {
		cs, err := f.connectors(`WHERE org = ? AND name = ?`, org, name)
		if err != nil || len(cs) == 0 {
			return nil, err
		}
		return &cs[0], nil
	})
}

func (f *FSM) connectors(where string, args ...any) ([]hubapi.Connector, error) {
	rows, err := f.db.Query(`SELECT org, name, roles, address, tcp_address, status, created_at, updated_at, hpke_kem, hpke_key, down FROM connectors `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []hubapi.Connector{}
	for rows.Next() {
		var c hubapi.Connector
		var roles string
		var created, updated int64
		if err := rows.Scan(&c.Org, &c.Name, &roles, &c.Address, &c.TCPAddress, &c.Status, &created, &updated, &c.HPKEKEM, &c.HPKEKey, &c.Down); err != nil {
			return nil, err
		}
		c.Roles = splitRoles(roles)
		c.CreatedAt, c.UpdatedAt = fromMS(created), fromMS(updated)
		out = append(out, c)
	}
	return out, rows.Err()
}

// DirectoryVersion is the raft index of the last change to the directory's content.
func (f *FSM) DirectoryVersion() (uint64, error) {
	var v int64
	err := f.db.QueryRow(`SELECT value FROM meta WHERE key = ?`, metaDirectory).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return uint64(v), err
}

// Certificates lists the certificates issued to a SPIFFE ID (all if empty), newest first.
func (f *FSM) Certificates(spiffeID string) ([]hubapi.Certificate, error) {
	rows, err := f.db.Query(`SELECT serial, spiffe_id, kind, not_before, not_after FROM certificates WHERE ? = '' OR spiffe_id = ? ORDER BY issued_at DESC, serial`, spiffeID, spiffeID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []hubapi.Certificate{}
	for rows.Next() {
		var c hubapi.Certificate
		var nb, na int64
		if err := rows.Scan(&c.Serial, &c.SPIFFEID, &c.Kind, &nb, &na); err != nil {
			return nil, fmt.Errorf("certificates: %w", err)
		}
		c.NotBefore, c.NotAfter = fromMS(nb), fromMS(na)
		out = append(out, c)
	}
	return out, rows.Err()
}
