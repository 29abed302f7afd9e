package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Purge deletes the entries older than the retention period and returns how many it deleted. It deletes a
// prefix of the chain only, up to the first entry that is still young enough (an entry stamped earlier
// than one before it is kept with it: keeping longer is always allowed), so the rest still verifies: the
// seq and hash of the last deleted row become the chain base in the meta row, and the purge is itself
// appended, as an entry with outcome "purged" and detail "rows N..M". It refuses, with ErrDamaged, to
// delete rows that do not verify, since they are the evidence.
//
// Purge holds the write lock while it checks and deletes, so appends wait for it: run it off-peak.
func (l *Log) Purge(ctx context.Context) (int64, error) {
	now := l.cfg.Now()
	cutoff := now.Add(-l.cfg.Retention).UnixMilli()
	var n int64
	err := l.write(ctx, func(tx *sql.Tx, st *state) error {
		// Walk in seq order (NOT INDEXED keeps SQLite off the time index, whose order is the wrong one) to the
		// first young row: that reads only the rows about to go, and one row when none are old.
		upTo := st.head.Seq
		var young int64
		err := tx.QueryRowContext(ctx, `SELECT seq FROM entries NOT INDEXED WHERE time_ms >= ? ORDER BY seq LIMIT 1`, cutoff).Scan(&young)
		switch {
		case err == nil:
			upTo = young - 1
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("find cutoff: %w", err)
		}
		if upTo <= st.base.Seq {
			return nil
		}
		v := newVerifier(st.base)
		v.allowRecorded = true
		if err := scanRows(ctx, tx, `SELECT `+entryCols+` FROM entries WHERE seq <= ? ORDER BY seq`, []any{upTo}, v.add); err != nil {
			return err
		}
		if v.first == nil && v.prev.Seq != upTo {
			v.fail(v.prev.Seq+1, "row %d is missing: it was deleted", v.prev.Seq+1)
		}
		if v.first != nil {
			return fmt.Errorf("%w: refusing to purge rows %d..%d: %s", ErrDamaged, st.base.Seq+1, upTo, v.first.problem)
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM entries WHERE seq <= ?`, upTo)
		if err != nil {
			return fmt.Errorf("delete: %w", err)
		}
		if n, err = res.RowsAffected(); err != nil {
			return err
		}
		from := st.base.Seq + 1
		st.base = v.prev
		_, err = l.insert(ctx, tx, st, Entry{Time: msUTC(now), Outcome: OutcomePurged, Detail: purgeDetail(from, upTo)})
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("audit: purge: %w", err)
	}
	return n, nil
}
