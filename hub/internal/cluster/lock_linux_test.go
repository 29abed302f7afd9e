//go:build linux

package cluster

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestCloseReleasesTheLog checks that a cluster that was shut down, or failed to start, leaves its raft log
// free to open again in the same process (a test, or a tool that reopens it). raft-wal guards wal-meta.db with
// a bbolt flock and a second open waits for it without a timeout, so a leaked lock is a hang, not an error;
// the test probes the lock directly instead of hanging.
func TestCloseReleasesTheLog(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, n *node)
	}{
		{"after Shutdown", func(t *testing.T, n *node) {
			c, _, err := n.start(t, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Shutdown(); err != nil {
				t.Fatal(err)
			}
		}},
		{"after a failed start", func(t *testing.T, n *node) {
			// The listen fails after the log is open.
			if _, err := New(Config{NodeID: "hub-1", Listen: "256.0.0.1:1", Dir: n.dir, Log: discard()}, nil); err == nil {
				t.Fatal("New with a bad listen address succeeded")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNode(t)
			// Not bootstrapped: nothing here needs a leader, so no election to wait for.
			n.bootstrap = false
			tt.run(t, n)
			if locked(t, filepath.Join(n.dir, "wal", "wal-meta.db")) {
				t.Fatal("wal/wal-meta.db is still locked after the cluster closed: a second cluster.New on this directory in this process would block forever in wal.Open")
			}
			c, _, err := n.start(t, nil)
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			if err := c.Shutdown(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// locked reports whether another open file description holds a flock on path.
func locked(t *testing.T, path string) bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return true
	}
	if err != nil {
		t.Fatal(err)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}
