package backend

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	_ "github.com/mattn/go-sqlite3"    // registers "sqlite3"
)

type sqlBackend struct {
	db      *sql.DB
	query   string
	maxRows int
	timeout time.Duration
}

func (c Config) validateSQL() error {
	s := c.SQL
	switch s.Driver {
	case DriverSQLite, DriverPgx:
	case "":
		return errors.New("sql.driver: required (sqlite3 or pgx)")
	default:
		return fmt.Errorf("sql.driver: %q is not sqlite3 or pgx", s.Driver)
	}
	switch {
	case s.DSN == "" && s.DSNFile == "":
		return errors.New("sql.dsn: required, or sql.dsn_file")
	case s.DSN != "" && s.DSNFile != "":
		return errors.New("sql.dsn_file: set together with sql.dsn; keep only one")
	}
	if strings.TrimSpace(s.Query) == "" {
		return errors.New("sql.query: required")
	}
	if err := checkPlaceholders(s.Driver, s.Query); err != nil {
		return fmt.Errorf("sql.query: %w", err)
	}
	if err := nonNegative("sql.max_rows", s.MaxRows); err != nil {
		return err
	}
	return nonNegative("sql.timeout", s.Timeout)
}

func newSQL(c Config) (*sqlBackend, error) {
	dsn := c.SQL.DSN
	if c.SQL.DSNFile != "" {
		data, err := os.ReadFile(c.SQL.DSNFile)
		if err != nil {
			return nil, fmt.Errorf("%w: sql.dsn_file: %w", ErrBackend, err)
		}
		dsn = strings.TrimSpace(string(data))
		if dsn == "" {
			return nil, fmt.Errorf("%w: sql.dsn_file: %s is empty", ErrBackend, c.SQL.DSNFile)
		}
	}
	b := &sqlBackend{query: c.SQL.Query, maxRows: c.SQL.MaxRows, timeout: c.SQL.Timeout}
	if b.maxRows == 0 {
		b.maxRows = DefaultMaxRows
	}
	if b.timeout == 0 {
		b.timeout = DefaultSQLTimeout
	}
	db, err := sql.Open(c.SQL.Driver, dsn)
	if err != nil {
		return nil, fmt.Errorf("%w: sql.dsn: %w", ErrBackend, err)
	}
	// Idle connections to the agency's database are given back after a while rather than held forever.
	db.SetConnMaxIdleTime(5 * time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("%w: sql: connect: %w", ErrBackend, err)
	}
	// Preparing once makes the database check the query's syntax, tables and columns at start. The
	// statement is not kept: fetches let the driver cache it per connection, which also suits poolers.
	stmt, err := db.PrepareContext(ctx, b.query)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("%w: sql.query: %w", ErrBackend, err)
	}
	stmt.Close()
	b.db = db
	return b, nil
}

func (b *sqlBackend) Close() error { return b.db.Close() }

func (b *sqlBackend) Fetch(ctx context.Context, subject string) (*Result, error) {
	if err := checkSubject(subject); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	wd := newWatchdog(b.timeout, cancel)
	rows, err := b.db.QueryContext(ctx, b.query, subject)
	if err != nil {
		wd.disarm()
		cancel()
		return nil, b.dbErr("query", err, wd)
	}
	more := rows.Next()
	wd.disarm()
	if !more {
		err := rows.Err()
		rows.Close()
		cancel()
		if err != nil {
			return nil, b.dbErr("query", err, wd)
		}
		return &Result{Status: NoRecord, Size: -1}, nil
	}
	cols, err := rowsColumns(rows)
	if err != nil {
		rows.Close()
		cancel()
		return nil, err
	}
	pr, pw := io.Pipe()
	// A writer blocked on a reader that went away with its context would otherwise never return; the
	// first error a pipe is closed with wins, so a finished stream keeps its clean EOF.
	context.AfterFunc(ctx, func() { pw.CloseWithError(b.dbErr("read rows", ctx.Err(), wd)) })
	go func() {
		err := b.encode(rows, cols, pw, wd)
		rows.Close() // before cancel, so a finished query hands its connection back cleanly
		pw.CloseWithError(err)
		cancel()
	}()
	return &Result{Status: Found, ContentType: "application/json", Size: -1, Body: &sqlBody{pr, cancel}}, nil
}

