package backend

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func fileConfig(dir, pattern, contentType string) Config {
	var c Config
	c.Type = TypeFile
	c.File.Dir, c.File.Pattern, c.File.ContentType = dir, pattern, contentType
	return c
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFile(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "household")
	writeFile(t, filepath.Join(dir, "A123456789.json"), `{"head":"王小明"}`)
	writeFile(t, filepath.Join(dir, "B200000000.json"), `{"head":"late"}`)
	writeFile(t, filepath.Join(dir, "B200000000.json.retry"), "90\n")
	writeFile(t, filepath.Join(dir, "C300000000.json.retry"), "soon")
	writeFile(t, filepath.Join(dir, "D400000000", "household.csv"), "name,role\n王小明,head\n")
	writeFile(t, filepath.Join(dir, "E500000000.pdf"), "%PDF-1.7")
	writeFile(t, filepath.Join(root, "secret.json"), `{"not":"yours"}`)
	if err := os.Symlink(filepath.Join(root, "secret.json"), filepath.Join(dir, "EVIL.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "F600000000.json"), 0o755); err != nil {
		t.Fatal(err)
	}

	type fileCase struct {
		name        string
		pattern, ct string
		subject     string
		status      Status
		retry       time.Duration
		wantCT      string
		body        string
		err         error // wanted, besides ErrBackend
	}
	tests := []fileCase{
		{name: "found", subject: subject, status: Found, wantCT: "application/json", body: `{"head":"王小明"}`},
		{name: "no record", subject: "Z999999999", status: NoRecord},
		{name: "retry file wins over data", subject: "B200000000", status: NotReady, retry: 90 * time.Second},
		{name: "retry file not a number", subject: "C300000000", err: ErrBackend},
		{name: "subdirectory pattern, csv", pattern: "{subject}/household.csv", subject: "D400000000", status: Found, wantCT: "text/csv", body: "name,role\n王小明,head\n"},
		{name: "pdf", pattern: "{subject}.pdf", subject: "E500000000", status: Found, wantCT: "application/pdf", body: "%PDF-1.7"},
		{name: "configured content type", ct: "application/vnd.moi+json", subject: subject, status: Found, wantCT: "application/vnd.moi+json", body: `{"head":"王小明"}`},
		{name: "unknown extension", pattern: "{subject}.bin", subject: "Z999999999", status: NoRecord},
		{name: "symlink out of dir", subject: "EVIL", err: ErrBackend},
		{name: "directory, not a file", subject: "F600000000", err: ErrBackend},
	}
	for _, s := range badSubjects {
		tests = append(tests, fileCase{name: "bad subject " + strings.ToValidUTF8(s, "?"), subject: s, err: ErrSubject})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustNew(t, fileConfig(dir, tt.pattern, tt.ct))
			res, body, err := fetch(t, b, tt.subject)
			if tt.err != nil {
				if !errors.Is(err, tt.err) || !errors.Is(err, ErrBackend) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				if err != nil && strings.Contains(err.Error(), tt.subject) && tt.subject != "" {
					t.Fatalf("error %q names the subject", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != tt.status || res.RetryAfter != tt.retry {
				t.Fatalf("status %s retry %s, want %s %s", res.Status, res.RetryAfter, tt.status, tt.retry)
			}
			if tt.status != Found {
				return
			}
			if res.ContentType != tt.wantCT || string(body) != tt.body || res.Size != int64(len(tt.body)) {
				t.Fatalf("got %q %q size %d, want %q %q", res.ContentType, body, res.Size, tt.wantCT, tt.body)
			}
		})
	}
}

func TestFileNew(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "plain"), "x")
	for _, d := range []string{filepath.Join(dir, "missing"), filepath.Join(dir, "plain")} {
		if _, err := New(fileConfig(d, "", "")); !errors.Is(err, ErrBackend) || !strings.Contains(err.Error(), "file.dir") {
			t.Errorf("New(dir %s) = %v, want a file.dir error", d, err)
		}
	}
	// A relative dir is taken from the working directory at start, not at each fetch.
	t.Chdir(dir)
	writeFile(t, filepath.Join(dir, "data", subject+".json"), "{}")
	b := mustNew(t, fileConfig("data", "", ""))
	t.Chdir(t.TempDir())
	if res, _, err := fetch(t, b, subject); err != nil || res.Status != Found {
		t.Fatalf("fetch after chdir: %v %v", res, err)
	}
}

func TestFileCancelled(t *testing.T) {
	b := mustNew(t, fileConfig(t.TempDir(), "", ""))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Fetch(ctx, subject); !errors.Is(err, context.Canceled) || !errors.Is(err, ErrBackend) {
		t.Fatalf("Fetch on a cancelled context = %v", err)
	}
}
