// Package audit is the connector's transfer audit log: every transfer a connector makes or receives, and
// every failed attempt, is appended to a hash-chained log in SQLite that is kept at least two years, can be
// checked for tampering (`mydata-connector audit verify`) and exported as JSON lines (`audit export`).
//
// Each entry's hash covers the previous entry's hash and an unambiguous encoding of its own fields, so an
// edited, removed, reordered or inserted row breaks the chain at that row. A removed last row leaves no
// break, so the head of the chain (last seq and hash) is also kept in two anchors: a `meta` row in the
// database and a side file `<Path>.head` (replaced atomically), both moved while the transaction that adds
// the row holds the database's write lock. Verify compares the chain's end with both; a disagreement with
// either one is reported as tampering. If an append
// finds the anchors disagreeing (rows were removed while the connector was down, or a crash cut an append
// short), it first appends an anchor_mismatch entry describing what it found, so the next append cannot
// paper over the evidence; Verify reports that entry until it ages out.
//
// What this does not protect against: someone who can write the database and the head file can rewrite
// the whole chain from any row on, and both anchors, consistently, and Verify will pass. The external
// witness is the receipt each connector sends the hub for every transfer (other code does that); the hub
// side can be compared with an export of this log. Subjects are stored only as keyed hashes (SubjectHash),
// so the log and its exports hold no national id.
//
// Durability: the database runs in WAL mode with synchronous=NORMAL and the head file is not fsynced, so
// that thousands of appends a second are possible; a process crash loses nothing that Append returned, but
// a power loss may lose the last appends and then Verify reports the anchors disagreeing. So does a crash
// in the instant between replacing the head file and committing: the file is then one row ahead, for an
// entry that Append never returned.
//
// One process appends (the connector daemon); other processes (the audit CLI) may open the same log to
// verify or export while it runs.
package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/mydatafed/mydata/pkg/sqlitedb"
)

// Roles: which side of the transfer this connector was.
const (
	RoleDP = "dp" // we sent the data
	RoleSP = "sp" // we received the data
)

// Outcomes a caller may record.
const (
	OutcomeDelivered = "delivered"
	OutcomeNoRecord  = "no_record"
	OutcomePending   = "pending"
	OutcomeFailed    = "failed"
	OutcomeRefused   = "refused"
)

// Outcomes only this package writes; Append refuses them so that no caller can fake a purge.
const (
	// OutcomePurged marks a Purge; Detail is "rows N..M".
	OutcomePurged = "purged"
	// OutcomeAnchorMismatch marks an append that found the chain's head, the meta row and the head file
	// disagreeing; Detail says what each held.
	OutcomeAnchorMismatch = "anchor_mismatch"
)

// MinRetention is the shortest time entries are kept: two years, counting a leap day.
const MinRetention = 731 * 24 * time.Hour

// Bounds on the string fields, so one bad caller cannot bloat the log.
const (
	maxField  = 256
	maxDetail = 512
)

// ErrInvalid is wrapped by Append's errors for an entry it refuses; nothing is written then.
var ErrInvalid = errors.New("invalid audit entry")

// Entry is one audited event.
type Entry struct {
	Seq         int64     `json:"seq"`              // assigned by Append, 1, 2, 3, ...
	Time        time.Time `json:"time"`             // set by the caller (UTC, ms precision is kept); zero means now
	Role        string    `json:"role"`             // "dp" (we sent) or "sp" (we received)
	Dataset     string    `json:"dataset"`          // dataset id
	Counterpart string    `json:"counterpart"`      // SPIFFE ID of the other connector
	ConsentID   string    `json:"consent_id"`       // hub consent id
	TicketID    string    `json:"ticket_id"`        // transfer ticket id
	Subject     string    `json:"subject"`          // keyed hash from SubjectHash, never the raw id
	Bytes       int64     `json:"bytes"`            // payload size
	Outcome     string    `json:"outcome"`          // delivered, no_record, pending, failed, refused (purged, anchor_mismatch: internal)
	Detail      string    `json:"detail,omitempty"` // short reason, no personal data
	PrevHash    string    `json:"prev_hash"`        // hex, the previous entry's Hash
	Hash        string    `json:"hash"`             // hex SHA-256 over PrevHash and a canonical encoding of the fields
}

