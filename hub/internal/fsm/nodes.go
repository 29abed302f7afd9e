package fsm

import (
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/mydatafed/mydata/pkg/fedid"
)

// Hub node states.
const (
	NodeActive  = "active"
	NodeRemoved = "removed"
)

// Node is a hub node as the state knows it: where it is reached, and whether it is still a member.
type Node struct {
	ID          string    `json:"id"`
	RaftAddress string    `json:"raft_address"`
	APIURL      string    `json:"api_url"`
	Status      string    `json:"status"`
	JoinedAt    time.Time `json:"joined_at"`
	RemovedAt   time.Time `json:"removed_at,omitzero"`
}

// NodeTokenCreate records a token a new hub node joins with, by its hash.
type NodeTokenCreate struct {
	Hash      string    `json:"hash"`
	ExpiresAt time.Time `json:"expires_at"`
	Now       time.Time `json:"now"`
}

// NodeJoin spends a node join token and records the node and the certificate it was issued, in one entry,
// so that one token admits one node even when it is presented to several nodes at once. A member may join
// again (after losing its disk); a removed node may not.
type NodeJoin struct {
	TokenHash   string     `json:"token_hash"`
	Node        string     `json:"node"`
	RaftAddress string     `json:"raft_address"`
	APIURL      string     `json:"api_url"`
	Cert        CertRecord `json:"cert"`
	Now         time.Time  `json:"now"`
}

// NodeInfo records where a node is reached; each node states it when it starts (the first node of a
// cluster has no join to record it).
type NodeInfo struct {
	Node        string    `json:"node"`
	RaftAddress string    `json:"raft_address"`
	APIURL      string    `json:"api_url"`
	Now         time.Time `json:"now"`
}

// NodeRemove marks a node removed and retires its keys from the directory: its tickets no longer verify
// and its SVID is refused by the other nodes.
type NodeRemove struct {
	Node string    `json:"node"`
	Now  time.Time `json:"now"`
}

// NodeTokenPurge deletes node join tokens that expired before Now.
type NodeTokenPurge struct {
	Now time.Time `json:"now"`
}

func validNodeAddress(raftAddr, apiURL string) error {
	if _, port, err := net.SplitHostPort(raftAddr); err != nil || port == "" {
		return fmt.Errorf("raft_address: %q is not host:port", raftAddr)
	}
	if u, err := url.Parse(apiURL); err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("api_url: %q is not an https:// URL", apiURL)
	}
	return nil
}

func (c *NodeTokenCreate) Validate() error {
	if c.Hash == "" || !c.ExpiresAt.After(c.Now) {
		return errors.New("node token: a hash and an expiry after now are required")
	}
	return nil
}

func (c *NodeJoin) Validate() error {
	if c.TokenHash == "" {
		return errors.New("join: token hash required")
	}
	if err := fedid.ValidName(c.Node); err != nil {
		return fmt.Errorf("node_id: %w", err)
	}
	if err := validNodeAddress(c.RaftAddress, c.APIURL); err != nil {
		return err
	}
	return c.Cert.Validate()
}

func (c *NodeInfo) Validate() error {
	if err := fedid.ValidName(c.Node); err != nil {
		return fmt.Errorf("node_id: %w", err)
	}
	return validNodeAddress(c.RaftAddress, c.APIURL)
}

func (c *NodeRemove) Validate() error { return fedid.ValidName(c.Node) }

func (c *NodeTokenPurge) Validate() error { return nil }

func applyNodeTokenCreate(tx *sql.Tx, c *NodeTokenCreate) (Result, bool, error) {
	_, err := tx.Exec(`INSERT INTO node_tokens(hash, created_at, expires_at) VALUES (?, ?, ?)`, c.Hash, ms(c.Now), ms(c.ExpiresAt))
	return Result{}, false, err
}