// dbErr words a database error for the log, telling our own timeout apart from the caller's cancel.
func (b *sqlBackend) dbErr(what string, err error, wd *watchdog) error {
	if wd.expired() {
		return failf("sql: %s: no answer from the database within %s: %w", what, b.timeout, context.DeadlineExceeded)
	}
	return failf("sql: %s: %w", what, err)
}

// column is a result column: its name already encoded as a JSON key, and whether it holds JSON text
// that is better nested than quoted.
type column struct {
	key  []byte // `"name":`
	json bool
}

func rowsColumns(rows *sql.Rows) ([]column, error) {
	types, err := rows.ColumnTypes()
	if err != nil {
		return nil, failf("sql: columns: %w", err)
	}
	cols := make([]column, len(types))
	seen := make(map[string]bool, len(types))
	for i, t := range types {
		name := t.Name()
		if seen[name] {
			// An object cannot hold the same key twice without losing one of the values.
			return nil, failf("sql: the query returns column %q twice; name each column apart with AS", name)
		}
		seen[name] = true
		key, _ := json.Marshal(name)
		cols[i] = column{key: append(key, ':')}
		switch strings.ToUpper(t.DatabaseTypeName()) {
		case "JSON", "JSONB":
			cols[i].json = true
		}
	}
	return cols, nil
}

// encode writes the rows as a JSON array of objects, one row at a time, so memory stays at one row
// whatever the result's size. rows is positioned on its first row.
func (b *sqlBackend) encode(rows *sql.Rows, cols []column, w io.Writer, wd *watchdog) error {
	bw := bufio.NewWriterSize(w, 32<<10)
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var obj bytes.Buffer
	enc := json.NewEncoder(&obj)
	enc.SetEscapeHTML(false) // the body is data, not HTML; keep '<' and '&' readable
	if err := bw.WriteByte('['); err != nil {
		return err
	}
	for n := 1; ; n++ {
		if n > b.maxRows {
			return failf("sql: the query returns more than sql.max_rows (%d) rows", b.maxRows)
		}
		if err := rows.Scan(ptrs...); err != nil {
			return failf("sql: scan row: %w", err)
		}
		obj.Reset()
		if n > 1 {
			obj.WriteByte(',')
		}
		obj.WriteByte('{')
		for i, c := range cols {
			if i > 0 {
				obj.WriteByte(',')
			}
			obj.Write(c.key)
			if err := encodeValue(&obj, enc, vals[i], c.json); err != nil {
				return failf("sql: encode column %s: %w", c.key[:len(c.key)-1], err)
			}
		}
		obj.WriteByte('}')
		if _, err := bw.Write(obj.Bytes()); err != nil {
			return err // the reader went away
		}
		wd.arm()
		more := rows.Next()
		wd.disarm()
		if !more {
			break
		}
	}
	if err := rows.Err(); err != nil {
		return b.dbErr("read rows", err, wd)
	}
	if err := bw.WriteByte(']'); err != nil {
		return err
	}
	return bw.Flush()
}

// encodeValue appends one column value as JSON. Bytes and strings that are not valid UTF-8 go as base64
// so no byte is lost or replaced.
func encodeValue(buf *bytes.Buffer, enc *json.Encoder, v any, isJSON bool) error {
	switch x := v.(type) {
	case nil:
		buf.WriteString("null")
		return nil
	case []byte:
		if isJSON && json.Valid(x) {
			return json.Compact(buf, x)
		}
		if !utf8.Valid(x) {
			v = base64.StdEncoding.EncodeToString(x)
		} else {
			v = string(x)
		}
	case string:
		if isJSON && json.Valid([]byte(x)) {
			return json.Compact(buf, []byte(x))
		}
		if !utf8.ValidString(x) {
			v = base64.StdEncoding.EncodeToString([]byte(x))
		}
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			v = fmt.Sprint(x) // JSON has no NaN or Inf
		}
	case float32:
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			v = fmt.Sprint(x)
		}
	}
	if err := enc.Encode(v); err != nil {
		return err
	}
	buf.Truncate(buf.Len() - 1) // Encode ends each value with a newline
	return nil
}

// sqlBody stops the query as soon as the caller closes the body, even one not read to the end.
type sqlBody struct {
	*io.PipeReader
	cancel context.CancelFunc
}

func (b *sqlBody) Close() error {
	b.cancel()
	return b.PipeReader.Close()
}

// watchdog bounds each wait on the database (the query until its first row, then each next row) but
// not the time spent waiting for the caller to read, so a slow reader of a large result is not cut
// while a database that stops answering is.
type watchdog struct {
	d     time.Duration
	t     *time.Timer
	fired atomic.Bool
}

