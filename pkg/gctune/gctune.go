// Package gctune sets the Go garbage collector for a long-running server unless the operator chose
// with GOGC or GOMEMLIMIT: both binaries make garbage at their request or transfer rate, and the default
// (GOGC 100) spent a tenth of their CPU collecting it (docs/benchmarks.md). A soft memory limit below the
// packaged unit's MemoryMax makes the collector work harder again before memory runs short.
package gctune

import (
	"os"
	"runtime/debug"
)

// Set applies percent as GOGC and limit (bytes) as the soft memory limit, each unless the environment
// already sets it.
func Set(percent int, limit int64) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(percent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(limit)
	}
}
