// Package cluster runs the hub's raft node: durable log and stable store, snapshots, the mutual-TLS
// transport between hub nodes, and the way the rest of the hub applies commands to the replicated state.
package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Config configures a raft node.
type Config struct {
	NodeID    string
	Listen    string
	Advertise string
	Dir       string
	Bootstrap bool
	// ServerTLS and ClientTLS authenticate hub nodes to each other; both must authorise hub SVIDs only.
	ServerTLS, ClientTLS *tls.Config
	SnapshotInterval     time.Duration
	SnapshotThreshold    uint64
	// HoldTimeout is how long a write waits for a leader during an election before ErrNoLeader (like
	// Consul's RPC hold timeout). Zero means 5 s.
	HoldTimeout time.Duration
	// PeerCheck, if set, is asked again on every forwarded request whether the calling hub node may still
	// call (the TLS handshake asked once, but a connection outlives a node's removal).
	PeerCheck func(spiffeid.ID) error
	// Autopilot promotes caught-up non-voters and removes dead voters; zero values take the defaults.
	Autopilot  AutopilotConfig
	Log        *slog.Logger
	Registerer prometheus.Registerer
}

// Cluster is a running raft node.
type Cluster struct {
	raft      *raft.Raft
	logs      *logStore
	transport *raft.NetworkTransport
	stream    *streamLayer
	fsm       *fsm.FSM
	nodeID    string
	hold      time.Duration
	autopilot AutopilotConfig
	log       *slog.Logger
	metrics   *metrics
	// fwd speaks the forwarding protocol to other nodes; fwdServer answers it.
	fwd       *http.Client
	fwdServer *http.Server
	// health is the leader's view of its peers, kept by the autopilot loop.
	health    *peerHealth
	peerCheck func(spiffeid.ID) error
}

// logStore is raft-wal's log and stable store together with its meta database, which WAL.Close leaves
// open in raft-wal v0.4.0: its lock then outlives the store, and opening the directory again in the same
// process waits for it forever. Handing the WAL a meta database we own lets Close release it.
type logStore struct {
	*wal.WAL
	meta *metadb.BoltMetaDB
}

func openLogStore(dir string, log hclog.Logger) (*logStore, error) {
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(dir, wal.WithLogger(log), wal.WithMetaStore(meta))
	if err != nil {
		meta.Close()
		return nil, err
	}
	return &logStore{WAL: w, meta: meta}, nil
}

// Close closes the log and its meta database.
func (s *logStore) Close() error {
	err := s.WAL.Close()
	if merr := s.meta.Close(); err == nil {
		err = merr
	}
	return err
}

// ErrNotLeader is what a node says when asked to do what only the leader does.
var ErrNotLeader = errors.New("this hub node is not the raft leader")

// ErrNoLeader is returned when no leader took a write within the hold timeout: an election, or this node
// is cut off from the majority. Answer 503 with a Retry-After.
var ErrNoLeader = errors.New("no hub leader is reachable from this node (an election, or this node is cut off from the majority)")

// ErrRefused is returned when the leader refuses this node (it was removed from the cluster).
var ErrRefused = errors.New("the leader refuses this node")

// ErrUnknownOutcome is returned when a forwarded write may or may not have been applied (the connection
// to the leader broke after the write was sent). Retrying a single-use write may then be refused.
var ErrUnknownOutcome = errors.New("the leader did not answer; the write may or may not have been applied")

