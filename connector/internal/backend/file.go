package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// retrySuffix marks a file beside the data file that says "not ready, retry after N seconds"; demos and
// tests use it to play a slow agency system.
const retrySuffix = ".retry"

// contentTypes maps the extensions agencies publish datasets in (see the seeds: JSON, CSV, PDF, XML).
var contentTypes = map[string]string{
	".json": "application/json",
	".csv":  "text/csv",
	".pdf":  "application/pdf",
	".xml":  "application/xml",
}

type fileBackend struct {
	dir         string // absolute and clean
	pattern     string
	contentType string
}

func (c Config) validateFile() error {
	f := c.File
	if f.Dir == "" {
		return errors.New("file.dir: required")
	}
	if f.Pattern != "" {
		if !strings.Contains(f.Pattern, SubjectPlaceholder) {
			return fmt.Errorf("file.pattern: %q does not contain %s", f.Pattern, SubjectPlaceholder)
		}
		if !filepath.IsLocal(strings.ReplaceAll(f.Pattern, SubjectPlaceholder, "x")) {
			return fmt.Errorf("file.pattern: %q is not a relative path that stays inside file.dir", f.Pattern)
		}
	}
	if f.ContentType != "" {
		if _, _, err := mime.ParseMediaType(f.ContentType); err != nil {
			return fmt.Errorf("file.content_type: %q: %v", f.ContentType, err)
		}
	}
	return nil
}

func newFile(c Config) (*fileBackend, error) {
	dir, err := filepath.Abs(c.File.Dir)
	if err != nil {
		return nil, fmt.Errorf("%w: file.dir: %w", ErrBackend, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: file.dir: %w", ErrBackend, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%w: file.dir: %s is not a directory", ErrBackend, dir)
	}
	b := &fileBackend{dir: dir, pattern: c.File.Pattern, contentType: c.File.ContentType}
	if b.pattern == "" {
		b.pattern = DefaultPattern
	}
	if b.contentType == "" {
		b.contentType = contentTypes[strings.ToLower(filepath.Ext(b.pattern))]
	}
	if b.contentType == "" {
		b.contentType = "application/octet-stream"
	}
	return b, nil
}

func (b *fileBackend) Fetch(ctx context.Context, subject string) (*Result, error) {
	if err := checkSubject(subject); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, failf("file: %w", err)
	}
	// The subject's charset already rules out '/' and "..": this lexical check is the second lock,
	// and os.Root the third, since it also refuses symlinks that lead out of the directory.
	full := filepath.Join(b.dir, strings.ReplaceAll(b.pattern, SubjectPlaceholder, subject))
	rel, err := filepath.Rel(b.dir, full)
	if err != nil || !filepath.IsLocal(rel) {
		return nil, failf("file: path escapes file.dir")
	}
	// Opened per fetch so an agency that replaces the whole directory (a deploy, a sync) is read afresh.
	root, err := os.OpenRoot(b.dir)
	if err != nil {
		return nil, failf("file: open file.dir: %w", err)
	}
	defer root.Close()

	if wait, ok, err := readRetry(root, rel+retrySuffix); err != nil {
		return nil, err
	} else if ok {
		return &Result{Status: NotReady, RetryAfter: wait, Size: -1}, nil
	}

	f, err := root.Open(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return &Result{Status: NoRecord, Size: -1}, nil
	}
	if err != nil {
		return nil, failf("file: open data file: %w", stripPath(err))
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, failf("file: stat data file: %w", stripPath(err))
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, failf("file: data file is a %s, not a regular file", fi.Mode().Type())
	}
	return &Result{Status: Found, ContentType: b.contentType, Size: fi.Size(), Body: f}, nil
}

func (b *fileBackend) Close() error { return nil }

// readRetry reads a retry file: ok is false when there is none.
func readRetry(root *os.Root, name string) (wait time.Duration, ok bool, err error) {
	f, err := root.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, failf("file: open retry file: %w", stripPath(err))
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 64)) // a number of seconds; anything longer is not one
	if err != nil {
		return 0, false, failf("file: read retry file: %w", stripPath(err))
	}
	secs, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 32)
	if err != nil || secs < 0 {
		return 0, false, failf("file: retry file does not hold a whole number of seconds")
	}
	return time.Duration(secs) * time.Second, true, nil
}

// stripPath drops the path from a file error, since the path holds the subject's id, which the DP's
// log must not carry.
func stripPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}
