package fsm

import (
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The notification outbox: one row per use of a citizen's data that the citizen asked to hear of. The row
// is written by the same entry that records the use (applyConsentUse), so a use that lands is a notice
// that will be sent — through restarts and leader changes — and a failing mail server never touches the
// transfer. The leader sends; each attempt is claimed in the log before it is made and its outcome recorded
// after, so a notice is sent at most once: an attempt whose outcome a leader change lost is not repeated.

// Outbox states.
const (
	OutboxPending = "pending" // waiting for its next attempt
	OutboxSending = "sending" // claimed by a leader, outcome not yet recorded
	OutboxSent    = "sent"
	OutboxFailed  = "failed"  // given up: a permanent error, too many attempts, or an outcome lost
	OutboxSkipped = "skipped" // nothing to send to any more (the citizen removed their contact)
)

// OutboxKindUse is a notice that the citizen's data was used.
const OutboxKindUse = "use"

// outboxRetention is how long sent and failed notices stay (for the history and support), counted from
// IdentityPurge's Before.
const outboxRetention = 30 * 24 * time.Hour

// OutboxEntry is one notice.
type OutboxEntry struct {
	ID          string
	SubjectHash string
	Kind        string
	// Channel is email or sms: a notice per channel.
	Channel string
	// Ref is what the notice is about: the consent whose use it reports.
	Ref       string
	State     string
	Attempts  int
	CreatedAt time.Time
	NextAt    time.Time
	SentAt    time.Time
	LastError string
}

// OutboxClaim claims attempt number Attempt of a pending notice for the leader about to make it.
type OutboxClaim struct {
	ID      string    `json:"id"`
	Attempt int       `json:"attempt"`
	At      time.Time `json:"at"`
}

// OutboxResult records how a claimed attempt went: sent, pending again (a temporary failure, retried at
// NextAt), failed or skipped.
type OutboxResult struct {
	ID     string    `json:"id"`
	State  string    `json:"state"`
	NextAt time.Time `json:"next_at,omitzero"`
	Error  string    `json:"error,omitempty"`
	At     time.Time `json:"at"`
}

func (c *OutboxClaim) Validate() error {
	if c.ID == "" || c.Attempt < 1 || c.At.IsZero() {
		return errors.New("id, attempt (from 1) and at are required")
	}
	return nil
}

func (c *OutboxResult) Validate() error {
	switch c.State {
	case OutboxSent, OutboxFailed, OutboxSkipped:
	case OutboxPending:
		if c.NextAt.IsZero() {
			return errors.New("next_at: required to retry")
		}
	default:
		return fmt.Errorf("state: %q is not pending, sent, failed or skipped", c.State)
	}
	if c.ID == "" || c.At.IsZero() || len(c.Error) > 500 {
		return errors.New("id and at are required; error at most 500 bytes")
	}
	return nil
}

// enqueueUse adds the notices of a consent's use, one per channel the citizen turned on: inside the entry
// that records the use. One row per channel, so that a mail sent is never repeated because the SMS failed.
func enqueueUse(tx *sql.Tx, consentID, subjectHash string, at time.Time) error {
	return enqueue(tx, OutboxKindUse, consentID, subjectHash, at, at)
}

// enqueue adds a notice of kind about ref, one row per channel the citizen turned on, to be sent from due
// on; a notice already queued for the same kind, ref and channel is not queued again.
func enqueue(tx *sql.Tx, kind, ref, subjectHash string, at, due time.Time) error {
	var email, sms bool
	err := tx.QueryRow(`SELECT notify_email, notify_sms FROM contacts WHERE subject_hash = ?`, subjectHash).Scan(&email, &sms)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	// In a fixed order: every node must write the same rows the same way.
	for _, ch := range []struct {
		name string
		on   bool
	}{{"email", email}, {"sms", sms}} {
		channel := ch.name
		if !ch.on {
			continue
		}
		if _, err := tx.Exec(`INSERT OR IGNORE INTO outbox(id, subject_hash, kind, channel, ref, state, attempts, created_at, next_at, sent_at, last_error)
			VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, 0, '')`, kind+":"+ref+":"+channel, subjectHash, kind, channel, ref, OutboxPending, ms(at), ms(due)); err != nil {
			return err
		}
	}
	return nil
}

func applyOutboxClaim(tx *sql.Tx, c *OutboxClaim) (Result, bool, error) {
	res, err := tx.Exec(`UPDATE outbox SET state = ?, attempts = ? WHERE id = ? AND state = ? AND attempts = ?`,
		OutboxSending, c.Attempt, c.ID, OutboxPending, c.Attempt-1)
	if err != nil {
		return Result{}, false, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return refuse(Conflict, "notice %s is not waiting for attempt %d", c.ID, c.Attempt), false, nil
	}
	return Result{}, false, nil
}

func applyOutboxResult(tx *sql.Tx, c *OutboxResult) (Result, bool, error) {
	sent := int64(0)
	if c.State == OutboxSent {
		sent = ms(c.At)
	}
	res, err := tx.Exec(`UPDATE outbox SET state = ?, next_at = ?, sent_at = ?, last_error = ? WHERE id = ? AND state = ?`,
		c.State, msOrZero(c.NextAt), sent, c.Error, c.ID, OutboxSending)
	if err != nil {
		return Result{}, false, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return refuse(Conflict, "notice %s has no attempt in progress", c.ID), false, nil
	}
	return Result{}, false, nil
}

const outboxCols = `id, subject_hash, kind, channel, ref, state, attempts, created_at, next_at, sent_at, last_error`

func scanOutbox(rows *sql.Rows) ([]OutboxEntry, error) {
	defer rows.Close()
	var out []OutboxEntry
	for rows.Next() {
		var e OutboxEntry
		var created, next, sent int64
		if err := rows.Scan(&e.ID, &e.SubjectHash, &e.Kind, &e.Channel, &e.Ref, &e.State, &e.Attempts, &created, &next, &sent, &e.LastError); err != nil {
			return nil, err
		}
		e.CreatedAt, e.NextAt = fromMS(created), fromMS(next)
		if sent != 0 {
			e.SentAt = fromMS(sent)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// OutboxDue lists pending notices whose time has come, oldest first.
func (f *FSM) OutboxDue(now time.Time, limit int) ([]OutboxEntry, error) {
	rows, err := f.db.Query(`SELECT `+outboxCols+` FROM outbox WHERE state = ? AND next_at <= ? ORDER BY next_at LIMIT ?`, OutboxPending, ms(now), limit)
	if err != nil {
		return nil, err
	}
	return scanOutbox(rows)
}

// OutboxInFlight lists notices claimed but without an outcome: after a leader change, the new leader
// cannot know whether they went out.
func (f *FSM) OutboxInFlight() ([]OutboxEntry, error) {
	rows, err := f.db.Query(`SELECT `+outboxCols+` FROM outbox WHERE state = ?`, OutboxSending)
	if err != nil {
		return nil, err
	}
	return scanOutbox(rows)
}

// OutboxOf finds one notice; nil if there is none.
func (f *FSM) OutboxOf(id string) (*OutboxEntry, error) {
	rows, err := f.db.Query(`SELECT `+outboxCols+` FROM outbox WHERE id = ?`, id)
	if err != nil {
		return nil, err
	}
	list, err := scanOutbox(rows)
	if err != nil || len(list) == 0 {
		return nil, err
	}
	return &list[0], nil
}