// New opens the node's stores and starts raft. A node with no state and Bootstrap set makes itself a
// one-node cluster.
func New(cfg Config, f *fsm.FSM) (*Cluster, error) {
	walDir := filepath.Join(cfg.Dir, "wal")
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		return nil, err
	}
	hlog := newHCLog(cfg.Log)
	// raft-wal rather than raft-boltdb: boltdb/v2 does not build with raft v1.8.0, and the WAL applied about
	// twice as fast on the machines we measured. It is both the log store and the stable store.
	logs, err := openLogStore(walDir, hlog.Named("wal"))
	if err != nil {
		return nil, fmt.Errorf("open raft log: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, hlog.Named("snapshots"))
	if err != nil {
		logs.Close()
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	stream, err := listenStream(cfg.Listen, cfg.Advertise, cfg.ServerTLS, cfg.ClientTLS, cfg.Log)
	if err != nil {
		logs.Close()
		return nil, err
	}
	transport := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: 3, Timeout: 10 * time.Second, Logger: hlog.Named("transport"),
	})

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hlog
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.NoLegacyTelemetry = true
	// Concurrent applies already go to the log and to disk (one fsync) together: the leader gathers every
	// apply waiting on its channel (group commit), and the state machine applies what commits together in
	// one SQLite transaction (fsm.ApplyBatch). BatchApplyCh is left off: its buffered channel can swallow an
	// apply or a barrier during shutdown, whose future then never completes (a test hung on it).

	if cfg.Bootstrap {
		has, err := raft.HasExistingState(logs, logs, snaps)
		if err != nil {
			transport.Close()
			logs.Close()
			return nil, err
		}
		if !has {
			conf := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: transport.LocalAddr()}}}
			if err := raft.BootstrapCluster(rc, logs, logs, snaps, transport, conf); err != nil {
				transport.Close()
				logs.Close()
				return nil, fmt.Errorf("bootstrap raft: %w", err)
			}
		}
	}
	r, err := raft.NewRaft(rc, f, logs, logs, snaps, transport)
	if err != nil {
		transport.Close()
		logs.Close()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	if cfg.HoldTimeout <= 0 {
		cfg.HoldTimeout = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{raft: r, logs: logs, transport: transport, stream: stream, fsm: f, nodeID: cfg.NodeID, hold: cfg.HoldTimeout,
		autopilot: cfg.Autopilot.withDefaults(), log: cfg.Log, peerCheck: cfg.PeerCheck, fwd: newForwardClient(stream), health: newPeerHealth(), metrics: newMetrics()}
	c.fwdServer = c.newForwardServer()
	go func() { _ = c.fwdServer.Serve(stream.forward) }()
	if cfg.Registerer != nil {
		if err := c.registerMetrics(cfg.Registerer); err != nil {
			c.Shutdown()
			return nil, err
		}
	}
	return c, nil
}

// Apply validates cmd and has the leader replicate and apply it: here if this node leads, else forwarded
// to the leader. It answers once this node has applied the entry too, so that a read that follows on this
// node sees the write. During an election it waits up to the hold timeout for a leader; then ErrNoLeader.
// A refused command comes back as a *fsm.Error.
func (c *Cluster) Apply(cmd fsm.Command) error {
	if err := fsm.Validate(cmd); err != nil {
		return err
	}
	data, err := fsm.Encode(cmd)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.hold+10*time.Second)
	defer cancel()
	res, index, err := c.applyAnywhere(ctx, data)
	if err != nil {
		return err
	}
	if err := c.waitApplied(ctx, index); err != nil {
		return err
	}
	return res.Err()
}

