package api

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/mydatafed/mydata/hub/internal/ca"
	"github.com/mydatafed/mydata/hub/internal/cluster"
	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/jointoken"
	"github.com/mydatafed/mydata/pkg/pemfile"
)

// Paths of the cluster API: a node joining (join, secrets, members) and the operator's commands.
const (
	PathClusterJoin    = "/v1/cluster/join"
	PathClusterSecrets = "/v1/cluster/secrets"
	PathClusterMembers = "/v1/cluster/members"
	PathAdminCluster   = "/v1/admin/cluster"
	PathAdminNodeToken = "/v1/admin/cluster/tokens"
	PathAdminRemove    = "/v1/admin/cluster/remove"
	PathAdminKeyring   = "/v1/admin/keyring/rotate"
)

// JoinRequest is a new node's first call: its join token and a CSR for its hub SVID.
type JoinRequest struct {
	Token       string `json:"token"`
	Node        string `json:"node_id"`
	RaftAddress string `json:"raft_address"`
	APIURL      string `json:"api_url"`
	CSR         []byte `json:"csr"`
}

// Secrets is what a member receives over mutual TLS to serve like the others: the federation root (the
// CA every node issues SVIDs from) and the cluster key-encryption key that opens the keyring.
type Secrets struct {
	RootCert []byte `json:"root_cert"` // PEM
	RootKey  []byte `json:"root_key"`  // PEM
	KEK      []byte `json:"kek"`
}

// MemberRequest asks for the calling node to be added to raft, as a non-voter.
type MemberRequest struct {
	RaftAddress string `json:"raft_address"`
}

// NodeTokenRequest asks for a node join token.
type NodeTokenRequest struct {
	TTLSeconds int64 `json:"ttl_seconds,omitempty"`
}

// RemoveRequest asks to remove a node.
type RemoveRequest struct {
	Node string `json:"node"`
}

// RotateRequest asks for a new active keyring key of a purpose.
type RotateRequest struct {
	Purpose string `json:"purpose"`
}

// RotateResponse names the new key.
type RotateResponse struct {
	Purpose string `json:"purpose"`
	ID      string `json:"id"`
}

// ClusterStatus is the cluster as one node sees it.
type ClusterStatus struct {
	Node    string           `json:"node"`
	Leader  string           `json:"leader"`
	Servers []cluster.Server `json:"servers"`
	Nodes   []fsm.Node       `json:"nodes"`
}

// join admits a new hub node: the token is spent in the same raft entry that records the node, so one
// token admits one node whichever nodes it is presented to. The caller has no SVID yet; it pinned the root
// from the token's fingerprint.
func (s *Server) join(w http.ResponseWriter, r *http.Request) {
	var req JoinRequest
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	tok, err := jointoken.Parse(req.Token)
	if err != nil {
		writeError(w, http.StatusBadRequest, "token: "+err.Error())
		return
	}
	id, err := fedid.Hub(s.td, req.Node)
	if err != nil {
		writeError(w, http.StatusBadRequest, "node_id: "+err.Error())
		return
	}
	now := s.now()
	exp, ok, err := s.cfg.State.NodeToken(tok.Hash())
	if err == nil && !ok {
		// Made through another node a moment ago, perhaps: catch up with the leader and look again.
		if err = s.cfg.Cluster.Sync(r.Context()); err == nil {
			exp, ok, err = s.cfg.State.NodeToken(tok.Hash())
		}
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !ok || !now.Before(exp) {
		s.log.Warn("node join refused", "node", req.Node, "remote", r.RemoteAddr, "known", ok)
		writeError(w, http.StatusForbidden, "node join token is unknown, used or expired")
		return
	}
	csr, err := hubapi.ParseCSR(req.CSR)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	cert, err := s.cfg.CA.SignCSR(csr, id, s.cfg.SVIDTTL)
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, ca.ErrCSR) {
			status = http.StatusBadRequest
		}
		writeError(w, status, err.Error())
		return
	}
	cmd := &fsm.NodeJoin{TokenHash: tok.Hash(), Node: req.Node, RaftAddress: req.RaftAddress, APIURL: req.APIURL,
		Cert: certRecord(cert, id.String(), "node", now), Now: now}
	if err := s.cfg.Cluster.Apply(cmd); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("hub node admitted", "node", req.Node, "raft_address", req.RaftAddress)
	writeJSON(w, http.StatusOK, s.svidResponse(id.String(), cert))
}

