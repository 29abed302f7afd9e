package server

import (
	"context"
	"os"
	"time"

	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/pkg/telemetry"
)

// lifecycleEvery is how often the leader looks for approved changes, suspensions and terminations whose
// day has come: connectors follow the directory within seconds of it.
const lifecycleEvery = 5 * time.Second

// EnvLifecycleClock moves the lifecycle job's clock by a duration (such as 240h): a drill or a test sees a
// scheduled change take effect without waiting for its day. Nothing else on the hub uses it.
const EnvLifecycleClock = "MYDATA_LIFECYCLE_CLOCK_OFFSET"

// lifecycleNow is the lifecycle job's clock.
func (s *Server) lifecycleNow() time.Time {
	now := time.Now()
	if v := os.Getenv(EnvLifecycleClock); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			now = now.Add(d)
		}
	}
	return now
}

// lifecycle puts approved applications into effect on their day; the leader runs it. It proposes an entry
// only when one is due, so an idle federation writes nothing.
func (s *Server) lifecycle(ctx context.Context) {
	if v := os.Getenv(EnvLifecycleClock); v != "" {
		if _, err := time.ParseDuration(v); err != nil {
			s.log.Warn("ignoring "+EnvLifecycleClock, telemetry.KeyError, err)
		} else {
			s.log.Warn("the lifecycle job's clock is moved by "+EnvLifecycleClock, "offset", v)
		}
	}
	t := time.NewTicker(lifecycleEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := s.lifecycleNow()
		due, err := s.state.Applications(fsm.ApplicationFilter{Status: fsm.AppScheduled})
		if err != nil {
			s.log.Warn("lifecycle: read scheduled applications", telemetry.KeyError, err)
			continue
		}
		for _, a := range due {
			if day, ok := fsm.Day(a.EffectiveOn); ok && !day.After(now) {
				if err := s.cluster.Apply(&fsm.LifecycleTick{Now: now}); err != nil {
					s.log.Warn("lifecycle: put scheduled applications into effect", telemetry.KeyError, err)
				} else {
					s.log.Info("lifecycle: scheduled applications put into effect", "now", now)
				}
				break
			}
		}
	}
}

// purgeRecords removes receipts and operator log entries once they are older than the two years the
// rules keep them; the leader runs it hourly, and proposes an entry only when something is due.
func (s *Server) purgeRecords(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		now := time.Now()
		before := now.Add(-fsm.RecordRetention)
		if due, err := s.state.PurgeDue(before); err != nil {
			s.log.Warn("records purge: check", telemetry.KeyError, err)
		} else if due {
			if err := s.cluster.Apply(&fsm.RecordsPurge{Before: before, Now: now}); err != nil {
				s.log.Warn("records purge", telemetry.KeyError, err)
			} else {
				s.log.Info("records purge: receipts and operator log entries older than two years removed", "before", before)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
