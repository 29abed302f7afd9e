package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/mydatafed/mydata/hub/internal/ca"
	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/jointoken"
)

// Paths of the operator endpoints.
const (
	PathOperators      = "/v1/admin/operators"
	PathOperatorEnroll = "/v1/operator/enroll"
	PathOperatorRenew  = "/v1/operator/renew"
)

// OperatorRequest adds an operator.
type OperatorRequest struct {
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
}

// OperatorStatusRequest disables or enables an operator.
type OperatorStatusRequest struct {
	Status string `json:"status"`
}

// OperatorTokenRequest asks for an operator's join token.
type OperatorTokenRequest struct {
	TTLSeconds int64 `json:"ttl_seconds,omitempty"`
}

// OperatorEnrollRequest is an operator's enrollment: its join token, its name and a CSR for its SVID.
type OperatorEnrollRequest struct {
	Token string `json:"token"`
	Name  string `json:"name"`
	CSR   []byte `json:"csr"`
}

// Access to the admin endpoints: each route names the roles any one of which lets a caller through.
// A reviewer or applicant role matches whatever its scope.
var (
	// accessAdmin is every change and every read of secrets (a backup holds the root key).
	accessAdmin = []string{fsm.RoleFederationAdmin}
	// accessRead is the registry, certificates, the cluster and the operator log.
	accessRead = []string{fsm.RoleFederationAdmin, fsm.RoleAuditor}
	// accessCatalogue is what every operator may read: organisations, datasets, services.
	accessCatalogue = []string{fsm.RoleFederationAdmin, fsm.RoleAuditor, fsm.RoleReviewer, fsm.RoleApplicant}
)

type actorKey struct{}

func actorOf(r *http.Request) fsm.Actor {
	a, _ := r.Context().Value(actorKey{}).(fsm.Actor)
	return a
}

// allow lets through an operator holding one of the roles in access, with its roles as the actor of what
// it does. A refusal says which role the call needs.
func (s *Server) allow(access []string, next http.HandlerFunc) http.Handler {
	return s.require(fedid.KindOperator, func(w http.ResponseWriter, r *http.Request) {
		p := peer(r)
		id, _ := fedid.Operator(s.td, p.Name)
		roles, err := s.operatorRoles(p.Name)
		if err != nil {
			var fe *fsm.Error
			if errors.As(err, &fe) {
				s.log.Warn("operator refused", "operator", id.String(), "path", r.URL.Path, "reason", fe.Message)
			}
			s.fail(w, r, err)
			return
		}
		if !holds(roles, access) {
			need := "the role " + access[0]
			if len(access) > 1 {
				need = "one of the roles " + strings.Join(access, ", ")
			}
			s.log.Warn("operator refused", "operator", id.String(), "roles", roles, "method", r.Method, "path", r.URL.Path)
			writeError(w, http.StatusForbidden, fmt.Sprintf("operator %s (roles %s) may not %s %s: it needs %s",
				id, strings.Join(roles, ","), r.Method, r.URL.Path, need))
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), actorKey{}, fsm.Actor{SPIFFEID: id.String(), Roles: roles})))
	})
}

// operatorRoles are the roles of an active operator; the bootstrap credential is a federation
// administrator without a record.
func (s *Server) operatorRoles(name string) ([]string, error) {
	if name == fsm.BootstrapOperator {
		return []string{fsm.RoleFederationAdmin}, nil
	}
	op, err := s.cfg.State.Operator(name)
	switch {
	case err != nil:
		return nil, err
	case op == nil:
		return nil, &fsm.Error{Code: fsm.Forbidden, Message: fmt.Sprintf("operator %q is not registered at this hub", name)}
	case op.Status != fsm.OperatorActive:
		return nil, &fsm.Error{Code: fsm.Forbidden, Message: fmt.Sprintf("operator %q is %s", name, op.Status)}
	}
	return op.Roles, nil
}

func holds(roles, access []string) bool {
	for _, r := range roles {
		role, _ := fsm.SplitRole(r)
		if slices.Contains(access, role) {
			return true
		}
	}
	return false
}

// act applies an admin command as the calling operator's action: the command and its operator log entry
// go into one raft entry. cmd nil records the action alone. params must hold no secret.
func (s *Server) act(r *http.Request, op string, params map[string]string, cmd fsm.Command) error {
	a, err := fsm.Act(actorOf(r), op, params, cmd, s.now())
	if err != nil {
		return err
	}
	return s.cfg.Cluster.Apply(a)
}

func (s *Server) listOperators(w http.ResponseWriter, r *http.Request) {
	ops, err := s.cfg.State.Operators()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	for i := range ops {
		id, _ := fedid.Operator(s.td, ops[i].Name)
		ops[i].SPIFFEID = id.String()
	}
	writeJSON(w, http.StatusOK, ops)
}