// member checks that the calling hub node is an admitted member, and gives its name.
func (s *Server) member(w http.ResponseWriter, r *http.Request) (string, bool) {
	p := peer(r)
	n, err := s.cfg.State.Node(p.Name)
	if err != nil {
		s.fail(w, r, err)
		return "", false
	}
	if n == nil || n.Status != fsm.NodeActive {
		writeError(w, http.StatusForbidden, fmt.Sprintf("hub node %s is not an admitted member of this cluster", p.Name))
		return "", false
	}
	return p.Name, true
}

// secrets hands a member the root and the cluster key, over mutual TLS with its hub SVID.
func (s *Server) secrets(w http.ResponseWriter, r *http.Request) {
	name, ok := s.member(w, r)
	if !ok {
		return
	}
	key, err := pemfile.EncodeKey(s.cfg.CA.Key())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("cluster secrets handed to a member", "node", name)
	writeJSON(w, http.StatusOK, Secrets{RootCert: pemfile.EncodeCertificates([]*x509.Certificate{s.cfg.CA.Root()}), RootKey: key, KEK: s.cfg.KEK})
}

// addMember puts the calling node into raft as a non-voter; the leader promotes it once it has caught up.
func (s *Server) addMember(w http.ResponseWriter, r *http.Request) {
	name, ok := s.member(w, r)
	if !ok {
		return
	}
	var req MemberRequest
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	if err := s.cfg.Cluster.AddNonvoter(ctx, name, req.RaftAddress); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) clusterStatus(w http.ResponseWriter, r *http.Request) {
	servers, err := s.cfg.Cluster.Servers(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	nodes, err := s.cfg.State.Nodes()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ClusterStatus{Node: s.cfg.NodeID, Leader: s.cfg.Cluster.Leader(), Servers: servers, Nodes: nodes})
}

func (s *Server) createNodeToken(w http.ResponseWriter, r *http.Request) {
	var req NodeTokenRequest
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ttl, ok := s.tokenTTL(w, req.TTLSeconds)
	if !ok {
		return
	}
	tok := jointoken.New(s.cfg.CA.Fingerprint())
	now := s.now()
	if err := s.act(r, "cluster join-token", map[string]string{"expires_at": now.Add(ttl).UTC().Format(time.RFC3339)}, &fsm.NodeTokenCreate{Hash: tok.Hash(), ExpiresAt: now.Add(ttl), Now: now}); err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, "cluster join-token", "expires_at", now.Add(ttl))
	writeJSON(w, http.StatusCreated, hubapi.TokenResponse{Token: tok.String(), ExpiresAt: now.Add(ttl).UTC()})
}

// removeNode takes a node out of raft and out of the federation: its keys leave the directory and its
// SVID is refused from then on.
func (s *Server) removeNode(w http.ResponseWriter, r *http.Request) {
	var req RemoveRequest
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := fedid.ValidName(req.Node); err != nil {
		writeError(w, http.StatusBadRequest, "node: "+err.Error())
		return
	}
	servers, err := s.cfg.Cluster.Servers(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	inRaft := slices.ContainsFunc(servers, func(sv cluster.Server) bool { return sv.ID == req.Node })
	n, err := s.cfg.State.Node(req.Node)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !inRaft && (n == nil || n.Status == fsm.NodeRemoved) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("node %s is not a member of the cluster", req.Node))
		return
	}
	if inRaft {
		ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
		defer cancel()
		if err := s.cfg.Cluster.Remove(ctx, req.Node); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	if n != nil && n.Status == fsm.NodeActive {
		if err := s.act(r, "cluster remove", map[string]string{"node": req.Node}, &fsm.NodeRemove{Node: req.Node, Now: s.now()}); err != nil {
			s.fail(w, r, err)
			return
		}
	} else if err := s.act(r, "cluster remove", map[string]string{"node": req.Node, "raft_only": "true"}, nil); err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, "cluster remove", "node", req.Node)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) rotateKeyring(w http.ResponseWriter, r *http.Request) {
	var req RotateRequest
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !slices.Contains(fsm.KeyringPurposes, req.Purpose) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("purpose: %q is not one of %v", req.Purpose, fsm.KeyringPurposes))
		return
	}
	id, err := s.cfg.Keyring.Rotate(req.Purpose, func(cmd fsm.Command) error {
		return s.act(r, "keyring rotate", map[string]string{"purpose": req.Purpose}, cmd)
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, "keyring rotate", "purpose", req.Purpose, "key", id)
	writeJSON(w, http.StatusOK, RotateResponse{Purpose: req.Purpose, ID: id})
}
