package server

import (
	"context"
	"time"

	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/pkg/telemetry"
)

// checkLiveness marks down the connectors no hub node has heard from for directory.down_after, and up again
// those heard from since; the leader runs it, and proposes an entry only when a connector changes.
func (s *Server) checkLiveness(ctx context.Context) {
	downAfter := s.cfg.Directory.DownAfter
	t := time.NewTicker(max(downAfter/3, time.Second))
	defer t.Stop()
	// A new leader first waits a whole down_after: the nodes' reports of connectors that poll another node
	// may not have reached the log yet.
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		if now.Sub(start) < downAfter {
			continue
		}
		before := now.Add(-downAfter)
		due, err := s.state.LivenessDue(before)
		if err != nil {
			s.log.Warn("connector liveness: check", telemetry.KeyError, err)
			continue
		}
		if !due {
			continue
		}
		if err := s.cluster.Apply(&fsm.ConnectorsLiveness{Before: before, Now: now}); err != nil {
			s.log.Warn("connector liveness", telemetry.KeyError, err)
		}
	}
}
