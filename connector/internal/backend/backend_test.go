package backend

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/configfile"
)

const subject = "A123456789"

// badSubjects must all be refused before a backend is touched.
var badSubjects = []string{
	"",
	"..",
	"../etc/passwd",
	"a/b",
	`a\b`,
	"%2e%2e",
	"A123 456",
	"A123\x00",
	"A123\n",
	"ＡＢＣ", // full-width letters are letters, but not ASCII ones
	strings.Repeat("A", 33),
}

func TestCheckSubject(t *testing.T) {
	for _, s := range []string{"A123456789", "a", "test-0001", strings.Repeat("Z", 32)} {
		if err := checkSubject(s); err != nil {
			t.Errorf("checkSubject(%q) = %v, want nil", s, err)
		}
	}
	for _, s := range badSubjects {
		err := checkSubject(s)
		if !errors.Is(err, ErrSubject) || !errors.Is(err, ErrBackend) {
			t.Errorf("checkSubject(%q) = %v, want ErrSubject wrapping ErrBackend", s, err)
		}
	}
}

func TestValidate(t *testing.T) {
	file := func(f func(*Config)) Config {
		var c Config
		c.Type = TypeFile
		c.File.Dir = "/srv/moi/household"
		if f != nil {
			f(&c)
		}
		return c
	}
	sqlc := func(f func(*Config)) Config {
		var c Config
		c.Type = TypeSQL
		c.SQL.Driver = DriverSQLite
		c.SQL.DSN = "file:/srv/moi.db?mode=ro"
		c.SQL.Query = "SELECT name FROM household WHERE id = ?"
		if f != nil {
			f(&c)
		}
		return c
	}
	httpc := func(f func(*Config)) Config {
		var c Config
		c.Type = TypeHTTP
		c.HTTP.URL = "https://api.moi.example/household/{subject}"
		if f != nil {
			f(&c)
		}
		return c
	}
	tests := []struct {
		name string
		c    Config
		want string // "" for valid, else a substring of the error
	}{
		{"no type", Config{}, "type: required"},
		{"unknown type", Config{Type: "ftp"}, `type: "ftp" is not`},
		{"other section set", file(func(c *Config) { c.SQL.Query = "SELECT 1" }), `sql: set, but type is "file"`},

		{"file ok", file(nil), ""},
		{"file pattern ok", file(func(c *Config) { c.File.Pattern = "{subject}/household.csv" }), ""},
		{"file content type ok", file(func(c *Config) { c.File.ContentType = "application/json; charset=utf-8" }), ""},
		{"file no dir", file(func(c *Config) { c.File.Dir = "" }), "file.dir: required"},
		{"file pattern without subject", file(func(c *Config) { c.File.Pattern = "all.json" }), "file.pattern:"},
		{"file pattern climbs out", file(func(c *Config) { c.File.Pattern = "../{subject}.json" }), "file.pattern:"},
		{"file pattern absolute", file(func(c *Config) { c.File.Pattern = "/etc/{subject}" }), "file.pattern:"},
		{"file bad content type", file(func(c *Config) { c.File.ContentType = "json;;" }), "file.content_type:"},

		{"sql ok", sqlc(nil), ""},
		{"sql pgx ok", sqlc(func(c *Config) {
			c.SQL.Driver = DriverPgx
			c.SQL.Query = "SELECT * FROM h WHERE id = $1 OR alias = $1"
		}), ""},
		{"sql dsn file ok", sqlc(func(c *Config) { c.SQL.DSN, c.SQL.DSNFile = "", "/etc/mydata/dsn" }), ""},
		{"sql no driver", sqlc(func(c *Config) { c.SQL.Driver = "" }), "sql.driver: required"},
		{"sql bad driver", sqlc(func(c *Config) { c.SQL.Driver = "mysql" }), "sql.driver:"},
		{"sql no dsn", sqlc(func(c *Config) { c.SQL.DSN = "" }), "sql.dsn: required"},
		{"sql both dsns", sqlc(func(c *Config) { c.SQL.DSNFile = "/etc/dsn" }), "sql.dsn_file:"},
		{"sql no query", sqlc(func(c *Config) { c.SQL.Query = " " }), "sql.query: required"},
		{"sql no placeholder", sqlc(func(c *Config) { c.SQL.Query = "SELECT * FROM h" }), "sql.query: needs exactly one placeholder"},
		{"sql two placeholders", sqlc(func(c *Config) { c.SQL.Query = "SELECT * FROM h WHERE a = ? AND b = ?" }), "sql.query: needs exactly one placeholder"},
		{"sql pgx with ?", sqlc(func(c *Config) { c.SQL.Driver = DriverPgx }), "sql.query: needs exactly one placeholder ($1)"},
		{"sql pgx $2", sqlc(func(c *Config) {
			c.SQL.Driver = DriverPgx
			c.SQL.Query = "SELECT * FROM h WHERE a = $1 AND b = $2"
		}), "sql.query: needs exactly one placeholder ($1) for the subject, found $2"},
		{"sql negative max rows", sqlc(func(c *Config) { c.SQL.MaxRows = -1 }), "sql.max_rows:"},
		{"sql negative timeout", sqlc(func(c *Config) { c.SQL.Timeout = -time.Second }), "sql.timeout:"},

		{"http ok", httpc(nil), ""},
		{"http in query ok", httpc(func(c *Config) { c.HTTP.URL = "http://127.0.0.1:8080/api?id={subject}" }), ""},
		{"http mtls ok", httpc(func(c *Config) {
			c.HTTP.ClientCert, c.HTTP.ClientKey, c.HTTP.CAFile = "/c.pem", "/k.pem", "/ca.pem"
		}), ""},
		{"http no url", httpc(func(c *Config) { c.HTTP.URL = "" }), "http.url: required"},
		{"http no subject", httpc(func(c *Config) { c.HTTP.URL = "https://api.example/household" }), "http.url:"},
		{"http bad scheme", httpc(func(c *Config) { c.HTTP.URL = "ftp://api.example/{subject}" }), "http.url:"},
		{"http no host", httpc(func(c *Config) { c.HTTP.URL = "https:///{subject}" }), "http.url:"},
		{"http subject in host", httpc(func(c *Config) { c.HTTP.URL = "https://{subject}.example/x" }), "http.url: {subject} must be in the path"},
		{"http credentials in url", httpc(func(c *Config) { c.HTTP.URL = "https://u:p@api.example/{subject}" }), "http.url: holds credentials"},
		{"http cert without key", httpc(func(c *Config) { c.HTTP.ClientCert = "/c.pem" }), "http.client_key:"},
		{"http cert on plain http", httpc(func(c *Config) {
			c.HTTP.URL = "http://api.example/{subject}"
			c.HTTP.ClientCert, c.HTTP.ClientKey = "/c.pem", "/k.pem"
		}), "http.client_cert: needs an https"},
		{"http ca on plain http", httpc(func(c *Config) {
			c.HTTP.URL = "http://api.example/{subject}"
			c.HTTP.CAFile = "/ca.pem"
		}), "http.ca_file: needs an https"},
		{"http negative timeout", httpc(func(c *Config) { c.HTTP.Timeout = -1 }), "http.timeout:"},
		{"http negative max bytes", httpc(func(c *Config) { c.HTTP.MaxBytes = -1 }), "http.max_bytes:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want != "" && err == nil:
				t.Fatalf("Validate() = nil, want an error with %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("Validate() = %q, want it to contain %q", err, tt.want)
			}
			if err != nil {
				if _, nerr := New(tt.c); nerr == nil || nerr.Error() != err.Error() {
					t.Fatalf("New() = %v, want the Validate error", nerr)
				}
			}
		})
	}
}