func applyNodeJoin(tx *sql.Tx, c *NodeJoin) (Result, bool, error) {
	var exp int64
	err := tx.QueryRow(`SELECT expires_at FROM node_tokens WHERE hash = ?`, c.TokenHash).Scan(&exp)
	if errors.Is(err, sql.ErrNoRows) {
		return refuse(Forbidden, "node join token is unknown or already used"), false, nil
	}
	if err != nil {
		return Result{}, false, err
	}
	if !c.Now.Before(fromMS(exp)) {
		return refuse(Forbidden, "node join token expired at %s", fromMS(exp).Format(time.RFC3339)), false, nil
	}
	n, err := node(tx, c.Node)
	if err != nil {
		return Result{}, false, err
	}
	// A removed node's id stays refused: its SVIDs are refused by the others. An active node may join
	// again with a new token: the way back for a member that lost its disk.
	if n != nil && n.Status == NodeRemoved {
		return refuse(Conflict, "hub node %s was removed; node ids are never reused", c.Node), false, nil
	}
	if _, err := tx.Exec(`DELETE FROM node_tokens WHERE hash = ?`, c.TokenHash); err != nil {
		return Result{}, false, err
	}
	if _, err := tx.Exec(`INSERT INTO hub_nodes(id, raft_address, api_url, status, joined_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT(id) DO UPDATE SET raft_address = excluded.raft_address, api_url = excluded.api_url, joined_at = excluded.joined_at`,
		c.Node, c.RaftAddress, c.APIURL, NodeActive, ms(c.Now)); err != nil {
		return Result{}, false, err
	}
	if n != nil {
		// Joining again, it lost its ticket key with its disk: the old one leaves the directory.
		if _, err := tx.Exec(`DELETE FROM hub_keys WHERE node = ?`, c.Node); err != nil {
			return Result{}, false, err
		}
	}
	res, _, err := applyCertRecord(tx, &c.Cert)
	return res, n != nil, err
}

func applyNodeInfo(tx *sql.Tx, c *NodeInfo) (Result, bool, error) {
	n, err := node(tx, c.Node)
	if err != nil {
		return Result{}, false, err
	}
	if n != nil && n.Status == NodeRemoved {
		return refuse(Gone, "hub node %s was removed from the cluster", c.Node), false, nil
	}
	_, err = tx.Exec(`INSERT INTO hub_nodes(id, raft_address, api_url, status, joined_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT(id) DO UPDATE SET raft_address = excluded.raft_address, api_url = excluded.api_url`,
		c.Node, c.RaftAddress, c.APIURL, NodeActive, ms(c.Now))
	return Result{}, false, err
}

func applyNodeRemove(tx *sql.Tx, c *NodeRemove) (Result, bool, error) {
	n, err := node(tx, c.Node)
	if err != nil {
		return Result{}, false, err
	}
	switch {
	case n == nil:
		return refuse(NotFound, "hub node %s is not known", c.Node), false, nil
	case n.Status == NodeRemoved:
		return refuse(Conflict, "hub node %s is already removed", c.Node), false, nil
	}
	if _, err := tx.Exec(`UPDATE hub_nodes SET status = ?, removed_at = ? WHERE id = ?`, NodeRemoved, ms(c.Now), c.Node); err != nil {
		return Result{}, false, err
	}
	if _, err := tx.Exec(`DELETE FROM hub_keys WHERE node = ?`, c.Node); err != nil {
		return Result{}, false, err
	}
	return Result{}, true, nil
}

func applyNodeTokenPurge(tx *sql.Tx, c *NodeTokenPurge) (Result, bool, error) {
	_, err := tx.Exec(`DELETE FROM node_tokens WHERE expires_at <= ?`, ms(c.Now))
	return Result{}, false, err
}

func node(q queryRower, id string) (*Node, error) {
	var n Node
	var joined, removed int64
	err := q.QueryRow(`SELECT id, raft_address, api_url, status, joined_at, removed_at FROM hub_nodes WHERE id = ?`, id).
		Scan(&n.ID, &n.RaftAddress, &n.APIURL, &n.Status, &joined, &removed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	n.JoinedAt = fromMS(joined)
	if removed > 0 {
		n.RemovedAt = fromMS(removed)
	}
	return &n, nil
}

// Node finds a hub node; nil if there is none.
func (f *FSM) Node(id string) (*Node, error) { return node(f.db, id) }

// Nodes lists the hub nodes the state knows, removed ones included.
func (f *FSM) Nodes() ([]Node, error) {
	rows, err := f.db.Query(`SELECT id FROM hub_nodes ORDER BY id`)
	if err != nil {
		return nil, err
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	out := []Node{}
	for _, id := range ids {
		n, err := f.Node(id)
		if err != nil {
			return nil, err
		}
		out = append(out, *n)
	}
	return out, nil
}

// NodeRemoved says whether a hub node id was removed from the cluster; its SVID is then refused.
func (f *FSM) NodeRemoved(id string) bool {
	n, err := f.Node(id)
	return err == nil && n != nil && n.Status == NodeRemoved
}

// NodeToken looks up a node join token; ok is false if it is unknown.
func (f *FSM) NodeToken(hash string) (expires time.Time, ok bool, err error) {
	var exp int64
	err = f.db.QueryRow(`SELECT expires_at FROM node_tokens WHERE hash = ?`, hash).Scan(&exp)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, err
	}
	return fromMS(exp), true, nil
}