// newWatchdog starts armed.
func newWatchdog(d time.Duration, cancel context.CancelFunc) *watchdog {
	w := &watchdog{d: d}
	w.t = time.AfterFunc(d, func() {
		w.fired.Store(true)
		cancel()
	})
	return w
}

func (w *watchdog) arm()          { w.t.Reset(w.d) }
func (w *watchdog) disarm()       { w.t.Stop() }
func (w *watchdog) expired() bool { return w.fired.Load() }

// checkPlaceholders accepts a query with exactly one bind parameter: one '?' (or ?N, :name, @name, $name)
// for sqlite3; $1, perhaps used more than once, for pgx. String literals, quoted identifiers and
// comments are skipped so a '?' or "$2" inside them does not count.
func checkPlaceholders(driver, q string) error {
	var params []string
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'':
			// E'...' strings in PostgreSQL take backslash escapes.
			esc := driver == DriverPgx && i > 0 && (q[i-1] == 'E' || q[i-1] == 'e') && (i < 2 || !isIdent(q[i-2]))
			end, ok := skipQuoted(q, i, '\'', esc)
			if !ok {
				return errors.New("unterminated string literal")
			}
			i = end
		case c == '"' || (driver == DriverSQLite && c == '`'):
			end, ok := skipQuoted(q, i, c, false)
			if !ok {
				return errors.New("unterminated quoted identifier")
			}
			i = end
		case driver == DriverSQLite && c == '[':
			end := strings.IndexByte(q[i:], ']')
			if end < 0 {
				return errors.New("unterminated [identifier]")
			}
			i += end
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			end := strings.IndexByte(q[i:], '\n')
			if end < 0 {
				i = len(q)
			} else {
				i += end
			}
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			end := strings.Index(q[i+2:], "*/")
			if end < 0 {
				return errors.New("unterminated comment")
			}
			i += 2 + end + 1
		case driver == DriverSQLite && c == '?':
			j := i + 1
			for j < len(q) && isDigit(q[j]) {
				j++
			}
			params = append(params, q[i:j])
			i = j - 1
		case driver == DriverSQLite && (c == ':' || c == '@' || c == '$') && i+1 < len(q) && isIdentStart(q[i+1]):
			j := i + 1
			for j < len(q) && isIdent(q[j]) {
				j++
			}
			params = append(params, q[i:j])
			i = j - 1
		case driver == DriverPgx && c == '$' && (i == 0 || !isIdent(q[i-1])):
			j := i + 1
			for j < len(q) && isDigit(q[j]) {
				j++
			}
			if j > i+1 {
				params = append(params, q[i:j])
				i = j - 1
				continue
			}
			// $tag$ ... $tag$ is a dollar-quoted string.
			for j < len(q) && (isIdentStart(q[j]) || isDigit(q[j])) {
				j++
			}
			if j < len(q) && q[j] == '$' {
				tag := q[i : j+1]
				end := strings.Index(q[j+1:], tag)
				if end < 0 {
					return errors.New("unterminated dollar-quoted string")
				}
				i = j + 1 + end + len(tag) - 1
			}
		case isIdent(c):
			// Skip the rest of a word so "col$1" or "x?" glued to an identifier are not misread.
			for i+1 < len(q) && isIdent(q[i+1]) {
				i++
			}
		}
	}
	want := "?"
	if driver == DriverPgx {
		want = "$1"
	}
	if len(params) == 0 {
		return fmt.Errorf("needs exactly one placeholder (%s) for the subject, found none", want)
	}
	if driver == DriverPgx {
		for _, p := range params {
			if p != "$1" {
				return fmt.Errorf("needs exactly one placeholder ($1) for the subject, found %s", p)
			}
		}
		return nil
	}
	if len(params) > 1 {
		return fmt.Errorf("needs exactly one placeholder (?) for the subject, found %d", len(params))
	}
	return nil
}

// skipQuoted returns the index of the quote closing the one at i; a doubled quote is an escaped one.
func skipQuoted(q string, i int, quote byte, backslash bool) (int, bool) {
	for j := i + 1; j < len(q); j++ {
		switch {
		case backslash && q[j] == '\\':
			j++
		case q[j] == quote:
			if j+1 < len(q) && q[j+1] == quote {
				j++
				continue
			}
			return j, true
		}
	}
	return 0, false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isIdentStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}
func isIdent(c byte) bool { return isIdentStart(c) || isDigit(c) || c == '$' }
