package gctune

import (
	"runtime/debug"
	"testing"
)

func TestSet(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	tests := []struct {
		name, gogc, memlimit string
		wantPercent          int
		wantLimit            int64
	}{
		{"defaults apply", "", "", 400, 384 << 20},
		{"operator's GOGC wins", "150", "", 100, 384 << 20},
		{"operator's GOMEMLIMIT wins", "", "1GiB", 400, 1 << 40},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("GOGC", tt.gogc)
			t.Setenv("GOMEMLIMIT", tt.memlimit)
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(1 << 40)
			Set(400, 384<<20)
			if got := debug.SetGCPercent(100); got != tt.wantPercent {
				t.Errorf("GOGC %d, want %d", got, tt.wantPercent)
			}
			if got := debug.SetMemoryLimit(-1); got != tt.wantLimit {
				t.Errorf("memory limit %d, want %d", got, tt.wantLimit)
			}
		})
	}
}
