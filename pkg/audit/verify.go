package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// ErrDamaged is wrapped when the log does not verify and an operation would build on, or delete, the
// damaged part (Purge refuses; Append refuses only when the last row's hash is unusable).
var ErrDamaged = errors.New("audit log does not verify")

// anchors are the two records of the chain's end kept outside the chain, and the purge base.
type anchors struct {
	meta        head
	base        head
	metaMissing bool
	file        head
	fileErr     error
}

// Verify walks the whole chain from the purge base and checks every row's seq, link and hash, then checks
// the chain's end against the meta row and the head file, and the purge base against the last purge
// record. It reports the problem with the lowest seq; an error means the log could not be read at all.
func (l *Log) Verify(ctx context.Context) (Report, error) {
	tx, a, err := l.snapshot(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("audit: verify: %w", err)
	}
	defer tx.Rollback()
	v := newVerifier(a.base)
	if err := scanRows(ctx, tx, `SELECT `+entryCols+` FROM entries ORDER BY seq`, nil, v.add); err != nil {
		return Report{}, fmt.Errorf("audit: verify: %w", err)
	}
	return v.report(a), nil
}

// snapshot opens a read transaction whose view of the database matches the head file read with it. It
// holds the database's write lock meanwhile: writers (in any process) replace the head file and commit
// under that lock, so with it held the file and the last commit are in step. The lock is held for two
// reads only; the walk over the rows runs on the snapshot without it.
func (l *Log) snapshot(ctx context.Context) (*sql.Tx, anchors, error) {
	var a anchors
	if err := l.lock(ctx); err != nil {
		return nil, a, err
	}
	defer l.unlock()
	wtx, err := l.writer.BeginTx(ctx, nil)
	if err != nil {
		return nil, a, fmt.Errorf("take write lock: %w", err)
	}
	defer wtx.Rollback()
	a.file, a.fileErr = readHead(l.headPath)
	rtx, err := l.reader.BeginTx(ctx, nil)
	if err != nil {
		return nil, a, err
	}
	// The first read fixes the snapshot, so it must happen before the write lock is let go.
	err = rtx.QueryRowContext(ctx, `SELECT head_seq, head_hash, base_seq, base_hash FROM meta WHERE id = 1`).
		Scan(&a.meta.Seq, &a.meta.Hash, &a.base.Seq, &a.base.Hash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		// Take the base from the first row, as Append does, so the rest of the chain is still checked.
		a.metaMissing, a.base = true, genesis
		err = rtx.QueryRowContext(ctx, `SELECT seq - 1, prev_hash FROM entries ORDER BY seq LIMIT 1`).Scan(&a.base.Seq, &a.base.Hash)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			rtx.Rollback()
			return nil, a, fmt.Errorf("read first row: %w", err)
		}
	case err != nil:
		rtx.Rollback()
		return nil, a, fmt.Errorf("read meta: %w", err)
	}
	return rtx, a, nil
}

type finding struct {
	seq     int64
	problem string
}

// verifier checks rows fed to it in seq order.
type verifier struct {
	base  head
	prev  head // the last row seen, or the base
	rows  int64
	first *finding // the first problem in the chain itself
	// The last purge record seen: its seq and the last row it says it deleted.
	purgeSeq, purgeTo int64
	purged            bool
	// allowRecorded accepts anchor_mismatch entries: Purge may delete them once they are old.
	allowRecorded bool
}

func newVerifier(base head) *verifier {
	v := &verifier{base: base, prev: base}
	if !isHash(base.Hash) {
		v.fail(base.Seq+1, "the chain base in the meta row (seq %d) has a malformed hash", base.Seq)
	}
	return v
}

func (v *verifier) fail(seq int64, format string, args ...any) {
	if v.first == nil {
		v.first = &finding{seq: seq, problem: fmt.Sprintf(format, args...)}
	}
}

func (v *verifier) add(e Entry, malformed string) error {
	v.rows++
	defer func() { v.prev = head{Seq: e.Seq, Hash: e.Hash} }()
	// Purge records are tracked even past a problem, so the base check does not report a false one.
	_, to, purgeOK := parsePurge(e.Detail)
	if e.Outcome == OutcomePurged && purgeOK {
		v.purged, v.purgeSeq, v.purgeTo = true, e.Seq, to
	}
	if v.first != nil {
		return nil
	}
	switch {
	case malformed != "":
		v.fail(e.Seq, "row %d has a malformed %s column: the table was altered", e.Seq, malformed)
	case e.Seq <= v.base.Seq:
		v.fail(e.Seq, "row %d lies at or before the chain base (seq %d) that the last purge left: a row was inserted", e.Seq, v.base.Seq)
	case e.Seq == v.prev.Seq+2:
		v.fail(v.prev.Seq+1, "row %d is missing: it was deleted", v.prev.Seq+1)
	case e.Seq != v.prev.Seq+1:
		v.fail(v.prev.Seq+1, "rows %d..%d are missing: they were deleted", v.prev.Seq+1, e.Seq-1)
	case e.PrevHash != v.prev.Hash:
		v.fail(e.Seq, "row %d does not link to row %d (its prev_hash differs): rows were reordered, replaced or inserted", e.Seq, v.prev.Seq)
	default:
		prev, _ := decodeHash(v.prev.Hash) // valid: the base was checked, and every earlier row's hash was recomputed
		switch {
		case chainHash(prev, e) != e.Hash:
			v.fail(e.Seq, "row %d does not match its hash: a field of it was changed", e.Seq)
		case e.Outcome == OutcomeAnchorMismatch && !v.allowRecorded:
			v.fail(e.Seq, "row %d records that when it was appended the chain's end and its anchors disagreed (%s): "+
				"rows were removed or changed while the log was closed, or a crash cut an append short; compare with the hub's receipts", e.Seq, e.Detail)
		case e.Outcome == OutcomePurged && !purgeOK:
			v.fail(e.Seq, "row %d is a purge record whose detail is not \"rows N..M\"", e.Seq)
		}
	}
	return nil
}

