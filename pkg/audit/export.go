package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// Export writes the entries whose Time is at or after since to w as JSON lines, in seq order, and returns
// how many it wrote. It reads one snapshot, so it runs beside appends.
func (l *Log) Export(ctx context.Context, since time.Time, w io.Writer) (int64, error) {
	// Rows keep milliseconds: round since up so that a row stamped before it is never included.
	ms := since.UnixMilli()
	if time.UnixMilli(ms).Before(since) {
		ms++
	}
	// The time index finds the rows; without it SQLite, which has no statistics here, would read the whole
	// table for an export of the last day.
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	var n int64
	err := scanRows(ctx, l.reader, `SELECT `+entryCols+` FROM entries INDEXED BY entries_time WHERE time_ms >= ? ORDER BY seq`, []any{ms},
		func(e Entry, malformed string) error {
			if malformed != "" {
				return fmt.Errorf("%w: row %d has a malformed %s column", ErrDamaged, e.Seq, malformed)
			}
			if err := enc.Encode(e); err != nil {
				return err
			}
			n++
			return nil
		})
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return n, fmt.Errorf("audit: export: %w", err)
	}
	return n, nil
}
