package api

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/mydatafed/mydata/hub/internal/fsm"
)

// liveness tracks the connectors this node hears from. A running connector holds the directory's long-poll
// open almost all the time, so a connector with a poll open is alive now, and one that stops polling (its
// process ended, its network went away) is heard from no more. Each node reports what it heard to the raft
// log now and then; the leader marks the connectors no node heard from down, and the directory says so.
type liveness struct {
	mu       sync.Mutex
	heard    map[string]time.Time // "org/name" → last request began or ended
	open     map[string]int       // long-polls open now
	reported map[string]time.Time // what this node last reported
}

func (l *liveness) begin(id string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.heard == nil {
		l.heard, l.open, l.reported = map[string]time.Time{}, map[string]int{}, map[string]time.Time{}
	}
	l.heard[id] = now
	l.open[id]++
}

func (l *liveness) end(id string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.heard[id] = now
	if l.open[id]--; l.open[id] <= 0 {
		delete(l.open, id)
	}
}

// due lists the connectors to report at now: heard from since they were last reported, or with a poll open,
// and last reported at least every ago.
func (l *liveness) due(now time.Time, every time.Duration) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for id, at := range l.heard {
		rep, ok := l.reported[id]
		switch {
		case ok && now.Sub(rep) < every:
		case l.open[id] > 0 || !ok || at.After(rep):
			out = append(out, id)
		default:
			delete(l.heard, id) // reported, and not heard from since: forget it
			delete(l.reported, id)
		}
	}
	sort.Strings(out)
	return out
}

func (l *liveness) markReported(ids []string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		l.reported[id] = now
	}
}

// RunLiveness reports the connectors this node hears from to the raft log every downAfter/3 until ctx
// ends. Every node runs it: a connector polls whichever node it reaches.
func (s *Server) RunLiveness(ctx context.Context, downAfter time.Duration) {
	every := max(downAfter/3, time.Second)
	t := time.NewTicker(every / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := s.now()
		ids := s.live.due(now, every)
		if len(ids) == 0 {
			continue
		}
		if err := s.cfg.Cluster.Apply(&fsm.ConnectorsSeen{Connectors: ids, Now: now}); err != nil {
			s.log.Warn("report connectors heard from", "connectors", len(ids), "err", err)
			continue
		}
		s.live.markReported(ids, now)
	}
}
