package backend

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// sqliteDB makes a household-registration database in a temp dir and returns its path.
func sqliteDB(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "moi.db")
	db, err := sql.Open(DriverSQLite, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	stmts := []string{
		`CREATE TABLE household (
			id TEXT, name TEXT, role TEXT, born DATE, members INTEGER, area REAL,
			head BOOLEAN, photo BLOB, attrs JSON, note TEXT)`,
		`INSERT INTO household VALUES
			('A123456789', '王小明', 'head',   '1980-02-03', 3, 81.5, 1, x'89504e470d0a1a0a', '{"district":"大安","floor":3}', NULL),
			('A123456789', '陳美麗', 'spouse', '1982-07-08', 3, 81.5, 0, CAST('<ok & fine>' AS BLOB), '[1,2]', 'x'),
			('A123456789', '王小華', 'child',  '2015-11-30', 3, 81.5, 0, NULL, NULL, NULL),
			('T000000001', 'one', 'head', NULL, 1, NULL, 1, NULL, NULL, NULL),
			('T000000003', 'a', 'head', NULL, 1, NULL, 1, NULL, NULL, NULL),
			('T000000003', 'b', 'x', NULL, 1, NULL, 1, NULL, NULL, NULL),
			('T000000003', 'c', 'x', NULL, 1, NULL, 1, NULL, NULL, NULL)`,
	}
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	return path
}

func sqlConfig(driver, dsn, query string) Config {
	var c Config
	c.Type = TypeSQL
	c.SQL.Driver, c.SQL.DSN, c.SQL.Query = driver, dsn, query
	return c
}

const householdQuery = `SELECT name, role, born, members, area, head, photo, attrs, note
	FROM household WHERE id = ? ORDER BY born`

func TestSQLite(t *testing.T) {
	path := sqliteDB(t)
	tests := []struct {
		name    string
		query   string
		maxRows int
		subject string
		status  Status
		want    []map[string]any // nil with Found: only check it decodes
		err     string           // substring of a wanted ErrBackend, on Fetch or on reading the body
	}{
		{
			name: "found, several rows and types", query: householdQuery, subject: subject, status: Found,
			want: []map[string]any{
				{"name": "王小明", "role": "head", "born": "1980-02-03T00:00:00Z", "members": 3.0, "area": 81.5, "head": true,
					"photo": "iVBORw0KGgo=", "attrs": map[string]any{"district": "大安", "floor": 3.0}, "note": nil},
				{"name": "陳美麗", "role": "spouse", "born": "1982-07-08T00:00:00Z", "members": 3.0, "area": 81.5, "head": false,
					"photo": "<ok & fine>", "attrs": []any{1.0, 2.0}, "note": "x"},
				{"name": "王小華", "role": "child", "born": "2015-11-30T00:00:00Z", "members": 3.0, "area": 81.5, "head": false,
					"photo": nil, "attrs": nil, "note": nil},
			},
		},
		{name: "one row", query: "SELECT name FROM household WHERE id = :id", subject: "T000000001", status: Found,
			want: []map[string]any{{"name": "one"}}},
		{name: "exactly max rows", query: "SELECT name FROM household WHERE id = ? ORDER BY name", maxRows: 3, subject: "T000000003", status: Found,
			want: []map[string]any{{"name": "a"}, {"name": "b"}, {"name": "c"}}},
		{name: "no record", query: householdQuery, subject: "Z999999999", status: NoRecord},
		{name: "too many rows", query: householdQuery, maxRows: 2, subject: subject, err: "more than sql.max_rows (2)"},
		{name: "duplicate column", query: "SELECT name, name FROM household WHERE id = ?", subject: subject, err: `column "name" twice`},
		{name: "bad subject", query: householdQuery, subject: "A1'; DROP TABLE household; --", err: "invalid subject"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := sqlConfig(DriverSQLite, path, tt.query)
			c.SQL.MaxRows = tt.maxRows
			b := mustNew(t, c)
			res, body, err := fetch(t, b, tt.subject)
			if tt.err != "" {
				if !errors.Is(err, ErrBackend) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want ErrBackend with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != tt.status {
				t.Fatalf("status %s, want %s", res.Status, tt.status)
			}
			if tt.status != Found {
				return
			}
			if res.ContentType != "application/json" || res.Size != -1 {
				t.Fatalf("content type %q size %d", res.ContentType, res.Size)
			}
			var got []map[string]any
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("body %s: %v", body, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %v\nwant %v", got, tt.want)
			}
		})
	}
}

// TestSQLiteColumnOrder checks objects keep the query's column order, which people reading the data
// expect, and that '<' and '&' are not HTML-escaped.
func TestSQLiteColumnOrder(t *testing.T) {
	b := mustNew(t, sqlConfig(DriverSQLite, sqliteDB(t), "SELECT role, name, '<&>' AS sign FROM household WHERE id = ? AND role = 'head'"))
	_, body, err := fetch(t, b, subject)
	if err != nil {
		t.Fatal(err)
	}
	if want := `[{"role":"head","name":"王小明","sign":"<&>"}]`; string(body) != want {
		t.Fatalf("body %s, want %s", body, want)
	}
}