func (s *Server) respondOperator(w http.ResponseWriter, r *http.Request, status int, name string) {
	op, err := s.cfg.State.Operator(name)
	if err != nil || op == nil {
		s.fail(w, r, fmt.Errorf("read back operator: %v", err))
		return
	}
	id, _ := fedid.Operator(s.td, name)
	op.SPIFFEID = id.String()
	writeJSON(w, status, op)
}

func (s *Server) addOperator(w http.ResponseWriter, r *http.Request) {
	var req OperatorRequest
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	cmd := &fsm.OperatorAdd{Name: req.Name, Roles: req.Roles, Now: s.now()}
	if err := s.act(r, "operator add", map[string]string{"name": req.Name, "roles": strings.Join(req.Roles, ",")}, cmd); err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, "operator add", "name", req.Name, "roles", req.Roles)
	s.respondOperator(w, r, http.StatusCreated, req.Name)
}

func (s *Server) setOperatorStatus(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req OperatorStatusRequest
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if name == fsm.BootstrapOperator {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("operator %q is every hub node's own credential; protect data_dir/operator instead", name))
		return
	}
	if err := s.act(r, "operator status", map[string]string{"name": name, "status": req.Status},
		&fsm.OperatorStatus{Name: name, Status: req.Status, Now: s.now()}); err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, "operator status", "name", name, "status", req.Status)
	s.respondOperator(w, r, http.StatusOK, name)
}

func (s *Server) createOperatorToken(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req OperatorTokenRequest
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
	exp := now.Add(ttl)
	// The token itself is never logged; its expiry is.
	err := s.act(r, "operator join-token", map[string]string{"name": name, "expires_at": exp.UTC().Format(time.RFC3339)},
		&fsm.OperatorTokenCreate{Hash: tok.Hash(), Name: name, ExpiresAt: exp, Now: now})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, "operator join-token", "name", name, "expires_at", exp)
	writeJSON(w, http.StatusCreated, hubapi.TokenResponse{Token: tok.String(), ExpiresAt: exp.UTC()})
}

// enrollOperator exchanges an operator's join token and a CSR for a short-lived SVID, as a connector
// enrolls: every check first, then one raft entry that spends the token, records the certificate and logs
// the enrollment.
func (s *Server) enrollOperator(w http.ResponseWriter, r *http.Request) {
	var req OperatorEnrollRequest
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	tok, err := jointoken.Parse(req.Token)
	if err != nil {
		writeError(w, http.StatusBadRequest, "token: "+err.Error())
		return
	}
	id, err := fedid.Operator(s.td, req.Name)
	if err != nil {
		writeError(w, http.StatusBadRequest, "name: "+err.Error())
		return
	}
	csr, err := hubapi.ParseCSR(req.CSR)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	now := s.now()
	stored, err := s.cfg.State.OperatorToken(tok.Hash())
	if err == nil && stored == nil {
		// Made through another node a moment ago, perhaps.
		if err = s.cfg.Cluster.Sync(r.Context()); err == nil {
			stored, err = s.cfg.State.OperatorToken(tok.Hash())
		}
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if res := fsm.CheckOperatorToken(stored, req.Name, now); res.Code != fsm.OK {
		s.log.Warn("operator enrollment refused", "name", req.Name, "reason", res.Message, "remote", r.RemoteAddr)
		writeError(w, http.StatusForbidden, res.Message)
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
	if err := s.cfg.Cluster.Apply(&fsm.OperatorEnroll{TokenHash: tok.Hash(), Name: req.Name, Cert: certRecord(cert, id.String(), "operator", now)}); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("operator enrolled", "spiffe_id", id.String(), "not_after", cert.NotAfter)
	writeJSON(w, http.StatusOK, s.svidResponse(id.String(), cert))
}

// renewOperator issues a fresh SVID to an active, registered operator for its own ID.
func (s *Server) renewOperator(w http.ResponseWriter, r *http.Request) {
	p := peer(r)
	var req hubapi.RenewRequest
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	csr, err := hubapi.ParseCSR(req.CSR)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if p.Name == fsm.BootstrapOperator {
		writeError(w, http.StatusForbidden, "the bootstrap operator credential is renewed by its hub node, not through the API")
		return
	}
	if _, err := s.operatorRoles(p.Name); err != nil {
		s.fail(w, r, err)
		return
	}
	id, _ := fedid.Operator(s.td, p.Name)
	cert, err := s.cfg.CA.SignCSR(csr, id, s.cfg.SVIDTTL)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	// Checked again on apply: a disable that commits first wins.
	if err := s.cfg.Cluster.Apply(&fsm.OperatorRenew{Name: p.Name, Cert: certRecord(cert, id.String(), "operator-renew", s.now())}); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.svidResponse(id.String(), cert))
}
