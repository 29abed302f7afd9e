package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Membership, the way Consul's and Nomad's autopilot does it: a new node joins as a non-voter, so that a
// node still catching up never counts towards the quorum; the leader promotes it once it has stayed caught
// up for a while, and removes voters that have been dead longer than a threshold when the cluster keeps
// enough voters without them.

// AutopilotConfig tunes promotion and dead-server cleanup.
type AutopilotConfig struct {
	// MaxTrailingLogs is how far behind the leader's commit index a non-voter may be and count as caught up.
	MaxTrailingLogs uint64
	// Stabilization is how long a non-voter must stay caught up and healthy before it is promoted.
	Stabilization time.Duration
	// DeadServerThreshold is how long a voter may be unreachable before it is removed; 0 turns cleanup off.
	DeadServerThreshold time.Duration
	// MinVoters is the fewest voters cleanup leaves: it never removes a dead voter if that would leave fewer.
	MinVoters int
	// Interval is how often the leader checks its peers.
	Interval time.Duration
}

func (a AutopilotConfig) withDefaults() AutopilotConfig {
	if a.MaxTrailingLogs == 0 {
		a.MaxTrailingLogs = 250
	}
	if a.Stabilization == 0 {
		a.Stabilization = 3 * time.Second
	}
	if a.MinVoters == 0 {
		a.MinVoters = 3
	}
	if a.Interval == 0 {
		a.Interval = time.Second
	}
	return a
}

// Server is a member of the raft configuration, with what the leader knows of its health.
type Server struct {
	ID       string `json:"id"`
	Address  string `json:"raft_address"`
	Suffrage string `json:"suffrage"` // voter or nonvoter
	Leader   bool   `json:"leader"`
	// Healthy and Stats are the leader's latest view (Stats is nil when the node did not answer).
	Healthy     bool       `json:"healthy"`
	LastContact time.Time  `json:"last_contact,omitzero"`
	Stats       *NodeStats `json:"stats,omitempty"`
}

// Servers lists the raft configuration with each server's health as the leader sees it; on a follower
// the health comes from asking each node now.
func (c *Cluster) Servers(ctx context.Context) ([]Server, error) {
	fut := c.raft.GetConfiguration()
	if err := fut.Error(); err != nil {
		return nil, err
	}
	leader := c.leaderAddr()
	var out []Server
	for _, s := range fut.Configuration().Servers {
		srv := Server{ID: string(s.ID), Address: string(s.Address), Suffrage: "voter", Leader: string(s.Address) == leader}
		if s.Suffrage != raft.Voter {
			srv.Suffrage = "nonvoter"
		}
		var st NodeStats
		var err error
		if string(s.ID) == c.nodeID {
			st = c.Stats()
		} else {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			st, err = c.nodeStats(cctx, string(s.Address))
			cancel()
		}
		if err == nil {
			srv.Stats, srv.Healthy, srv.LastContact = &st, true, time.Now().UTC()
		} else if h, ok := c.health.get(string(s.ID)); ok {
			srv.LastContact = h.lastOK
		}
		out = append(out, srv)
	}
	return out, nil
}

// AddNonvoter adds a node as a non-voter (the leader promotes it when caught up). Forwarded to the leader
// if this node does not lead. Adding a node that is already a member at the same address changes nothing.
func (c *Cluster) AddNonvoter(ctx context.Context, id, addr string) error {
	return c.membership(ctx, membership{Op: opAddNonvoter, ID: id, Address: addr})
}

// Remove takes a node out of the configuration, through the leader.
func (c *Cluster) Remove(ctx context.Context, id string) error {
	return c.membership(ctx, membership{Op: opRemove, ID: id})
}