func TestSQLiteNew(t *testing.T) {
	path := sqliteDB(t)
	dsnFile := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(dsnFile, []byte(path+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := sqlConfig(DriverSQLite, "", householdQuery)
	c.SQL.DSNFile = dsnFile
	b := mustNew(t, c)
	if res, _, err := fetch(t, b, subject); err != nil || res.Status != Found {
		t.Fatalf("fetch through dsn_file: %v %v", res, err)
	}

	tests := []struct {
		name string
		c    Config
		want string
	}{
		{"unknown table", sqlConfig(DriverSQLite, path, "SELECT * FROM nosuch WHERE id = ?"), "sql.query: no such table"},
		{"unknown column", sqlConfig(DriverSQLite, path, "SELECT nosuch FROM household WHERE id = ?"), "sql.query: no such column"},
		{"syntax", sqlConfig(DriverSQLite, path, "SELEC name FROM household WHERE id = ?"), "sql.query:"},
		{"missing dsn file", func() Config {
			c := sqlConfig(DriverSQLite, "", householdQuery)
			c.SQL.DSNFile = filepath.Join(t.TempDir(), "nosuch")
			return c
		}(), "sql.dsn_file:"},
		{"unreachable database", sqlConfig(DriverSQLite, "file:"+filepath.Join(t.TempDir(), "nodir", "x.db")+"?mode=ro", householdQuery), "sql: connect:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.c)
			if !errors.Is(err, ErrBackend) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want ErrBackend with %q", err, tt.want)
			}
		})
	}
}

// slowQuery never yields its single row: counting an endless series.
const slowQuery = `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)
	SELECT count(*) AS n FROM c WHERE ? IS NOT NULL`

func TestSQLiteTimeout(t *testing.T) {
	c := sqlConfig(DriverSQLite, sqliteDB(t), slowQuery)
	c.SQL.Timeout = 200 * time.Millisecond
	b := mustNew(t, c)
	start := time.Now()
	_, err := b.Fetch(context.Background(), subject)
	if !errors.Is(err, ErrBackend) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Fetch = %v, want a timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("timeout took %s", d)
	}
	// The pool is still usable afterwards.
	c.SQL.Query = householdQuery
	b2 := mustNew(t, c)
	if res, _, err := fetch(t, b2, subject); err != nil || res.Status != Found {
		t.Fatalf("fetch after timeout: %v %v", res, err)
	}
}

// manyRows yields 50000 rows: far more than one pipe write.
const manyRows = `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 50000)
	SELECT x, 'row ' || x AS label FROM c WHERE ? IS NOT NULL`

func TestSQLiteStreaming(t *testing.T) {
	c := sqlConfig(DriverSQLite, sqliteDB(t), manyRows)
	c.SQL.MaxRows = 1 << 20
	b := mustNew(t, c)

	t.Run("whole result decodes", func(t *testing.T) {
		res, err := b.Fetch(context.Background(), subject)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		dec := json.NewDecoder(res.Body)
		if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
			t.Fatalf("first token %v %v", tok, err)
		}
		n := 0
		for dec.More() {
			var row struct {
				X     int    `json:"x"`
				Label string `json:"label"`
			}
			if err := dec.Decode(&row); err != nil {
				t.Fatal(err)
			}
			n++
			if row.X != n {
				t.Fatalf("row %d has x %d", n, row.X)
			}
		}
		if n != 50000 {
			t.Fatalf("%d rows", n)
		}
	})

	t.Run("early close stops the query", func(t *testing.T) {
		res, err := b.Fetch(context.Background(), subject)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(res.Body, make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
		if err := res.Body.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := res.Body.Read(make([]byte, 1)); err == nil {
			t.Fatal("read after close succeeded")
		}
	})

	t.Run("cancel mid-stream is an error on read", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		res, err := b.Fetch(ctx, subject)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if _, err := io.ReadFull(res.Body, make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
		cancel()
		_, err = io.Copy(io.Discard, res.Body)
		if !errors.Is(err, ErrBackend) {
			t.Fatalf("read after cancel = %v, want ErrBackend", err)
		}
	})

	t.Run("concurrent fetches", func(t *testing.T) {
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				res, err := b.Fetch(context.Background(), subject)
				if err != nil {
					t.Error(err)
					return
				}
				defer res.Body.Close()
				if !json.Valid(mustReadAll(t, res.Body)) {
					t.Error("invalid JSON")
				}
			})
		}
		wg.Wait()
	})
}

func mustReadAll(t *testing.T, r io.Reader) []byte {
	t.Helper()
	data, err := io.ReadAll(r)
	if err != nil {
		t.Error(err)
	}
	return data
}

func TestEncodeValue(t *testing.T) {
	tests := []struct {
		v      any
		isJSON bool
		want   string
	}{
		{nil, false, "null"},
		{math.NaN(), false, `"NaN"`},
		{math.Inf(-1), false, `"-Inf"`},
		{int64(-7), false, "-7"},
		{3.25, false, "3.25"},
		{true, false, "true"},
		{"a\"b<", false, `"a\"b<"`},
		{[]byte("plain"), false, `"plain"`},
		{[]byte{0xff, 0x00, 0x80}, false, `"/wCA"`},
		{string([]byte{0xff}), false, `"/w=="`},
		{[]byte(`{ "a" : 1 }`), true, `{"a":1}`},
		{`not json`, true, `"not json"`},
		{time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC), false, `"2024-05-06T07:08:09Z"`},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := encodeValue(&buf, enc, tt.v, tt.isJSON); err != nil {
			t.Errorf("encodeValue(%#v): %v", tt.v, err)
			continue
		}
		if buf.String() != tt.want {
			t.Errorf("encodeValue(%#v) = %s, want %s", tt.v, buf.String(), tt.want)
		}
	}
}