// applyAnywhere applies data on the leader, wherever it is, holding through elections.
func (c *Cluster) applyAnywhere(ctx context.Context, data []byte) (fsm.Result, uint64, error) {
	start := time.Now()
	deadline := start.Add(c.hold)
	held := false
	defer func() {
		if held {
			c.metrics.hold.Observe(time.Since(start).Seconds())
		}
	}()
	for {
		var (
			res   fsm.Result
			index uint64
			err   error
		)
		forwarded := false
		if c.raft.State() == raft.Shutdown {
			return fsm.Result{}, 0, raft.ErrRaftShutdown
		}
		if c.raft.State() == raft.Leader {
			res, index, err = c.applyLocal(data)
		} else if addr := c.leaderAddr(); addr != "" {
			forwarded = true
			res, index, err = c.forwardApply(ctx, addr, data)
		} else {
			err = ErrNotLeader
		}
		switch {
		case err == nil:
			if forwarded {
				c.metrics.forwards.WithLabelValues("ok").Inc()
			}
			return res, index, nil
		case errors.Is(err, ErrNotLeader) || errors.Is(err, errUnsent):
			// Nobody took it: safe to try again once a leader is known.
		case errors.Is(err, ErrUnknownOutcome), errors.Is(err, ErrRefused):
			return fsm.Result{}, 0, err
		default:
			if forwarded {
				c.metrics.forwards.WithLabelValues("error").Inc()
				c.log.Warn("forwarding a write to the leader failed", "err", err)
				return fsm.Result{}, 0, fmt.Errorf("%w: %v", ErrUnknownOutcome, err)
			}
			return fsm.Result{}, 0, err
		}
		held = true
		if time.Now().After(deadline) {
			c.metrics.forwards.WithLabelValues("no_leader").Inc()
			return fsm.Result{}, 0, ErrNoLeader
		}
		select {
		case <-ctx.Done():
			return fsm.Result{}, 0, ErrNoLeader
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// applyLocal applies data through raft on this node, which must lead.
func (c *Cluster) applyLocal(data []byte) (fsm.Result, uint64, error) {
	if c.raft.State() != raft.Leader {
		return fsm.Result{}, 0, ErrNotLeader
	}
	fut := c.raft.Apply(data, 10*time.Second)
	if err := fut.Error(); err != nil {
		switch {
		case errors.Is(err, raft.ErrLeadershipLost):
			// The entry may still commit under the next leader: neither done nor refused.
			return fsm.Result{}, 0, fmt.Errorf("%w: %v", ErrUnknownOutcome, err)
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
			return fsm.Result{}, 0, ErrNotLeader
		}
		return fsm.Result{}, 0, fmt.Errorf("raft apply: %w", err)
	}
	res, ok := fut.Response().(fsm.Result)
	if !ok {
		return fsm.Result{}, 0, fmt.Errorf("raft apply: unexpected response %T", fut.Response())
	}
	return res, fut.Index(), nil
}

// waitApplied waits until this node's state machine has applied index, woken by each apply.
func (c *Cluster) waitApplied(ctx context.Context, index uint64) error {
	for {
		// The signal is taken before the index is read, so an apply in between still wakes us.
		applied := c.fsm.AppliedSignal()
		if c.fsm.AppliedIndex() >= index {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: this node has not applied entry %d yet", ErrUnknownOutcome, index)
		case <-applied:
		}
	}
}

// WaitLeader waits until this node leads, or ctx ends.
func (c *Cluster) WaitLeader(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for c.raft.State() != raft.Leader {
		select {
		case <-ctx.Done():
			return fmt.Errorf("no raft leadership: %w", ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// Addr is the address other nodes reach this node's raft port at.
func (c *Cluster) Addr() string { return c.stream.Addr().String() }

// State is the node's raft state.
func (c *Cluster) State() raft.RaftState { return c.raft.State() }

// Leader is the leader's server ID, empty if unknown.
func (c *Cluster) Leader() string {
	_, id := c.raft.LeaderWithID()
	return string(id)
}

// Barrier waits until every entry committed before it is applied here, so that a read that follows sees
// them.
func (c *Cluster) Barrier(timeout time.Duration) error { return c.raft.Barrier(timeout).Error() }

// Snapshot takes a snapshot now.
func (c *Cluster) Snapshot() error { return c.raft.Snapshot().Error() }

// Shutdown stops raft and closes the stores.
func (c *Cluster) Shutdown() error {
	err := c.raft.Shutdown().Error()
	c.transport.Close()
	if c.fwdServer != nil {
		c.fwdServer.Close()
	}
	c.fwd.CloseIdleConnections()
	if cerr := c.logs.Close(); err == nil {
		err = cerr
	}
	return err
}

// SeedSnapshot makes the raft state of a node restored from a backup: one snapshot at index holding the
// state database read from data, whose configuration is this node alone. On its first start raft restores
// the snapshot and the node elects itself, with every record the backup held.
func SeedSnapshot(dir, nodeID, advertise string, index uint64, data io.Reader) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hclog.NewNullLogger())
	if err != nil {
		return err
	}
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(nodeID), Address: raft.ServerAddress(advertise)}}}
	// The transport only encodes peer addresses for the snapshot's legacy metadata.
	_, trans := raft.NewInmemTransport(raft.ServerAddress(advertise))
	defer trans.Close()
	sink, err := snaps.Create(raft.SnapshotVersionMax, index, 1, conf, index, trans)
	if err != nil {
		return err
	}
	if _, err := io.Copy(sink, data); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

// HasState reports whether dir holds raft state (a log or a snapshot).
func HasState(dir string) bool {
	for _, sub := range []string{"wal", "snapshots"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err == nil && len(entries) > 0 {
			return true
		}
	}
	return false
}
