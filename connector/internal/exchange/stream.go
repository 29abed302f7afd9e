package exchange

import (
	"net/http"
	"sync"
	"time"
)

// streamBatch is the most of a stream the SP holds before the application gets it. Every response Write
// wakes the application's reader and costs it a trip through its scheduler, whatever the size: on two
// cores the application's CPU per 256 MiB was 173–203 ms with 64 KiB writes, 103–123 ms with 256 KiB and
// 63–77 ms with 1 MiB, and with 1 MiB the hop no longer slowed the transfer against the same work without
// it (docs/benchmarks.md, session 7). The buffer grows to it only as a stream's bytes come, so a small
// dataset holds no more than itself.
const streamBatch = 1 << 20

// streamHold is the longest the SP holds a stream's bytes waiting for a batch to fill: a fast transfer
// fills 1 MiB in a few milliseconds and never waits this long, a slow agency's data reaches the application
// no more than this late (a DP-API trickling 64 KiB a second would otherwise make it wait 16 s for its
// first byte).
const streamHold = 50 * time.Millisecond

// streamWriter is where a streamed dataset goes: the status line goes with its first bytes, and the
// chunks (64 KiB each) go to the application streamBatch at a time, or after hold, whichever comes first.
// Writes come from the transfer; a timer sends what has waited hold, so a mutex keeps the two from the
// ResponseWriter at once, and stop ends the timer's part before the handler uses the ResponseWriter again.
// What is held when the transfer fails is never sent.
type streamWriter struct {
	mu      sync.Mutex
	w       http.ResponseWriter
	hold    time.Duration
	started bool
	buf     []byte
	timer   *time.Timer // sends what is held once it has waited hold; nil while nothing is held
	stopped bool
	err     error // the first failed write to the application: every later Write fails with it
}

func newStreamWriter(w http.ResponseWriter, hold time.Duration) *streamWriter {
	return &streamWriter{w: w, hold: hold}
}

func (s *streamWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0, s.err
	}
	if len(s.buf)+len(p) > streamBatch {
		if err := s.flushLocked(); err != nil {
			return 0, err
		}
	}
	if len(p) >= streamBatch {
		return s.writeLocked(p)
	}
	if need := len(s.buf) + len(p); need > cap(s.buf) {
		grown := make([]byte, len(s.buf), min(max(2*cap(s.buf), need), streamBatch))
		copy(grown, s.buf)
		s.buf = grown
	}
	s.buf = append(s.buf, p...)
	if s.timer == nil && !s.stopped {
		s.timer = time.AfterFunc(s.hold, s.timed)
	}
	return len(p), nil
}

// timed sends what has been held for hold, and pushes it past net/http's buffers to the application.
func (s *streamWriter) timed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.timer = nil
	if s.stopped || s.err != nil || len(s.buf) == 0 {
		return
	}
	if s.flushLocked() == nil {
		if err := http.NewResponseController(s.w).Flush(); err != nil {
			s.err = err
		}
	}
}

// stop ends the timer's sending: after it, only the caller uses the ResponseWriter.
func (s *streamWriter) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
}

// flush sends what is held.
func (s *streamWriter) flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	return s.flushLocked()
}

func (s *streamWriter) flushLocked() error {
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if len(s.buf) == 0 {
		return nil
	}
	_, err := s.writeLocked(s.buf)
	s.buf = s.buf[:0]
	return err
}

func (s *streamWriter) writeLocked(p []byte) (int, error) {
	if !s.started {
		s.started = true
		s.w.WriteHeader(http.StatusOK)
	}
	n, err := s.w.Write(p)
	if err != nil {
		s.err = err
	}
	return n, err
}

// sent says whether the status line has gone to the application.
func (s *streamWriter) sent() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started
}
