// Package backend is where a data provider's connector reads a citizen's dataset from the agency's own
// systems: a directory of per-subject files, a parameterised SQL query, a GET on the agency's HTTP API, or
// the DP-API an agency already runs for the MyData platform (mydata.go). Each dataset in the connector's config maps to one backend; a fetch answers found (with a streamed
// body), no record, or not ready yet (retry later), and every failure wraps ErrBackend so callers can log
// the detail locally and send the service provider only a generic reason.
package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"time"
)

// Status is what the agency's system answered for a subject.
type Status int

// Statuses of a fetch.
const (
	Found    Status = iota // the dataset is in Result.Body
	NoRecord               // the agency holds nothing for this subject
	NotReady               // the agency's system will answer later, after Result.RetryAfter
)

func (s Status) String() string {
	switch s {
	case Found:
		return "found"
	case NoRecord:
		return "no record"
	case NotReady:
		return "not ready"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Result is the answer to one fetch.
type Result struct {
	Status      Status
	RetryAfter  time.Duration // for NotReady: the agency's system answers later ("retry after N seconds")
	ContentType string        // e.g. application/json
	Size        int64         // -1 when unknown
	Body        io.ReadCloser // for Found; the caller closes it; may be large (hundreds of MiB): stream, never buffer whole
}

// Backend reads one dataset for a subject.
type Backend interface {
	// Fetch looks up subject. For Found the caller must close Result.Body, which stays readable while
	// ctx lives; a read error on Body (truncation, size limit, agency failure) wraps ErrBackend.
	Fetch(ctx context.Context, subject string) (*Result, error)
	// Close releases connections and pools; bodies already handed out should be closed first.
	Close() error
}

// Types of backend.
const (
	TypeFile = "file"
	TypeSQL  = "sql"
	TypeHTTP = "http"
	// TypeMyData calls a DP-API written for the running MyData platform, unchanged (mydata.go).
	TypeMyData = "mydata"
)

// SQL drivers.
const (
	DriverSQLite = "sqlite3"
	DriverPgx    = "pgx"
)

// Defaults applied by New to zero values.
const (
	DefaultPattern      = "{subject}.json"
	DefaultMaxRows      = 10000
	DefaultSQLTimeout   = 10 * time.Second
	DefaultHTTPTimeout  = 30 * time.Second
	DefaultHTTPMaxBytes = 1 << 30
)

// SubjectPlaceholder is replaced by the subject in file.pattern and http.url.
const SubjectPlaceholder = "{subject}"

// Config is one dataset's backend as it appears in the connector's YAML (yaml tags; unknown keys are
// rejected by the caller's strict decoder).
type Config struct {
	Type string `yaml:"type"` // file, sql, http
	File struct {
		Dir         string `yaml:"dir"`
		Pattern     string `yaml:"pattern"` // default "{subject}.json"
		ContentType string `yaml:"content_type"`
	} `yaml:"file"`
	SQL struct {
		Driver  string        `yaml:"driver"` // sqlite3 or pgx
		DSN     string        `yaml:"dsn"`
		DSNFile string        `yaml:"dsn_file"` // secret kept apart
		Query   string        `yaml:"query"`    // one placeholder for the subject: ? for sqlite3, $1 for pgx
		MaxRows int           `yaml:"max_rows"`
		Timeout time.Duration `yaml:"timeout"`
	} `yaml:"sql"`
	HTTP struct {
		URL             string        `yaml:"url"` // template with {subject}, path-escaped
		Timeout         time.Duration `yaml:"timeout"`
		BearerTokenFile string        `yaml:"bearer_token_file"`
		ClientCert      string        `yaml:"client_cert"`
		ClientKey       string        `yaml:"client_key"`
		CAFile          string        `yaml:"ca_file"`
		MaxBytes        int64         `yaml:"max_bytes"`
	} `yaml:"http"`
	MyData MyDataConfig `yaml:"mydata"`
}

// ErrBackend wraps every failure; its message is for the DP's own log. Callers send the SP only a generic
// reason.
var ErrBackend = errors.New("backend failure")

// ErrSubject is returned, without touching the backend, for a subject that is not 1 to 32 ASCII letters,
// digits or '-'. It wraps ErrBackend.
var ErrSubject = fmt.Errorf("%w: invalid subject", ErrBackend)

// Validate reports the first bad value with its key. It reads no files and opens no connections; New does.
func (c Config) Validate() error {
	// A section for another type is almost always a copy-paste slip that would otherwise be ignored.
	sections := []struct {
		name string
		v    any
	}{{TypeFile, c.File}, {TypeSQL, c.SQL}, {TypeHTTP, c.HTTP}, {TypeMyData, c.MyData}}
	for _, s := range sections {
		if s.name != c.Type && !reflect.ValueOf(s.v).IsZero() {
			return fmt.Errorf("%s: set, but type is %q", s.name, c.Type)
		}
	}
	switch c.Type {
	case TypeFile:
		return c.validateFile()
	case TypeSQL:
		return c.validateSQL()
	case TypeHTTP:
		return c.validateHTTP()
	case TypeMyData:
		return c.MyData.validate()
	case "":
		return errors.New("type: required (file, sql, http or mydata)")
	}
	return fmt.Errorf("type: %q is not file, sql, http or mydata", c.Type)
}

// New validates c and opens the backend: an SQL backend connects and checks its query, an HTTP backend
// loads its certificates and token, so a mistake shows at start rather than at a citizen's first fetch.
func New(c Config) (Backend, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	switch c.Type {
	case TypeFile:
		return newFile(c)
	case TypeSQL:
		return newSQL(c)
	case TypeMyData:
		return newMyData(c.MyData)
	default:
		return newHTTP(c)
	}
}

// Transfer is what a backend may learn of the transfer a fetch serves; the provider puts it in the
// fetch's context with WithTransfer. Backends that need nothing of it (file, sql, http) never look.
type Transfer struct {
	ID      string    // the ticket's unique id: one transfer
	Expires time.Time // the ticket's expiry: nothing issued for this transfer may outlive it
	Client  string    // who receives the data (the redeemer's SPIFFE ID)
}

type transferKey struct{}

// WithTransfer returns ctx carrying t for the backend's Fetch.
func WithTransfer(ctx context.Context, t Transfer) context.Context {
	return context.WithValue(ctx, transferKey{}, t)
}

// TransferFrom returns the transfer WithTransfer put in ctx.
func TransferFrom(ctx context.Context) (Transfer, bool) {
	t, ok := ctx.Value(transferKey{}).(Transfer)
	return t, ok
}

// checkSubject keeps subjects to a charset that is safe in file names, URLs and logs' neighbourhoods,
// so no backend ever sees '/', '..', '%', spaces or control characters.
func checkSubject(s string) error {
	if len(s) < 1 || len(s) > 32 {
		return ErrSubject
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-':
		default:
			return ErrSubject
		}
	}
	return nil
}

// failf wraps ErrBackend around a message for the DP's log. It must never include the subject, a
// token, a DSN or a payload.
func failf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBackend}, args...)...)
}

// nonNegative checks an optional duration or count: zero means the default, negative is a mistake.
func nonNegative[T int | int64 | time.Duration](key string, v T) error {
	if v < 0 {
		return fmt.Errorf("%s: must not be negative", key)
	}
	return nil
}
