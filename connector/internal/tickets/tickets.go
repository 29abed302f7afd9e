// Package tickets is a data provider connector's record of the tickets presented to it, kept in SQLite so
// that a ticket is honoured once even across restarts: a ticket is spent once content starts to flow, and
// may be presented again only after a "not ready, retry later".
package tickets

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mydatafed/mydata/pkg/sqlitedb"
)

const (
	stateBusy = "busy" // a delivery is under way
	stateOpen = "open" // the agency was not ready; the ticket may come back
	stateDone = "done" // spent
)

// Errors Claim returns.
var (
	ErrUsed = errors.New("ticket already used")
	ErrBusy = errors.New("ticket is being served on another stream")
)

// Store is the record.
type Store struct{ db *sql.DB }

// Open opens the record at path. Deliveries a crash interrupted count as spent: some content may have
// left, and a ticket must never deliver twice.
func Open(path string) (*Store, error) {
	// One connection: concurrent deliveries write it.
	db, err := sqlitedb.Open(path, sqlitedb.Options{Immediate: true, OneConn: true})
	if err != nil {
		return nil, err
	}
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS tickets (
		id TEXT PRIMARY KEY, state TEXT NOT NULL, expires_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)`); err != nil {
		db.Close()
		return nil, fmt.Errorf("tickets schema: %w", err)
	}
	if _, err := db.Exec(`UPDATE tickets SET state = ? WHERE state = ?`, stateDone, stateBusy); err != nil {
		db.Close()
		return nil, err
	}
	return &Store{db: db}, nil
}

// Close closes the record.
func (s *Store) Close() error { return s.db.Close() }

// Claim takes a ticket for one delivery. It is one statement, not a transaction around a read and a write:
// it runs for every presentation, and the refusals it reads back are rare.
func (s *Store) Claim(ctx context.Context, id string, expires time.Time) error {
	now := time.Now().Unix()
	res, err := s.db.ExecContext(ctx, `INSERT INTO tickets(id, state, expires_at, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT(id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at WHERE tickets.state = ?`,
		id, stateBusy, expires.Unix(), now, stateOpen)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return err
	}
	// The ticket is there and not open: say why.
	var state string
	if err := s.db.QueryRowContext(ctx, `SELECT state FROM tickets WHERE id = ?`, id).Scan(&state); err != nil {
		return err
	}
	if state == stateBusy {
		return ErrBusy
	}
	return ErrUsed
}

// Finish ends a delivery: spent, or open again after "not ready".
func (s *Store) Finish(ctx context.Context, id string, spent bool) error {
	state := stateDone
	if !spent {
		state = stateOpen
	}
	_, err := s.db.ExecContext(ctx, `UPDATE tickets SET state = ?, updated_at = ? WHERE id = ?`, state, time.Now().Unix(), id)
	return err
}

// Purge forgets tickets that expired before t: an expired ticket fails verification anyway.
func (s *Store) Purge(ctx context.Context, t time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM tickets WHERE expires_at < ? AND state != ?`, t.Unix(), stateBusy)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
