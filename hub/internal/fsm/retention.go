package fsm

import (
	"database/sql"
	"errors"
	"time"
)

// Retention of the transfer records and the operator log: at least two years (介接作業要點 7(1)-(2)), then
// purged. A purge of the operator log keeps the last purged entry's seq and hash as the chain's anchor, so
// what is left still verifies from there, and a row removed from its start is still found.

// RecordRetention is how long receipts and operator log entries are kept.
const RecordRetention = 2 * 365 * 24 * time.Hour

// RecordsPurge removes the receipts and the operator log entries older than Before.
type RecordsPurge struct {
	Before time.Time `json:"before"`
	Now    time.Time `json:"now"`
}

func (c *RecordsPurge) Validate() error {
	if c.Before.IsZero() || c.Now.Sub(c.Before) < RecordRetention {
		return errors.New("records purge: records are kept at least two years")
	}
	return nil
}

func applyRecordsPurge(tx *sql.Tx, c *RecordsPurge) (Result, bool, error) {
	if _, err := tx.Exec(`DELETE FROM receipts WHERE at < ?`, ms(c.Before)); err != nil {
		return Result{}, false, err
	}
	var seq int64
	var hash string
	err := tx.QueryRow(`SELECT seq, hash FROM oplog WHERE at < ? ORDER BY seq DESC LIMIT 1`, ms(c.Before)).Scan(&seq, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return Result{}, false, nil
	}
	if err != nil {
		return Result{}, false, err
	}
	if _, err := tx.Exec(`DELETE FROM oplog WHERE seq <= ?`, seq); err != nil {
		return Result{}, false, err
	}
	_, err = tx.Exec(`INSERT INTO oplog_anchor(id, seq, hash) VALUES (1, ?, ?) ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash`, seq, hash)
	return Result{}, false, err
}

// PurgeDue says whether any receipt or operator log entry is older than before.
func (f *FSM) PurgeDue(before time.Time) (bool, error) {
	var n int
	err := f.db.QueryRow(`SELECT (SELECT count(*) FROM receipts WHERE at < ?) + (SELECT count(*) FROM oplog WHERE at < ?)`, ms(before), ms(before)).Scan(&n)
	return n > 0, err
}