// Config configures a Log.
type Config struct {
	// Path is the SQLite database file; the head file is Path + ".head".
	Path string
	// Retention is how long Purge keeps entries: default and minimum MinRetention.
	Retention time.Duration
	// AllowShortRetention lets tests use a Retention below MinRetention.
	AllowShortRetention bool
	// Now is the clock (default time.Now), used for zero entry times and by Purge.
	Now func() time.Time
}

// Report is the result of Verify.
type Report struct {
	Rows int64 // rows in the log
	OK   bool
	// FirstBadSeq is the first seq that is wrong or may be missing; 0 when OK, or when the problem is not
	// tied to a row.
	FirstBadSeq int64
	Problem     string // what is wrong, for a person to read; empty when OK
}

// head is a position in the chain: the last row, an anchor, or the purge base.
type head struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"`
}

var genesis = head{Seq: 0, Hash: genesisHash}

// Log is an open audit log. Its methods are safe for concurrent use.
type Log struct {
	cfg      Config
	headPath string
	// writer has one connection and opens every transaction with BEGIN IMMEDIATE, so a transaction holds
	// the database's write lock from its first statement; reader serves Verify and Export snapshots.
	writer *sql.DB
	reader *sql.DB

	stmtMeta, stmtLast, stmtInsert, stmtSetHead *sql.Stmt

	// sem serialises writers in this process (a channel, not a mutex, so waiting respects ctx). It also
	// guards anchor, the head file contents as last written or read, which saves re-reading the file on
	// every append.
	sem      chan struct{}
	anchor   head
	anchorOK bool

	// queue holds the appends waiting for the next write transaction; appending is true while a caller
	// writes them. Concurrent appends share one transaction and one head-file swap (group commit): one
	// each cost a connector 5 % of its CPU in small exchanges.
	queueMu   sync.Mutex
	queue     []*pendingAppend
	appending bool
}

// pendingAppend is an entry waiting in the queue, and where its result goes.
type pendingAppend struct {
	e    Entry
	out  Entry
	err  error
	done chan struct{}
}

const schema = `
CREATE TABLE IF NOT EXISTS entries (
	seq         INTEGER PRIMARY KEY,
	time_ms     INTEGER NOT NULL,
	role        TEXT NOT NULL,
	dataset     TEXT NOT NULL,
	counterpart TEXT NOT NULL,
	consent_id  TEXT NOT NULL,
	ticket_id   TEXT NOT NULL,
	subject     TEXT NOT NULL,
	bytes       INTEGER NOT NULL,
	outcome     TEXT NOT NULL,
	detail      TEXT NOT NULL,
	prev_hash   TEXT NOT NULL,
	hash        TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS entries_time ON entries (time_ms);
CREATE TABLE IF NOT EXISTS meta (
	id        INTEGER PRIMARY KEY CHECK (id = 1),
	head_seq  INTEGER NOT NULL,
	head_hash TEXT NOT NULL,
	base_seq  INTEGER NOT NULL,
	base_hash TEXT NOT NULL
) STRICT;
`

const schemaVersion = 1

const entryCols = `seq, time_ms, role, dataset, counterpart, consent_id, ticket_id, subject, bytes, outcome, detail, prev_hash, hash`

