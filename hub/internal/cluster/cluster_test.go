package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/mydatafed/mydata/hub/internal/ca"
	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/spiffetest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

const td = "mydata.test"

// electTimeout bounds the wait for a one-node cluster to elect itself; raft's default timeouts make that
// take one to two seconds.
const electTimeout = 10 * time.Second

func discard() *slog.Logger {
	if os.Getenv("CLUSTER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// hubTLS builds the raft TLS configs the way server.New does: the node's SVID from the hub's own CA, and
// only hub IDs of the trust domain authorised on either side.
func hubTLS(t *testing.T, c *ca.CA, node string) (server, client *tls.Config) {
	t.Helper()
	id, err := fedid.Hub(c.TrustDomain(), node)
	if err != nil {
		t.Fatal(err)
	}
	src, err := ca.NewNodeSource(c, id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	hubOnly := fedid.Authorizer(c.TrustDomain(), fedid.KindHub, nil)
	return tlsconfig.MTLSServerConfig(src, c.Bundle(), hubOnly), tlsconfig.MTLSClientConfig(src, c.Bundle(), hubOnly)
}

func newCA(t *testing.T) *ca.CA {
	t.Helper()
	c, _, err := ca.LoadOrCreate(t.TempDir(), spiffeid.RequireTrustDomainFromString(td), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type node struct {
	dir, state       string
	server, client   *tls.Config
	bootstrap        bool
	snapshotInterval time.Duration
	hold             time.Duration
}

func newNode(t *testing.T) *node {
	t.Helper()
	dir := t.TempDir()
	server, client := hubTLS(t, newCA(t), "hub-1")
	return &node{dir: filepath.Join(dir, "raft"), state: filepath.Join(dir, "state.db"), server: server, client: client, bootstrap: true,
		// Long enough that raft takes no snapshot of its own during a test.
		snapshotInterval: time.Hour, hold: 500 * time.Millisecond}
}

// start opens the node's state database and raft; both are closed when the test ends, raft first.
func (n *node) start(t *testing.T, reg prometheus.Registerer) (*Cluster, *fsm.FSM, error) {
	t.Helper()
	f, err := fsm.Open(n.state, discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	c, err := New(Config{
		NodeID: "hub-1", Listen: "127.0.0.1:0", Advertise: "127.0.0.1:0", Dir: n.dir, Bootstrap: n.bootstrap,
		ServerTLS: n.server, ClientTLS: n.client, SnapshotInterval: n.snapshotInterval, SnapshotThreshold: 1 << 20, HoldTimeout: n.hold,
		Log: discard(), Registerer: reg,
	}, f)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	t.Cleanup(func() { c.Shutdown() })
	return c, f, nil
}

func (n *node) mustStartLeader(t *testing.T, reg prometheus.Registerer) (*Cluster, *fsm.FSM) {
	t.Helper()
	c, f, err := n.start(t, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), electTimeout)
	defer cancel()
	if err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	// After a restart the log is applied only once the new leader commits; the barrier waits for that.
	if err := c.Barrier(electTimeout); err != nil {
		t.Fatal(err)
	}
	return c, f
}

func org(code string) *fsm.OrgAdd {
	return &fsm.OrgAdd{Code: code, NameZh: code, NameEn: code, Type: "other", Now: time.Unix(1700000000, 0).UTC()}
}

func orgCodes(t *testing.T, f *fsm.FSM) []string {
	t.Helper()
	orgs, err := f.Orgs()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, o := range orgs {
		out = append(out, o.Code)
	}
	return out
}

func TestOneNodeCluster(t *testing.T) {
	n := newNode(t)
	reg := prometheus.NewRegistry()
	c, f := n.mustStartLeader(t, reg)
	if got := c.Leader(); got != "hub-1" {
		t.Errorf("Leader() = %q, want hub-1", got)
	}

	applies := []struct {
		name     string
		cmd      fsm.Command
		wantCode fsm.Code // OK for success
		wantErr  string   // for errors that are not *fsm.Error
	}{
		{"org", org("moi"), fsm.OK, ""},
		{"org again", org("moi"), fsm.Conflict, ""},
		{"connector", &fsm.ConnectorAdd{Org: "moi", Name: "dp1", Roles: []string{"dp"}, Address: "127.0.0.1:7001", Now: time.Now()}, fsm.OK, ""},
		{"connector of unknown org", &fsm.ConnectorAdd{Org: "nope", Name: "dp1", Roles: []string{"dp"}, Address: "a:1", Now: time.Now()}, fsm.NotFound, ""},
		// Invalid in itself: refused before it reaches the log.
		{"invalid command", &fsm.OrgAdd{Code: "x", NameZh: "x", NameEn: "x", Type: "club"}, fsm.OK, "type"},
	}
	for _, a := range applies {
		t.Run("apply "+a.name, func(t *testing.T) {
			before := f.AppliedIndex()
			err := c.Apply(a.cmd)
			var fe *fsm.Error
			switch {
			case a.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), a.wantErr) {
					t.Fatalf("Apply = %v, want an error containing %q", err, a.wantErr)
				}
				if f.AppliedIndex() != before {
					t.Error("a refused encoding still reached the state machine")
				}
			case a.wantCode == fsm.OK:
				if err != nil {
					t.Fatalf("Apply = %v", err)
				}
				if f.AppliedIndex() <= before {
					t.Errorf("applied index %d did not move past %d", f.AppliedIndex(), before)
				}
			default:
				if !errors.As(err, &fe) || fe.Code != a.wantCode {
					t.Fatalf("Apply = %v, want an *fsm.Error with code %d", err, a.wantCode)
				}
			}
		})
	}
	if got := orgCodes(t, f); !slices.Equal(got, []string{"moi"}) {
		t.Fatalf("orgs %v", got)
	}

	t.Run("metrics", func(t *testing.T) {
		want := map[string]float64{
			`mydata_hub_raft_state{state="Leader"}`:    1,
			`mydata_hub_raft_state{state="Follower"}`:  0,
			`mydata_hub_raft_state{state="Candidate"}`: 0,
			`mydata_hub_raft_state{state="Shutdown"}`:  0,
			`mydata_hub_raft_has_leader`:               1,
			`mydata_hub_raft_last_contact_seconds`:     0,
			`mydata_hub_raft_applied_index`:            float64(f.AppliedIndex()),
		}
		got := gather(t, reg)
		for k, v := range want {
			if g, ok := got[k]; !ok || g != v {
				t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
			}
		}
	})

	// A snapshot, then one more entry: the restart from an empty database below needs both the snapshot
	// and the log after it.
	if err := c.Snapshot(); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if err := c.Apply(org("fia")); err != nil {
		t.Fatal(err)
	}
	applied := f.AppliedIndex()
	if err := c.Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if !HasState(n.dir) {
		t.Fatal("HasState is false after a run")
	}
	f.Close()

	// Each restart below opens the same directory again in this process (TestCloseReleasesTheLog).
	t.Run("metrics registered twice", func(t *testing.T) {
		if _, _, err := n.start(t, reg); err == nil || !strings.Contains(err.Error(), "duplicate") {
			t.Fatalf("start with the metrics already registered: %v", err)
		}
	})

	t.Run("restart with its database", func(t *testing.T) {
		c, f := n.mustStartLeader(t, prometheus.NewRegistry())
		if got := orgCodes(t, f); !slices.Equal(got, []string{"fia", "moi"}) {
			t.Fatalf("orgs after restart %v", got)
		}
		if f.AppliedIndex() < applied {
			t.Fatalf("applied index %d after restart, was %d", f.AppliedIndex(), applied)
		}
		// Bootstrap is set again, but the node must not make a fresh cluster over its log.
		if err := c.Apply(org("ndc")); err != nil {
			t.Fatalf("apply after restart: %v", err)
		}
		applied = f.AppliedIndex()
		if err := c.Shutdown(); err != nil {
			t.Fatal(err)
		}
		f.Close()
	})

	t.Run("restart from an empty database", func(t *testing.T) {
		for _, suffix := range []string{"", "-wal", "-shm"} {
			if err := os.Remove(n.state + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
		}
		c, f := n.mustStartLeader(t, prometheus.NewRegistry())
		if got := orgCodes(t, f); !slices.Equal(got, []string{"fia", "moi", "ndc"}) {
			t.Fatalf("orgs rebuilt from snapshot and log: %v", got)
		}
		if f.AppliedIndex() != applied {
			t.Errorf("applied index %d, want %d", f.AppliedIndex(), applied)
		}
		conn, err := f.Connector("moi", "dp1")
		if err != nil || conn == nil {
			t.Errorf("connector moi/dp1 lost: %v %v", conn, err)
		}
		if err := c.Shutdown(); err != nil {
			t.Fatal(err)
		}

		// A closed cluster refuses everything with an error rather than a panic.
		if c.State() != raft.Shutdown {
			t.Errorf("state %s after Shutdown", c.State())
		}
		refusals := []struct {
			name string
			do   func() error
			want error
		}{
			// A node that is shut down says so at once rather than holding the write.
			{"apply", func() error { return c.Apply(org("tsa")) }, raft.ErrRaftShutdown},
			{"barrier", func() error { return c.Barrier(time.Second) }, raft.ErrRaftShutdown},
			{"snapshot", c.Snapshot, raft.ErrRaftShutdown},
			{"wait leader", func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				defer cancel()
				return c.WaitLeader(ctx)
			}, context.DeadlineExceeded},
		}
		for _, r := range refusals {
			if err := r.do(); !errors.Is(err, r.want) {
				t.Errorf("%s on a closed cluster: %v, want %v", r.name, err, r.want)
			}
		}
		if err := c.Shutdown(); err != nil {
			t.Errorf("second Shutdown: %v", err)
		}
		if got := orgCodes(t, f); slices.Contains(got, "tsa") {
			t.Error("a closed cluster applied a command")
		}
	})
}

func TestNodeWithoutClusterNeverLeads(t *testing.T) {
	// Without bootstrap and without state a node waits to be added to a cluster; it must refuse writes.
	n := newNode(t)
	n.bootstrap = false
	c, f, err := n.start(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	// It holds the write for the hold timeout, waiting for a leader that never comes.
	start := time.Now()
	if err := c.Apply(org("moi")); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("Apply on a lone follower: %v, want ErrNoLeader", err)
	}
	if held := time.Since(start); held < n.hold {
		t.Errorf("gave up after %s, before the hold timeout %s", held, n.hold)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := c.WaitLeader(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitLeader = %v, want a deadline error", err)
	}
	if c.Leader() != "" {
		t.Errorf("Leader() = %q, want none", c.Leader())
	}
	if f.AppliedIndex() != 0 {
		t.Errorf("applied index %d", f.AppliedIndex())
	}
}

func TestSeedSnapshot(t *testing.T) {
	// The state of another node, as a backup holds it: a database file at some applied index.
	src := t.TempDir()
	live, err := fsm.Open(filepath.Join(src, "state.db"), discard())
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	for i, code := range []string{"moi", "fia"} {
		data, err := fsm.Encode(org(code))
		if err != nil {
			t.Fatal(err)
		}
		// Indexes far from 1, as on a hub that has run for a while.
		live.Apply(&raft.Log{Index: uint64(40 + i), Term: 3, Type: raft.LogCommand, Data: data})
	}
	index, err := live.BackupTo(filepath.Join(src, "copy.db"))
	if err != nil || index != 41 {
		t.Fatalf("BackupTo = %d, %v", index, err)
	}

	n := newNode(t)
	db, err := os.Open(filepath.Join(src, "copy.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if HasState(n.dir) {
		t.Fatal("fresh dir has state")
	}
	if err := SeedSnapshot(n.dir, "hub-1", "127.0.0.1:0", index, db); err != nil {
		t.Fatal(err)
	}
	if !HasState(n.dir) {
		t.Fatal("HasState is false after seeding")
	}
	c, f := n.mustStartLeader(t, nil)
	if got := orgCodes(t, f); !slices.Equal(got, []string{"fia", "moi"}) {
		t.Fatalf("orgs after seeding %v", got)
	}
	if f.AppliedIndex() != index {
		t.Errorf("applied index %d, want the seeded %d", f.AppliedIndex(), index)
	}
	if err := c.Apply(org("ndc")); err != nil {
		t.Fatal(err)
	}
	if f.AppliedIndex() <= index {
		t.Errorf("new entry at %d, not after the seeded index %d", f.AppliedIndex(), index)
	}
}

func TestHasState(t *testing.T) {
	tests := []struct {
		name  string
		setup func(dir string) error
		want  bool
	}{
		{"missing dir", func(dir string) error { return nil }, false},
		{"empty dir", func(dir string) error { return os.MkdirAll(dir, 0o700) }, false},
		{"empty wal and snapshots", func(dir string) error {
			if err := os.MkdirAll(filepath.Join(dir, "wal"), 0o700); err != nil {
				return err
			}
			return os.MkdirAll(filepath.Join(dir, "snapshots"), 0o700)
		}, false},
		{"wal segment", func(dir string) error {
			if err := os.MkdirAll(filepath.Join(dir, "wal"), 0o700); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, "wal", "00000000000000000001-0000000000000000.wal"), nil, 0o600)
		}, true},
		{"snapshot", func(dir string) error { return os.MkdirAll(filepath.Join(dir, "snapshots", "1-5-123"), 0o700) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "raft")
			if err := tt.setup(dir); err != nil {
				t.Fatal(err)
			}
			if got := HasState(dir); got != tt.want {
				t.Errorf("HasState = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestStreamLayerAddr(t *testing.T) {
	tests := []struct {
		name, advertise string
		want            string // empty: the bound address
	}{
		{"no advertise", "", ""},
		{"port zero", "127.0.0.1:0", ""},
		{"explicit", "192.0.2.10:8300", "192.0.2.10:8300"},
	}
	c := newCA(t)
	server, client := hubTLS(t, c, "hub-1")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := listenStream("127.0.0.1:0", tt.advertise, server, client, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			want := tt.want
			if want == "" {
				want = s.tcp.Addr().String()
			}
			if got := s.Addr().String(); got != want {
				t.Errorf("Addr() = %s, want %s", got, want)
			}
		})
	}
	if _, err := listenStream("256.0.0.1:1", "", server, client, nil); err == nil {
		t.Error("listen on a bad address succeeded")
	}
}

// TestStreamLayerAuthorisesHubsOnly checks that the raft transport talks to hub nodes of the trust domain
// and to nobody else, on accept and on dial.
func TestStreamLayerAuthorisesHubsOnly(t *testing.T) {
	c := newCA(t)
	server, client := hubTLS(t, c, "hub-1")
	issue := func(id string) *x509svid.SVID {
		sid := spiffeid.RequireFromString(id)
		certs, key, err := c.Issue(sid, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return &x509svid.SVID{ID: sid, Certificates: certs, PrivateKey: key}
	}
	hubOnly := fedid.Authorizer(c.TrustDomain(), fedid.KindHub, nil)
	clientFor := func(svid *x509svid.SVID) *tls.Config {
		return tlsconfig.MTLSClientConfig(x509svid.Source(staticSVID{svid}), c.Bundle(), hubOnly)
	}
	serverFor := func(svid *x509svid.SVID) *tls.Config {
		return tlsconfig.MTLSServerConfig(x509svid.Source(staticSVID{svid}), c.Bundle(), hubOnly)
	}
	// Another federation's hub, with its own root, under the same trust domain name.
	foreign := spiffetest.New(t, td)
	foreignHub := foreign.SVID(t, "spiffe://"+td+"/hub/hub-2", time.Hour)

	tests := []struct {
		name           string
		server, client *tls.Config
		ok             bool
	}{
		{"hub to hub", server, clientFor(issue("spiffe://" + td + "/hub/hub-2")), true},
		{"connector dials", server, clientFor(issue("spiffe://" + td + "/org/moi/connector/dp1")), false},
		{"operator dials", server, clientFor(issue("spiffe://" + td + "/operator/admin")), false},
		{"foreign hub dials", server, tlsconfig.MTLSClientConfig(staticSVID{foreignHub}, c.Bundle(), hubOnly), false},
		{"connector answers", serverFor(issue("spiffe://" + td + "/org/moi/connector/dp1")), client, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := listenStream("127.0.0.1:0", "", tt.server, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			accepted := make(chan error, 1)
			go func() {
				conn, err := s.Accept()
				if err != nil {
					accepted <- err
					return
				}
				defer conn.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				err = conn.(*tls.Conn).HandshakeContext(ctx)
				if err == nil {
					_, err = conn.Write([]byte{1})
				}
				accepted <- err
			}()
			dialer := &streamLayer{client: tt.client}
			conn, dialErr := dialer.Dial(raft.ServerAddress(s.Addr().String()), 5*time.Second)
			var readErr error
			if dialErr == nil {
				// In TLS 1.3 the server judges the client's certificate after the client's handshake is
				// done; its verdict arrives with the first read.
				_, readErr = conn.Read(make([]byte, 1))
				conn.Close()
			}
			// A connection whose handshake the server refuses never reaches Accept.
			var serverErr error
			select {
			case serverErr = <-accepted:
			case <-time.After(2 * time.Second):
				serverErr = errors.New("never accepted")
			}
			if tt.ok {
				if dialErr != nil || readErr != nil || serverErr != nil {
					t.Fatalf("dial %v, read %v, server %v", dialErr, readErr, serverErr)
				}
				return
			}
			if dialErr == nil && readErr == nil && serverErr == nil {
				t.Fatal("connection accepted")
			}
		})
	}
}

type staticSVID struct{ svid *x509svid.SVID }

func (s staticSVID) GetX509SVID() (*x509svid.SVID, error) { return s.svid, nil }

// gather reads the registry into "name{label="value"}" keys.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			out[key] = m.GetGauge().GetValue()
		}
	}
	return out
}
