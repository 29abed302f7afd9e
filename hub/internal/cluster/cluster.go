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
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/prometheus/client_golang/prometheus"
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
	Log                  *slog.Logger
	Registerer           prometheus.Registerer
}

// Cluster is a running raft node.
type Cluster struct {
	raft      *raft.Raft
	logs      *logStore
	transport *raft.NetworkTransport
	fsm       *fsm.FSM
	nodeID    string
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

// ErrNotLeader is returned by Apply on a node that is not the leader.
var ErrNotLeader = errors.New("this hub node is not the raft leader")

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
	stream, err := listenStream(cfg.Listen, cfg.Advertise, cfg.ServerTLS, cfg.ClientTLS)
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
	c := &Cluster{raft: r, logs: logs, transport: transport, fsm: f, nodeID: cfg.NodeID}
	if cfg.Registerer != nil {
		if err := c.registerMetrics(cfg.Registerer); err != nil {
			c.Shutdown()
			return nil, err
		}
	}
	return c, nil
}

// Apply validates cmd, replicates it and applies it; a refused command comes back as a *fsm.Error.
func (c *Cluster) Apply(cmd fsm.Command) error {
	if err := fsm.Validate(cmd); err != nil {
		return err
	}
	data, err := fsm.Encode(cmd)
	if err != nil {
		return err
	}
	if c.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	fut := c.raft.Apply(data, 10*time.Second)
	if err := fut.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return ErrNotLeader
		}
		return fmt.Errorf("raft apply: %w", err)
	}
	res, ok := fut.Response().(fsm.Result)
	if !ok {
		return fmt.Errorf("raft apply: unexpected response %T", fut.Response())
	}
	return res.Err()
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
	if cerr := c.logs.Close(); err == nil {
		err = cerr
	}
	return err
}

// listenStream binds the raft listener; raft runs over TLS so that only hub nodes can join the log.
func listenStream(listen, advertise string, server, client *tls.Config) (*streamLayer, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("raft listen %s: %w", listen, err)
	}
	adv, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil || adv.Port == 0 {
		// Port 0 in tests: advertise what we got.
		adv = ln.Addr().(*net.TCPAddr)
	}
	return &streamLayer{Listener: tls.NewListener(ln, server), advertise: adv, client: client}, nil
}

type streamLayer struct {
	net.Listener
	advertise net.Addr
	client    *tls.Config
}

func (s *streamLayer) Addr() net.Addr { return s.advertise }

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: s.client}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, "tcp", string(addr))
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