func (c *Cluster) membership(ctx context.Context, m membership) error {
	deadline := time.Now().Add(c.hold)
	for {
		var err error
		if c.raft.State() == raft.Leader {
			err = c.membershipLocal(m)
		} else if addr := c.leaderAddr(); addr != "" {
			body, _ := json.Marshal(m)
			err = c.forwardCall(ctx, http.MethodPost, addr, fwdMembership, body, nil)
		} else {
			err = ErrNotLeader
		}
		if err == nil || !(errors.Is(err, ErrNotLeader) || errors.Is(err, errUnsent)) {
			return err
		}
		if time.Now().After(deadline) {
			return ErrNoLeader
		}
		select {
		case <-ctx.Done():
			return ErrNoLeader
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// membershipLocal changes the configuration on the leader.
func (c *Cluster) membershipLocal(m membership) error {
	if c.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	fut := c.raft.GetConfiguration()
	if err := fut.Error(); err != nil {
		return err
	}
	conf := fut.Configuration()
	var cur *raft.Server
	for i := range conf.Servers {
		if string(conf.Servers[i].ID) == m.ID {
			cur = &conf.Servers[i]
		}
	}
	var f raft.IndexFuture
	switch m.Op {
	case opAddNonvoter:
		switch {
		case cur == nil:
			f = c.raft.AddNonvoter(raft.ServerID(m.ID), raft.ServerAddress(m.Address), fut.Index(), 10*time.Second)
		case string(cur.Address) != m.Address:
			// Back at another address: AddNonvoter of a known id moves it, and makes it a non-voter.
			f = c.raft.AddNonvoter(cur.ID, raft.ServerAddress(m.Address), fut.Index(), 10*time.Second)
		case cur.Suffrage == raft.Voter:
			// A member that lost its disk and joined again: its log is empty, so it must not count towards
			// the quorum until it has caught up (a majority of it and a lagging peer could lose entries).
			// The autopilot promotes it again.
			f = c.raft.DemoteVoter(cur.ID, fut.Index(), 10*time.Second)
		default:
			return nil
		}
	case opAddVoter:
		if cur == nil {
			return fmt.Errorf("node %s is not a member", m.ID)
		}
		f = c.raft.AddVoter(cur.ID, cur.Address, fut.Index(), 10*time.Second)
	case opRemove:
		if cur == nil {
			return fmt.Errorf("node %s is not a member of the cluster", m.ID)
		}
		f = c.raft.RemoveServer(cur.ID, fut.Index(), 10*time.Second)
	default:
		return fmt.Errorf("unknown membership operation %q", m.Op)
	}
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return ErrNotLeader
		}
		return err
	}
	c.log.Info("cluster membership changed", "op", m.Op, "node", m.ID, "address", m.Address)
	return nil
}

// peerHealth is the leader's record of each peer's answers.
type peerHealth struct {
	mu    sync.Mutex
	peers map[string]*peerState
}

type peerState struct {
	healthy     bool
	lastOK      time.Time
	firstFail   time.Time
	caughtUpAt  time.Time // since when a non-voter has been caught up; zero if it is not
	lastApplied uint64
}

func newPeerHealth() *peerHealth { return &peerHealth{peers: map[string]*peerState{}} }

func (h *peerHealth) get(id string) (peerState, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, ok := h.peers[id]
	if !ok {
		return peerState{}, false
	}
	return *p, true
}

// snapshot copies the health of every peer, for metrics.
func (h *peerHealth) snapshot() map[string]bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]bool, len(h.peers))
	for id, p := range h.peers {
		out[id] = p.healthy
	}
	return out
}

func (h *peerHealth) reset() {
	h.mu.Lock()
	h.peers = map[string]*peerState{}
	h.mu.Unlock()
}

// RunAutopilot checks the peers every interval while this node leads: it records their health, promotes
// caught-up non-voters and removes long-dead voters. It returns when ctx ends.
func (c *Cluster) RunAutopilot(ctx context.Context) error {
	t := time.NewTicker(c.autopilot.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if c.raft.State() != raft.Leader {
			c.health.reset()
			continue
		}
		c.autopilotRound(ctx)
	}
}

