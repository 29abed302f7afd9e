package backend

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pgMissing names what to install when the server binaries are absent; CI installs it.
const pgMissing = "PostgreSQL server binaries (initdb, pg_ctl) not found: install the Debian package postgresql"

// pgBinDir finds the server binaries: Debian keeps them off PATH, under /usr/lib/postgresql/<major>/bin.
func pgBinDir() string {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if _, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p)
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) < pgMajor(dirs[j]) })
	for i := len(dirs) - 1; i >= 0; i-- {
		_, e1 := os.Stat(filepath.Join(dirs[i], "initdb"))
		_, e2 := os.Stat(filepath.Join(dirs[i], "pg_ctl"))
		if e1 == nil && e2 == nil {
			return dirs[i]
		}
	}
	return ""
}

func pgMajor(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

// startPostgres runs a throwaway PostgreSQL server in a temp dir on a free loopback port and returns a
// DSN for it. The server is stopped when the test ends.
func startPostgres(t *testing.T) string {
	t.Helper()
	bin := pgBinDir()
	if bin == "" {
		t.Skip(pgMissing)
	}
	dir := t.TempDir()
	run := func(name string, args ...string) *exec.Cmd {
		return exec.Command(filepath.Join(bin, name), args...)
	}
	chown := func(string) error { return nil }
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root: run it as the postgres user the Debian package creates.
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skip("running as root and there is no postgres user: install the Debian package postgresql")
		}
		runuser, err := exec.LookPath("runuser")
		if err != nil {
			t.Skip("running as root and runuser is missing: install the Debian package util-linux")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		run = func(name string, args ...string) *exec.Cmd {
			return exec.Command(runuser, append([]string{"-u", "postgres", "--", filepath.Join(bin, name)}, args...)...)
		}
		chown = func(p string) error { return os.Chown(p, uid, gid) }
		// The postgres user must be able to walk down to its directories.
		for _, d := range []string{filepath.Dir(dir), dir} {
			if err := os.Chmod(d, 0o711); err != nil {
				t.Fatal(err)
			}
		}
	}
	data, sock := filepath.Join(dir, "data"), filepath.Join(dir, "run")
	for _, d := range []string{data, sock} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := chown(d); err != nil {
			t.Fatal(err)
		}
	}
	exe := func(cmd *exec.Cmd) {
		t.Helper()
		cmd.Dir = sock
		if out, err := cmd.CombinedOutput(); err != nil {
			log, _ := os.ReadFile(filepath.Join(sock, "log"))
			t.Fatalf("%s: %v\n%s\n%s", strings.Join(cmd.Args, " "), err, out, log)
		}
	}
	exe(run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync"))

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", port, sock)
	exe(run("pg_ctl", "-D", data, "-l", filepath.Join(sock, "log"), "-o", opts, "-w", "-t", "60", "start"))
	t.Cleanup(func() {
		out, err := run("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop").CombinedOutput()
		if err != nil {
			t.Errorf("stop postgres: %v\n%s", err, out)
		}
	})
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
}

func TestPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server")
	}
	dsn := startPostgres(t)

	db, err := sql.Open(DriverPgx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range []string{
		`CREATE TABLE household (
			id text, name text, members int, income numeric(12,2), born date, photo bytea,
			attrs jsonb, head boolean, updated timestamptz, note text)`,
		`INSERT INTO household VALUES
			('A123456789', '王小明', 3, 1234567.89, '1980-02-03', '\x89504e47', '{"district": "大安"}', true, '2025-01-02 03:04:05+00', NULL),
			('A123456789', '陳美麗', 3, NULL, '1982-07-08', 'plain', '[1, 2]', false, NULL, 'x')`,
	} {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	// The DSN goes through a file, as an agency would keep its password.
	dsnFile := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(dsnFile, []byte(dsn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := func(query string) Config {
		c := sqlConfig(DriverPgx, "", query)
		c.SQL.DSNFile = dsnFile
		return c
	}
	const query = `SELECT name, members, income, born, photo, attrs, head, updated, note
		FROM household WHERE id = $1 ORDER BY born`

	t.Run("found", func(t *testing.T) {
		b := mustNew(t, cfg(query))
		res, body, err := fetch(t, b, subject)
		if err != nil || res.Status != Found || res.ContentType != "application/json" {
			t.Fatalf("fetch = %v %v", res, err)
		}
		var got []map[string]any
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("body %s: %v", body, err)
		}
		want := []map[string]any{
			{"name": "王小明", "members": 3.0, "income": "1234567.89", "born": "1980-02-03T00:00:00Z", "photo": "iVBORw==",
				"attrs": map[string]any{"district": "大安"}, "head": true, "updated": "2025-01-02T03:04:05Z", "note": nil},
			{"name": "陳美麗", "members": 3.0, "income": nil, "born": "1982-07-08T00:00:00Z", "photo": "plain",
				"attrs": []any{1.0, 2.0}, "head": false, "updated": nil, "note": "x"},
		}
		// timestamptz comes back in the server's zone; compare instants, not spellings.
		if u, ok := got[0]["updated"].(string); ok {
			if ts, err := time.Parse(time.RFC3339, u); err == nil {
				got[0]["updated"] = ts.UTC().Format(time.RFC3339)
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got  %v\nwant %v", got, want)
		}
	})
	t.Run("no record", func(t *testing.T) {
		b := mustNew(t, cfg(query))
		if res, _, err := fetch(t, b, "Z999999999"); err != nil || res.Status != NoRecord {
			t.Fatalf("fetch = %v %v", res, err)
		}
	})
	t.Run("too many rows", func(t *testing.T) {
		c := cfg(query)
		c.SQL.MaxRows = 1
		b := mustNew(t, c)
		if _, _, err := fetch(t, b, subject); !errors.Is(err, ErrBackend) || !strings.Contains(err.Error(), "max_rows") {
			t.Fatalf("fetch = %v, want a max_rows error", err)
		}
	})
	t.Run("bad query at New", func(t *testing.T) {
		if _, err := New(cfg("SELECT * FROM nosuch WHERE id = $1")); !errors.Is(err, ErrBackend) || !strings.Contains(err.Error(), "sql.query") {
			t.Fatalf("New = %v, want a sql.query error", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		c := cfg("SELECT pg_sleep(30) AS slept, $1::text AS id")
		c.SQL.Timeout = 300 * time.Millisecond
		b := mustNew(t, c)
		start := time.Now()
		_, err := b.Fetch(context.Background(), subject)
		if !errors.Is(err, ErrBackend) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Fetch = %v, want a timeout", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("timeout took %s", d)
		}
	})
	t.Run("unknown role at New", func(t *testing.T) {
		c := sqlConfig(DriverPgx, strings.Replace(dsn, "postgres@", "nobody@", 1), query)
		c.SQL.Timeout = 5 * time.Second
		if _, err := New(c); !errors.Is(err, ErrBackend) || !strings.Contains(err.Error(), "sql: connect") {
			t.Fatalf("New = %v, want a connect error", err)
		}
	})
}
