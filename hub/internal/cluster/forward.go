package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"time"

	"github.com/hashicorp/raft"
	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Forwarding: a follower sends a write to the leader over the raft port (ALPN protoForward, the same
// hub-only mutual TLS as raft) and answers with the leader's result once it has applied the entry itself,
// so a citizen who writes through one node reads the write there. Membership changes and node statistics
// travel the same way. Like Vault's request forwarding, but of state-machine commands rather than HTTP
// requests: every write of the hub, whatever surface it comes from, is a command.

// Paths of the forwarding protocol.
const (
	fwdApply      = "/apply"
	fwdMembership = "/membership"
	fwdStats      = "/stats"
)

// maxForwardBody bounds a forwarded command (receipt batches are the largest).
const maxForwardBody = 8 << 20

// applied is the leader's answer to a forwarded command.
type applied struct {
	Index   uint64   `json:"index"`
	Code    fsm.Code `json:"code"`
	Message string   `json:"message,omitempty"`
}

// membership asks the leader to change the configuration.
type membership struct {
	Op      string `json:"op"` // add-nonvoter, add-voter, remove
	ID      string `json:"id"`
	Address string `json:"address,omitempty"`
}

// Membership operations.
const (
	opAddNonvoter = "add-nonvoter"
	opAddVoter    = "add-voter"
	opRemove      = "remove"
)

// NodeStats is what a node says of itself.
type NodeStats struct {
	ID           string `json:"id"`
	State        string `json:"state"`
	Leader       string `json:"leader"`
	AppliedIndex uint64 `json:"applied_index"`
	CommitIndex  uint64 `json:"commit_index"`
	LastLogIndex uint64 `json:"last_log_index"`
	Term         uint64 `json:"term"`
	// LastContactMS is the milliseconds since it last heard from the leader: 0 on the leader, -1 never.
	LastContactMS int64 `json:"last_contact_ms"`
}

// errNotLeaderHere is the forwarding server's answer when it lost leadership meanwhile.
const notLeaderStatus = http.StatusMisdirectedRequest

func (c *Cluster) forwardHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+fwdApply, func(w http.ResponseWriter, r *http.Request) {
		data, err := io.ReadAll(io.LimitReader(r.Body, maxForwardBody+1))
		if err != nil || len(data) > maxForwardBody || len(data) < 2 {
			http.Error(w, "bad command", http.StatusBadRequest)
			return
		}
		res, index, err := c.applyLocal(data)
		switch {
		case errors.Is(err, ErrNotLeader):
			http.Error(w, err.Error(), notLeaderStatus)
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		default:
			writeJSON(w, applied{Index: index, Code: res.Code, Message: res.Message})
		}
	})
	mux.HandleFunc("POST "+fwdMembership, func(w http.ResponseWriter, r *http.Request) {
		var m membership
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&m); err != nil {
			http.Error(w, "bad membership request", http.StatusBadRequest)
			return
		}
		err := c.membershipLocal(m)
		switch {
		case errors.Is(err, ErrNotLeader):
			http.Error(w, err.Error(), notLeaderStatus)
		case err != nil:
			http.Error(w, err.Error(), http.StatusConflict)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	mux.HandleFunc("GET "+fwdStats, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, c.Stats())
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// newForwardServer makes the server of forwarded requests; it serves the stream layer's forward listener.
// Each request is authorised again (PeerCheck): a node removed from the cluster keeps no open door.
func (c *Cluster) newForwardServer() *http.Server {
	h := c.forwardHandler()
	return &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if peer, ok := r.Context().Value(peerKey{}).(spiffeid.ID); ok && c.peerCheck != nil {
				if err := c.peerCheck(peer); err != nil {
					http.Error(w, err.Error(), http.StatusForbidden)
					return
				}
			}
			h.ServeHTTP(w, r)
		}),
		ConnContext: func(ctx context.Context, conn net.Conn) context.Context {
			if pc, ok := conn.(plainConn); ok {
				return context.WithValue(ctx, peerKey{}, pc.peer)
			}
			return ctx
		},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(c.log.Handler(), slog.LevelDebug),
	}
}

type peerKey struct{}