func (c *Cluster) autopilotRound(ctx context.Context) {
	fut := c.raft.GetConfiguration()
	if fut.Error() != nil {
		return
	}
	servers := fut.Configuration().Servers
	commit := c.Stats().CommitIndex
	now := time.Now()
	voters, healthyVoters := 0, 0
	type verdict struct {
		srv     raft.Server
		healthy bool
		state   peerState
	}
	var vs []verdict
	for _, s := range servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
		if string(s.ID) == c.nodeID {
			healthyVoters++
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, c.autopilot.Interval)
		st, err := c.nodeStats(cctx, string(s.Address))
		cancel()
		c.health.mu.Lock()
		p := c.health.peers[string(s.ID)]
		if p == nil {
			p = &peerState{firstFail: now}
			c.health.peers[string(s.ID)] = p
		}
		if err == nil {
			p.healthy, p.lastOK, p.firstFail, p.lastApplied = true, now, time.Time{}, st.AppliedIndex
			if st.AppliedIndex+c.autopilot.MaxTrailingLogs >= commit {
				if p.caughtUpAt.IsZero() {
					p.caughtUpAt = now
				}
			} else {
				p.caughtUpAt = time.Time{}
			}
		} else {
			if p.healthy || p.firstFail.IsZero() {
				p.firstFail = now
			}
			p.healthy, p.caughtUpAt = false, time.Time{}
		}
		ps := *p
		c.health.mu.Unlock()
		if ps.healthy && s.Suffrage == raft.Voter {
			healthyVoters++
		}
		vs = append(vs, verdict{s, ps.healthy, ps})
	}
	for _, v := range vs {
		switch {
		case v.srv.Suffrage == raft.Nonvoter && v.healthy && !v.state.caughtUpAt.IsZero() && now.Sub(v.state.caughtUpAt) >= c.autopilot.Stabilization:
			if err := c.membershipLocal(membership{Op: opAddVoter, ID: string(v.srv.ID)}); err != nil {
				c.log.Warn("promote a caught-up node", "node", v.srv.ID, "err", err)
			} else {
				c.log.Info("promoted a caught-up node to voter", "node", v.srv.ID)
			}
		case v.srv.Suffrage == raft.Voter && !v.healthy && c.autopilot.DeadServerThreshold > 0 &&
			now.Sub(v.state.firstFail) >= c.autopilot.DeadServerThreshold && voters-1 >= c.autopilot.MinVoters && healthyVoters > (voters-1)/2:
			if err := c.membershipLocal(membership{Op: opRemove, ID: string(v.srv.ID)}); err != nil {
				c.log.Warn("remove a dead node", "node", v.srv.ID, "err", err)
			} else {
				c.log.Warn("removed a node dead for longer than the threshold", "node", v.srv.ID, "threshold", c.autopilot.DeadServerThreshold)
				voters--
			}
		}
	}
	c.health.mu.Lock()
	for id := range c.health.peers {
		if !slices.ContainsFunc(servers, func(s raft.Server) bool { return string(s.ID) == id }) {
			delete(c.health.peers, id)
		}
	}
	c.health.mu.Unlock()
}

// RunAsLeader runs job while this node leads, cancelling it when leadership is lost and starting it again
// when it comes back: the leader-only work (purges, keyring upkeep, outboxes).
func (c *Cluster) RunAsLeader(ctx context.Context, name string, job func(context.Context)) error {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	var (
		cancel context.CancelFunc
		done   chan struct{}
	)
	stop := func() {
		if cancel != nil {
			cancel()
			<-done
			cancel = nil
		}
	}
	defer stop()
	for {
		leads := c.raft.State() == raft.Leader
		switch {
		case leads && cancel == nil:
			cancel, done = startJob(ctx, job)
			c.log.Debug("leader job started", "job", name)
		case !leads && cancel != nil:
			stop()
			c.log.Debug("leader job stopped", "job", name)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// startJob runs job in its own goroutine under a context of its own; done closes when it has returned.
func startJob(ctx context.Context, job func(context.Context)) (context.CancelFunc, chan struct{}) {
	jctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		job(jctx)
	}()
	return cancel, done
}
