package provider

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mydatafed/mydata/connector/internal/backend"
)

// RetireGrace is how long a backend replaced by SetDatasets stays open at least. A transfer looks its
// dataset up a few milliseconds before it calls the backend (ticket record, subject, recipient key), so a
// transfer that found the old set just before the swap still reaches an open backend.
const RetireGrace = 30 * time.Second

// errRetired is a fetch from a backend closed after a reload; only a transfer that looked its dataset up
// more than RetireGrace before calling the backend can see it.
var errRetired = errors.New("backend failure: the backend was replaced by a configuration reload and closed")

// datasetSet is the datasets a provider serves: an immutable map behind an atomic pointer, swapped whole on
// reload, so a transfer sees either the old set or the new one and keeps the backend it looked up.
type datasetSet struct {
	cur atomic.Pointer[map[string]Dataset]
	// grace is RetireGrace, shorter in tests.
	grace time.Duration
}

func (s *datasetSet) lookup(id string) (Dataset, bool) {
	m := s.cur.Load()
	if m == nil {
		return Dataset{}, false
	}
	ds, ok := (*m)[id]
	return ds, ok
}

// store puts m in force, each backend wrapped so that it is closed only when the transfers using it end,
// and returns the set it replaced.
func (s *datasetSet) store(m map[string]Dataset) map[string]Dataset {
	next := make(map[string]Dataset, len(m))
	for id, ds := range m {
		if _, ok := ds.Backend.(*inUse); !ok && ds.Backend != nil {
			ds.Backend = &inUse{Backend: ds.Backend}
		}
		next[id] = ds
	}
	old := s.cur.Swap(&next)
	if old == nil {
		return nil
	}
	return *old
}

// SetDatasets replaces the datasets this provider serves, as a configuration reload does. A transfer that
// has looked up its dataset finishes on the backend it found; each backend of the old set that the new one
// does not reuse is closed when no transfer uses it any more, and not before RetireGrace.
func (p *Provider) SetDatasets(m map[string]Dataset) {
	old := p.datasets.store(m)
	kept := map[backend.Backend]bool{}
	for _, ds := range m {
		kept[unwrap(ds.Backend)] = true
	}
	grace := p.datasets.grace
	if grace == 0 {
		grace = RetireGrace
	}
	for _, ds := range old {
		if w, ok := ds.Backend.(*inUse); ok && !kept[w.Backend] {
			w.retire(grace, p.cfg.Log)
		}
	}
}

// sandboxSuffix marks the key of a dataset's sandbox backend in the set: kept beside the real one, it is
// swapped, retired and closed with it on reload and at shutdown.
const sandboxSuffix = "#sandbox"

// SandboxKey is the key under which a dataset's synthetic backend (datasets.<id>.sandbox) is served to
// sandbox tickets.
func SandboxKey(id string) string { return id + sandboxSuffix }

// Datasets lists the IDs of the datasets served now, sorted; their sandbox backends are not datasets.
func (p *Provider) Datasets() []string {
	m := p.datasets.cur.Load()
	if m == nil {
		return nil
	}
	ids := make([]string, 0, len(*m))
	for id := range *m {
		if strings.HasSuffix(id, sandboxSuffix) {
			continue
		}
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// CloseDatasets closes the backends of the set in force, at shutdown once no transfer runs.
func (p *Provider) CloseDatasets() {
	m := p.datasets.cur.Swap(&map[string]Dataset{})
	if m == nil {
		return
	}
	for _, ds := range *m {
		if ds.Backend != nil {
			ds.Backend.Close()
		}
	}
}

func unwrap(b backend.Backend) backend.Backend {
	if w, ok := b.(*inUse); ok {
		return w.Backend
	}
	return b
}

// inUse counts the fetches running on a backend, bodies included, so that a backend retired by a reload is
// closed only once the last of them ends.
type inUse struct {
	backend.Backend
	mu      sync.Mutex
	n       int
	retired bool // the grace is over: close when n drops to 0
	closed  bool
	log     *slog.Logger
}

func (w *inUse) Fetch(ctx context.Context, subject string) (*backend.Result, error) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil, errRetired
	}
	w.n++
	w.mu.Unlock()
	res, err := w.Backend.Fetch(ctx, subject)
	if err != nil || res.Status != backend.Found || res.Body == nil {
		w.done()
		return res, err
	}
	res.Body = &releasingBody{ReadCloser: res.Body, release: w.done}
	return res, nil
}

// Close closes the backend now, as at shutdown.
func (w *inUse) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	return w.Backend.Close()
}

func (w *inUse) done() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n--
	if w.n == 0 && w.retired {
		w.closeLocked()
	}
}

// retire closes the backend after grace, or later when the last fetch then running ends.
func (w *inUse) retire(grace time.Duration, log *slog.Logger) {
	time.AfterFunc(grace, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.retired, w.log = true, log
		if w.n == 0 {
			w.closeLocked()
		}
	})
}

func (w *inUse) closeLocked() {
	if w.closed {
		return
	}
	w.closed = true
	if err := w.Backend.Close(); err != nil && w.log != nil {
		w.log.Error("close a backend replaced by a reload", "err", err)
	}
}

// releasingBody tells its backend's counter when the transfer has closed the body.
type releasingBody struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.release)
	return err
}