// TestConfigYAML checks the yaml tags against the connector's strict decoder.
func TestConfigYAML(t *testing.T) {
	const doc = `
type: sql
sql:
  driver: pgx
  dsn_file: /etc/mydata/moi.dsn
  query: SELECT * FROM household WHERE id = $1
  max_rows: 50
  timeout: 3s
`
	var c Config
	if err := configfile.Decode([]byte(doc), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.SQL.DSNFile != "/etc/mydata/moi.dsn" || c.SQL.MaxRows != 50 || c.SQL.Timeout != 3*time.Second {
		t.Fatalf("decoded %+v", c.SQL)
	}
	if err := configfile.Decode([]byte("type: http\nhttp:\n  uri: https://x/{subject}\n"), &c); err == nil {
		t.Fatal("unknown key http.uri accepted")
	}
}

func TestCheckPlaceholders(t *testing.T) {
	tests := []struct {
		driver, q string
		ok        bool
	}{
		{DriverSQLite, "SELECT * FROM h WHERE id = ?", true},
		{DriverSQLite, "SELECT * FROM h WHERE id = ?1", true},
		{DriverSQLite, "SELECT * FROM h WHERE id = :id", true},
		{DriverSQLite, "SELECT * FROM h WHERE id = @id", true},
		{DriverSQLite, "SELECT '?' AS q, \"a?\" FROM h WHERE id = ?", true},
		{DriverSQLite, "SELECT 'it''s ?' FROM h WHERE id = ? -- why?\n", true},
		{DriverSQLite, "SELECT [odd?name], `x?` FROM h /* ? */ WHERE id = ?", true},
		{DriverSQLite, "SELECT * FROM h WHERE id = ? OR id = ?", false},
		{DriverSQLite, "SELECT * FROM h WHERE id = :a OR x = ?", false},
		{DriverSQLite, "SELECT * FROM h", false},
		{DriverSQLite, "SELECT '? FROM h WHERE id = ?", false},
		{DriverPgx, "SELECT * FROM h WHERE id = $1", true},
		{DriverPgx, "SELECT * FROM h WHERE id = $1::text OR alias = $1", true},
		{DriverPgx, "SELECT attrs ? 'k', '$2', $$ $2 $$, $t$ $3 $t$ FROM h WHERE id = $1", true},
		{DriverPgx, "SELECT E'\\'$2' FROM h WHERE id = $1", true},
		{DriverPgx, "SELECT col$2 FROM h WHERE id = $1", true},
		{DriverPgx, "SELECT * FROM h WHERE id = $1 AND b = $2", false},
		{DriverPgx, "SELECT * FROM h WHERE id = $10", false},
		{DriverPgx, "SELECT * FROM h WHERE id = ?", false},
		{DriverPgx, "SELECT $x$ unterminated FROM h WHERE id = $1", false},
	}
	for _, tt := range tests {
		err := checkPlaceholders(tt.driver, tt.q)
		if (err == nil) != tt.ok {
			t.Errorf("checkPlaceholders(%s, %q) = %v, want ok=%v", tt.driver, tt.q, err, tt.ok)
		}
	}
}

func TestStatusString(t *testing.T) {
	for s, want := range map[Status]string{Found: "found", NoRecord: "no record", NotReady: "not ready", 7: "Status(7)"} {
		if s.String() != want {
			t.Errorf("%d.String() = %q, want %q", int(s), s.String(), want)
		}
	}
}

// fetch runs one fetch and reads the whole body, failing the test on a fetch error.
func fetch(t *testing.T, b Backend, subj string) (*Result, []byte, error) {
	t.Helper()
	res, err := b.Fetch(context.Background(), subj)
	if err != nil {
		return nil, nil, err
	}
	if res.Status != Found {
		if res.Body != nil {
			t.Fatalf("%s result carries a body", res.Status)
		}
		return res, nil, nil
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	return res, data, err
}

func mustNew(t *testing.T, c Config) Backend {
	t.Helper()
	b, err := New(c)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}