// newForwardClient makes the HTTP client that speaks the forwarding protocol to other nodes. The URL's
// host is the node's raft address; connections are mutual TLS with ALPN protoForward, made by the dialler.
func newForwardClient(s *streamLayer) *http.Client {
	tr := &http.Transport{
		// Plain http:// on the client side too: the dialler does the mutual TLS, and net/http must not
		// look at the ALPN protocol (it knows only its own).
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			tc, err := s.dial(ctx, addr, protoForward)
			if err != nil {
				return nil, err
			}
			return plainConn{Conn: tc}, nil
		},
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     60 * time.Second,
	}
	return &http.Client{Transport: tr}
}

// errUnsent marks a forwarding failure before the leader could have received the command: safe to retry.
var errUnsent = errors.New("not sent")

// forwardApply sends an encoded command to the leader at addr.
func (c *Cluster) forwardApply(ctx context.Context, addr string, data []byte) (fsm.Result, uint64, error) {
	var a applied
	err := c.forwardCall(ctx, http.MethodPost, addr, fwdApply, data, &a)
	if err != nil {
		return fsm.Result{}, 0, err
	}
	return fsm.Result{Code: a.Code, Message: a.Message}, a.Index, nil
}

// forwardCall makes one call to the node at addr. An error wraps errUnsent when the request surely did not
// reach it (no connection), and ErrNotLeader when the node answered that it does not lead.
func (c *Cluster) forwardCall(ctx context.Context, method, addr, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	sent := false
	req = req.WithContext(withWroteRequest(req.Context(), &sent))
	resp, err := c.fwd.Do(req)
	if err != nil {
		if !sent {
			return fmt.Errorf("forward to %s: %w: %v", addr, errUnsent, err)
		}
		return fmt.Errorf("forward to %s: %w", addr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode == notLeaderStatus:
		return fmt.Errorf("forward to %s: %w", addr, ErrNotLeader)
	case resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("forward to %s: %w: %s", addr, ErrRefused, bytes.TrimSpace(b))
	case resp.StatusCode == http.StatusNoContent:
		return nil
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("forward to %s: %s: %s", addr, resp.Status, bytes.TrimSpace(b))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// nodeStats asks the node at addr for its statistics.
func (c *Cluster) nodeStats(ctx context.Context, addr string) (NodeStats, error) {
	var st NodeStats
	err := c.forwardCall(ctx, http.MethodGet, addr, fwdStats, nil, &st)
	return st, err
}

// leaderAddr is the leader's raft address, empty if none is known.
func (c *Cluster) leaderAddr() string {
	addr, _ := c.raft.LeaderWithID()
	return string(addr)
}

// Stats is what this node says of itself.
func (c *Cluster) Stats() NodeStats {
	st := c.raft.Stats()
	lc := int64(-1)
	switch {
	case c.raft.State() == raft.Leader:
		lc = 0
	case !c.raft.LastContact().IsZero():
		lc = time.Since(c.raft.LastContact()).Milliseconds()
	}
	return NodeStats{
		ID: c.nodeID, State: c.raft.State().String(), Leader: c.Leader(), AppliedIndex: c.fsm.AppliedIndex(),
		CommitIndex: parseUint(st["commit_index"]), LastLogIndex: parseUint(st["last_log_index"]), Term: parseUint(st["term"]),
		LastContactMS: lc,
	}
}

func parseUint(s string) uint64 {
	var v uint64
	_, _ = fmt.Sscan(s, &v)
	return v
}

// withWroteRequest notes in *sent when the request's headers have gone out: before that, a failed call
// surely did not reach the other node.
func withWroteRequest(ctx context.Context, sent *bool) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteHeaders: func() { *sent = true }})
}

// Sync waits until this node has applied everything the leader had committed when Sync was called (raft
// §6.4's read index, without the leader's heartbeat round: the leader's answer is taken as current). A read
// that found nothing on a follower — a code issued through another node a moment ago — syncs and reads
// again. On the leader it returns at once.
func (c *Cluster) Sync(ctx context.Context) error {
	if c.raft.State() == raft.Leader {
		return nil
	}
	addr := c.leaderAddr()
	if addr == "" {
		return ErrNoLeader
	}
	st, err := c.nodeStats(ctx, addr)
	if err != nil {
		return err
	}
	return c.waitApplied(ctx, st.CommitIndex)
}
