package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// newHCLog gives raft an hclog.Logger whose output lands in our slog handler, so raft's lines carry the
// same format and component attribute as ours.
func newHCLog(log *slog.Logger) hclog.Logger {
	l := hclog.NewInterceptLogger(&hclog.LoggerOptions{Name: "raft", Output: io.Discard, Level: hclog.Debug})
	l.RegisterSink(&sink{log: log.With("component", "raft")})
	return l
}

type sink struct{ log *slog.Logger }

func (s *sink) Accept(name string, level hclog.Level, msg string, args ...any) {
	var lv slog.Level
	switch {
	case level <= hclog.Debug:
		lv = slog.LevelDebug
	case level == hclog.Info:
		lv = slog.LevelInfo
	case level == hclog.Warn:
		lv = slog.LevelWarn
	default:
		lv = slog.LevelError
	}
	if !s.log.Enabled(context.Background(), lv) {
		return
	}
	for i, a := range args {
		// hclog.Fmt defers formatting to the sink.
		if f, ok := a.(hclog.Format); ok && len(f) > 0 {
			if format, ok := f[0].(string); ok {
				args[i] = fmt.Sprintf(format, f[1:]...)
			}
		}
	}
	s.log.Log(context.Background(), lv, msg, append([]any{"name", name}, args...)...)
}