// report adds the checks that need the whole chain: the purge base against the last purge record, and the
// chain's end against the two anchors.
func (v *verifier) report(a anchors) Report {
	cands := []*finding{v.first}
	if v.base.Seq != 0 || v.purged {
		switch {
		case !v.purged:
			cands = append(cands, &finding{1, fmt.Sprintf("the chain starts after seq %d but no purge record says so: rows 1..%d were deleted outside Purge", v.base.Seq, v.base.Seq)})
		case v.purgeTo != v.base.Seq:
			cands = append(cands, &finding{min(v.purgeTo, v.base.Seq) + 1, fmt.Sprintf("the chain starts after seq %d but the last purge record (row %d) says rows up to %d were purged: the base in the meta row was moved outside Purge",
				v.base.Seq, v.purgeSeq, v.purgeTo)})
		}
	}
	if f := anchorFinding(v.prev, a); f != nil {
		cands = append(cands, f)
	}
	var first *finding
	for _, f := range cands {
		if f != nil && (first == nil || f.seq < first.seq) {
			first = f
		}
	}
	r := Report{Rows: v.rows, OK: first == nil}
	if first != nil {
		r.FirstBadSeq, r.Problem = first.seq, first.problem
	}
	return r
}

// anchorFinding compares the chain's end with the meta row and the head file. The first bad seq is the
// first one where they can disagree: the shared seq if they agree on it but not on its hash, else one past
// the lowest of them (a row that was removed, or the first of rows added outside Append).
func anchorFinding(end head, a anchors) *finding {
	metaDesc, fileDesc := "is missing", ""
	lowest, seqDiffer, hashDiffer, missing := end.Seq, false, false, a.metaMissing
	check := func(h head) {
		lowest = min(lowest, h.Seq)
		seqDiffer = seqDiffer || h.Seq != end.Seq
		hashDiffer = hashDiffer || h.Hash != end.Hash
	}
	if !a.metaMissing {
		check(a.meta)
		metaDesc = "says " + describe(a.meta)
	}
	if a.fileErr != nil {
		missing = true
		fileDesc = "is unreadable (" + a.fileErr.Error() + ")"
	} else {
		check(a.file)
		fileDesc = "says " + describe(a.file)
	}
	if !missing && !seqDiffer && !hashDiffer {
		return nil
	}
	seq := lowest + 1
	var why string
	switch {
	case !seqDiffer && hashDiffer:
		seq = end.Seq
		why = fmt.Sprintf("row %d is not the row the anchors recorded: it was replaced", end.Seq)
	case a.meta.Seq > end.Seq && !a.metaMissing, a.file.Seq > end.Seq && a.fileErr == nil:
		why = fmt.Sprintf("rows after seq %d were removed (or, if only the head file is one ahead, a crash cut an append short)", end.Seq)
	case seqDiffer:
		why = fmt.Sprintf("rows after seq %d were added, or an anchor moved back, outside Append", lowest)
	default:
		why = "an anchor was deleted or damaged"
	}
	return &finding{seq, fmt.Sprintf("the chain ends at %s but the meta row %s and the head file %s: %s",
		describe(end), metaDesc, fileDesc, why)}
}

// parsePurge reads a purge record's detail, "rows N..M".
func parsePurge(detail string) (from, to int64, ok bool) {
	if !strings.HasPrefix(detail, "rows ") {
		return 0, 0, false
	}
	if _, err := fmt.Sscanf(detail, "rows %d..%d", &from, &to); err != nil {
		return 0, 0, false
	}
	return from, to, detail == purgeDetail(from, to) && from <= to
}

func purgeDetail(from, to int64) string { return fmt.Sprintf("rows %d..%d", from, to) }

// querier is what scanRows reads from: a transaction or a database.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// scanRows calls fn with each row of query, which selects entryCols. Columns are scanned loosely, so that a
// table someone altered to hold a wrong type is reported by Verify (malformed names the column) instead of
// making it fail.
func scanRows(ctx context.Context, q querier, query string, args []any, fn func(e Entry, malformed string) error) error {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("read rows: %w", err)
	}
	defer rows.Close()
	var vals [13]any
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return fmt.Errorf("read rows: %w", err)
		}
		var bad []string
		i64 := func(i int, name string) int64 {
			n, ok := vals[i].(int64)
			if !ok {
				bad = append(bad, name)
			}
			return n
		}
		str := func(i int, name string) string {
			s, ok := vals[i].(string)
			if !ok {
				bad = append(bad, name)
			}
			return s
		}
		e := Entry{
			Seq:         i64(0, "seq"),
			Time:        msUTCFromMilli(i64(1, "time_ms")),
			Role:        str(2, "role"),
			Dataset:     str(3, "dataset"),
			Counterpart: str(4, "counterpart"),
			ConsentID:   str(5, "consent_id"),
			TicketID:    str(6, "ticket_id"),
			Subject:     str(7, "subject"),
			Bytes:       i64(8, "bytes"),
			Outcome:     str(9, "outcome"),
			Detail:      str(10, "detail"),
			PrevHash:    str(11, "prev_hash"),
			Hash:        str(12, "hash"),
		}
		if err := fn(e, strings.Join(bad, ", ")); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read rows: %w", err)
	}
	return nil
}