// Open opens the log at cfg.Path, creating it (mode 0600) and its head file on first use.
func Open(cfg Config) (*Log, error) {
	if cfg.Path == "" {
		return nil, errors.New("audit: config: path is empty")
	}
	if cfg.Retention == 0 {
		cfg.Retention = MinRetention
	}
	if cfg.Retention < 0 || (cfg.Retention < MinRetention && !cfg.AllowShortRetention) {
		return nil, fmt.Errorf("audit: config: retention %v is below the legal minimum of two years (%v)", cfg.Retention, MinRetention)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l := &Log{cfg: cfg, headPath: cfg.Path + ".head", sem: make(chan struct{}, 1)}
	if err := l.open(); err != nil {
		l.Close()
		return nil, fmt.Errorf("audit: open %s: %w", cfg.Path, err)
	}
	return l, nil
}

func (l *Log) open() error {
	var err error
	if l.writer, err = sqlitedb.Open(l.cfg.Path, sqlitedb.Options{Immediate: true, OneConn: true}); err != nil {
		return err
	}
	if l.reader, err = sqlitedb.Open(l.cfg.Path, sqlitedb.Options{}); err != nil {
		return err
	}
	var v int
	if err := l.writer.QueryRow(`PRAGMA user_version`).Scan(&v); err != nil {
		return err
	}
	if v > schemaVersion {
		return fmt.Errorf("schema version %d is newer than this program's %d", v, schemaVersion)
	}
	if _, err := l.writer.Exec(schema + fmt.Sprintf("PRAGMA user_version = %d;", schemaVersion)); err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	prepare := func(dst **sql.Stmt, q string) {
		if err == nil {
			*dst, err = l.writer.Prepare(q)
		}
	}
	prepare(&l.stmtMeta, `SELECT head_seq, head_hash, base_seq, base_hash FROM meta WHERE id = 1`)
	prepare(&l.stmtLast, `SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1`)
	prepare(&l.stmtInsert, `INSERT INTO entries (`+entryCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	// An upsert, so that a deleted meta row comes back (after the append that records its loss).
	prepare(&l.stmtSetHead, `INSERT INTO meta (id, head_seq, head_hash, base_seq, base_hash) VALUES (1, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET head_seq = excluded.head_seq, head_hash = excluded.head_hash,
			base_seq = excluded.base_seq, base_hash = excluded.base_hash`)
	if err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	return l.init()
}

// init gives a brand-new database its meta row and head file. A database that has rows but no meta row,
// or a head file that is already there, is left alone: that is evidence for Verify, not something to fix.
func (l *Log) init() error {
	tx, err := l.writer.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.Exec(`INSERT INTO meta (id, head_seq, head_hash, base_seq, base_hash)
		SELECT 1, 0, ?1, 0, ?1 WHERE NOT EXISTS (SELECT 1 FROM meta) AND NOT EXISTS (SELECT 1 FROM entries)`, genesisHash)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 1 {
		if _, err := os.Lstat(l.headPath); errors.Is(err, os.ErrNotExist) {
			if err := writeHead(l.headPath, genesis); err != nil {
				return err
			}
		}
	}
	return tx.Commit()
}

// Close closes the database.
func (l *Log) Close() error {
	var errs []error
	for _, s := range []*sql.Stmt{l.stmtMeta, l.stmtLast, l.stmtInsert, l.stmtSetHead} {
		if s != nil {
			errs = append(errs, s.Close())
		}
	}
	for _, db := range []*sql.DB{l.writer, l.reader} {
		if db != nil {
			errs = append(errs, db.Close())
		}
	}
	return errors.Join(errs...)
}

// lock takes the in-process writer slot, giving up when ctx ends.
func (l *Log) lock(ctx context.Context) error {
	select {
	case l.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *Log) unlock() { <-l.sem }

// Append validates e, gives it the next Seq, chains it and stores it. It returns the stored entry (Time
// truncated to milliseconds, UTC; Seq, PrevHash and Hash filled in; whatever the caller put in those three
// is ignored). Appends are serialised.
func (l *Log) Append(ctx context.Context, e Entry) (Entry, error) {
	if e.Time.IsZero() {
		e.Time = l.cfg.Now()
	}
	e.Time = msUTC(e.Time)
	if err := validate(e); err != nil {
		return Entry{}, fmt.Errorf("audit: append: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return Entry{}, fmt.Errorf("audit: append: %w", err)
	}
	p := &pendingAppend{e: e, done: make(chan struct{})}
	l.queueMu.Lock()
	l.queue = append(l.queue, p)
	if l.appending {
		// Another caller is writing; it takes this entry in its next transaction.
		l.queueMu.Unlock()
		<-p.done
		return p.out, p.err
	}
	l.appending = true
	// Write batches until the queue is empty: the first holds this entry, later ones what came meanwhile.
	// This caller's context bounds the wait for the write lock (another process may hold it), for the
	// entries of others too: connectors append with contexts that do not end.
	for len(l.queue) > 0 {
		batch := l.queue
		l.queue = nil
		l.queueMu.Unlock()
		err := l.write(ctx, func(tx *sql.Tx, st *state) error {
			for _, q := range batch {
				var err error
				if q.out, err = l.insert(ctx, tx, st, q.e); err != nil {
					return err
				}
			}
			return nil
		})
		for _, q := range batch {
			if err != nil {
				q.out, q.err = Entry{}, fmt.Errorf("audit: append: %w", err)
			}
			close(q.done)
		}
		l.queueMu.Lock()
	}
	l.appending = false
	l.queueMu.Unlock()
	return p.out, p.err
}

// state is what a write transaction starts from.
type state struct {
	head head // the last row, or the base when there are none: what the next entry chains from
	base head // Purge moves it
	// metaMissing: the meta row is gone (the base was then taken from the first row).
	metaMissing bool
	// file is what the head file held, if fileOK; a failed commit puts it back, evidence included.
	file   head
	fileOK bool
}

// write runs fn in a write transaction that holds the database's write lock, after recording any anchor
// disagreement, then moves the meta head and the head file to the new end of the chain and commits. The
// head file is replaced before the commit, while the lock is held, so that another process that takes the
// lock always finds the file and the database in step.
func (l *Log) write(ctx context.Context, fn func(*sql.Tx, *state) error) (err error) {
	if err := l.lock(ctx); err != nil {
		return err
	}
	defer l.unlock()
	tx, err := l.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	st, mismatch, err := l.load(ctx, tx)
	if err != nil {
		return err
	}
	start := st.head
	if mismatch != "" {
		if _, err := l.insert(ctx, tx, &st, Entry{Time: msUTC(l.cfg.Now()), Outcome: OutcomeAnchorMismatch, Detail: mismatch}); err != nil {
			return err
		}
	}
	if err := fn(tx, &st); err != nil {
		return err
	}
	if st.head == start {
		return tx.Commit() // fn wrote nothing (a purge with nothing to purge)
	}
	_, err = tx.StmtContext(ctx, l.stmtSetHead).ExecContext(ctx, st.head.Seq, st.head.Hash, st.base.Seq, st.base.Hash)
	if err != nil {
		return fmt.Errorf("update meta: %w", err)
	}
	l.anchorOK = false // until the file is known to hold the new head
	if err := writeHead(l.headPath, st.head); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		// The file is now ahead of the database; put back what it held, so that a failed commit is not taken
		// for a removed row, nor hides a disagreement that was there before. If that fails too, the next
		// append records the disagreement.
		if !st.fileOK {
			os.Remove(l.headPath) // it was missing or unreadable; missing is still reported
		} else if writeHead(l.headPath, st.file) == nil {
			l.anchor, l.anchorOK = st.file, true
		}
		return fmt.Errorf("commit: %w", err)
	}
	l.anchor, l.anchorOK = st.head, true
	return nil
}

// load reads the chain's head, the meta row and the head file inside tx. mismatch is non-empty, and
// describes all three, when they disagree.
func (l *Log) load(ctx context.Context, tx *sql.Tx) (st state, mismatch string, err error) {
	var meta head
	err = tx.StmtContext(ctx, l.stmtMeta).QueryRowContext(ctx).Scan(&meta.Seq, &meta.Hash, &st.base.Seq, &st.base.Hash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		st.metaMissing = true
		// Without the meta row the base is unknown; take it from the first row so the chain goes on.
		st.base = genesis
		err = tx.QueryRowContext(ctx, `SELECT seq - 1, prev_hash FROM entries ORDER BY seq LIMIT 1`).Scan(&st.base.Seq, &st.base.Hash)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return st, "", fmt.Errorf("read first row: %w", err)
		}
	case err != nil:
		return st, "", fmt.Errorf("read meta: %w", err)
	}
	err = tx.StmtContext(ctx, l.stmtLast).QueryRowContext(ctx).Scan(&st.head.Seq, &st.head.Hash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		st.head = st.base
	case err != nil:
		return st, "", fmt.Errorf("read last row: %w", err)
	}
	if _, ok := decodeHash(st.head.Hash); !ok {
		// Nothing sound can be chained onto this; a person has to look (audit verify says where).
		return st, "", fmt.Errorf("the hash of the last row (seq %d) is malformed: the log is damaged, run audit verify", st.head.Seq)
	}

	metaDesc, fileDesc := "missing", ""
	bad := st.metaMissing
	if !st.metaMissing {
		metaDesc = describe(meta)
		bad = meta != st.head
	}
	if l.anchorOK && l.anchor == st.head {
		st.file, st.fileOK = l.anchor, true
	} else {
		var ferr error
		st.file, ferr = readHead(l.headPath)
		st.fileOK = ferr == nil
		switch {
		case ferr != nil:
			fileDesc, bad = "unreadable: "+ferr.Error(), true
		case st.file != st.head:
			bad = true
		default:
			// Another process appended since we last wrote the file; it moved both anchors.
			l.anchor, l.anchorOK = st.file, true
		}
	}
	if st.fileOK {
		fileDesc = describe(st.file)
	}
	if bad {
		mismatch = truncate(fmt.Sprintf("last row %s; meta %s; head file %s", describe(st.head), metaDesc, fileDesc), maxDetail)
	}
	return st, mismatch, nil
}

func describe(h head) string { return fmt.Sprintf("seq=%d hash=%s", h.Seq, h.Hash) }

// insert chains e onto st.head, stores it and advances st.head.
func (l *Log) insert(ctx context.Context, tx *sql.Tx, st *state, e Entry) (Entry, error) {
	prev, ok := decodeHash(st.head.Hash)
	if !ok {
		return Entry{}, fmt.Errorf("chain head seq %d has a malformed hash", st.head.Seq)
	}
	e.Seq = st.head.Seq + 1
	e.PrevHash = st.head.Hash
	e.Hash = chainHash(prev, e)
	_, err := tx.StmtContext(ctx, l.stmtInsert).ExecContext(ctx, e.Seq, e.Time.UnixMilli(), e.Role, e.Dataset, e.Counterpart,
		e.ConsentID, e.TicketID, e.Subject, e.Bytes, e.Outcome, e.Detail, e.PrevHash, e.Hash)
	if err != nil {
		return Entry{}, fmt.Errorf("insert seq %d: %w", e.Seq, err)
	}
	st.head = head{Seq: e.Seq, Hash: e.Hash}
	return e, nil
}

// msUTC is t at the precision and zone the log keeps, so that what Append returns equals what is read back.
func msUTC(t time.Time) time.Time { return msUTCFromMilli(t.UnixMilli()) }

func msUTCFromMilli(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// validate checks a caller's entry. Errors never quote field values: a caller's mistake could be a raw
// national id in the wrong field.
func validate(e Entry) error {
	switch e.Role {
	case RoleDP, RoleSP:
	default:
		return fmt.Errorf("%w: role must be %q or %q", ErrInvalid, RoleDP, RoleSP)
	}
	switch e.Outcome {
	case OutcomeDelivered, OutcomeNoRecord, OutcomePending, OutcomeFailed, OutcomeRefused:
	default:
		return fmt.Errorf("%w: outcome must be one of %s, %s, %s, %s, %s", ErrInvalid,
			OutcomeDelivered, OutcomeNoRecord, OutcomePending, OutcomeFailed, OutcomeRefused)
	}
	if e.Dataset == "" {
		return fmt.Errorf("%w: dataset is empty", ErrInvalid)
	}
	if e.Counterpart == "" {
		return fmt.Errorf("%w: counterpart is empty", ErrInvalid)
	}
	if e.Bytes < 0 {
		return fmt.Errorf("%w: bytes is negative", ErrInvalid)
	}
	if e.Subject != "" && !isHash(e.Subject) {
		return fmt.Errorf("%w: subject must be empty or the 64-hex-digit keyed hash from SubjectHash, never a raw id", ErrInvalid)
	}
	for _, f := range []struct {
		name, val string
		max       int
	}{
		{"dataset", e.Dataset, maxField},
		{"counterpart", e.Counterpart, maxField},
		{"consent_id", e.ConsentID, maxField},
		{"ticket_id", e.TicketID, maxField},
		{"detail", e.Detail, maxDetail},
	} {
		if len(f.val) > f.max {
			return fmt.Errorf("%w: %s is %d bytes, more than %d", ErrInvalid, f.name, len(f.val), f.max)
		}
		if !utf8.ValidString(f.val) {
			return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalid, f.name)
		}
		if strings.ContainsFunc(f.val, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return fmt.Errorf("%w: %s contains a control character", ErrInvalid, f.name)
		}
	}
	return nil
}

// WithTransport adds to a transfer's detail the transport that carried it: "transport=tcp", after the
// reason if there is one ("…; transport=tcp"); nothing if transport is empty (no connection was made). It is
// in Detail, not a field of its own, because a field would need a column in every existing log (a schema
// migration) and a second canonical encoding for the hash chain, while Detail is already hashed and shown.
func WithTransport(detail, transport string) string {
	switch {
	case transport == "":
		return detail
	case detail == "":
		return "transport=" + transport
	}
	return detail + "; transport=" + transport
}

// CleanDetail makes s fit an entry's detail: valid UTF-8 without control characters, at most 512 bytes.
// A detail may quote what a peer sent (a refused ticket's key id, a provider's message), and a peer must
// not be able to keep its presentation out of the log with an overlong or odd string.
func CleanDetail(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	return truncate(s, maxDetail)
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
