package api

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/mydatafed/mydata/hub/internal/ca"
	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/pemfile"
	"github.com/mydatafed/mydata/pkg/seal"
)

// enroll exchanges a join token and a CSR for an SVID. Every check runs before the one state change, which
// consumes the token and records the certificate atomically; a refused request changes nothing.
func (s *Server) enroll(w http.ResponseWriter, r *http.Request) {
	refuse := func(status int, outcome, msg string) {
		s.metrics.enrollments.WithLabelValues(outcome).Inc()
		s.log.Warn("enrollment refused", "outcome", outcome, "reason", msg, "remote", r.RemoteAddr)
		writeError(w, status, msg)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, hubapi.MaxBody+1))
	if err != nil {
		refuse(http.StatusBadRequest, "invalid_request", "read body: "+err.Error())
		return
	}
	req, err := hubapi.ParseEnroll(body)
	if err != nil {
		refuse(http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	now := s.now()
	tok, err := s.cfg.State.Token(req.Token.Hash())
	if err != nil {
		s.metrics.enrollments.WithLabelValues("internal").Inc()
		s.fail(w, r, err)
		return
	}
	if res := fsm.CheckToken(tok, now); res.Code != fsm.OK {
		outcome := "invalid_token"
		if tok != nil {
			outcome = "expired_token"
		}
		refuse(http.StatusForbidden, outcome, res.Message)
		return
	}
	if tok.Org != req.Org || tok.Connector != req.Connector {
		refuse(http.StatusForbidden, "wrong_connector", fmt.Sprintf("join token was issued for connector %s/%s, not %s/%s", tok.Org, tok.Connector, req.Org, req.Connector))
		return
	}
	conn, err := s.cfg.State.Connector(req.Org, req.Connector)
	if err != nil {
		s.metrics.enrollments.WithLabelValues("internal").Inc()
		s.fail(w, r, err)
		return
	}
	if conn == nil || conn.Status != hubapi.StatusActive {
		status := "unknown"
		if conn != nil {
			status = conn.Status
		}
		refuse(http.StatusForbidden, "connector_not_active", fmt.Sprintf("connector %s/%s is %s and cannot enroll", req.Org, req.Connector, status))
		return
	}
	id, err := fedid.Connector(s.td, req.Org, req.Connector)
	if err != nil {
		refuse(http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	cert, err := s.cfg.CA.SignCSR(req.CSR, id, s.cfg.SVIDTTL)
	if err != nil {
		outcome := "internal"
		if errors.Is(err, ca.ErrCSR) {
			outcome = "wrong_spiffe_id"
		}
		refuse(http.StatusBadRequest, outcome, err.Error())
		return
	}
	err = s.cfg.Cluster.Apply(&fsm.Enroll{TokenHash: tok.Hash, Cert: certRecord(cert, id.String(), "enroll", now)})
	if err != nil {
		// A concurrent enrollment may have used the token between our read and the apply.
		s.metrics.enrollments.WithLabelValues("refused").Inc()
		s.fail(w, r, err)
		return
	}
	s.metrics.enrollments.WithLabelValues("ok").Inc()
	s.log.Info("connector enrolled", "spiffe_id", id.String(), "serial", cert.SerialNumber.Text(16), "not_after", cert.NotAfter)
	writeJSON(w, http.StatusOK, s.svidResponse(id.String(), cert))
}

// renew issues a fresh SVID to an active connector for its own ID.
func (s *Server) renew(w http.ResponseWriter, r *http.Request) {
	p := peer(r)
	var req hubapi.RenewRequest
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &req); err != nil {
		s.metrics.renewals.WithLabelValues("invalid_request").Inc()
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	csr, err := hubapi.ParseCSR(req.CSR)
	if err != nil {
		s.metrics.renewals.WithLabelValues("invalid_request").Inc()
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	conn, err := s.cfg.State.Connector(p.Org, p.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if conn == nil || conn.Status != hubapi.StatusActive {
		status := "unknown"
		if conn != nil {
			status = conn.Status
		}
		s.metrics.renewals.WithLabelValues("connector_not_active").Inc()
		writeError(w, http.StatusForbidden, fmt.Sprintf("connector %s/%s is %s and cannot renew its SVID", p.Org, p.Name, status))
		return
	}
	id, _ := fedid.Connector(s.td, p.Org, p.Name)
	cert, err := s.cfg.CA.SignCSR(csr, id, s.cfg.SVIDTTL)
	if err != nil {
		s.metrics.renewals.WithLabelValues("wrong_spiffe_id").Inc()
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	// The status is checked again where it is decided, on apply: a suspension committed meanwhile wins.
	if err := s.cfg.Cluster.Apply(&fsm.Renew{Org: p.Org, Name: p.Name, Cert: certRecord(cert, id.String(), "renew", s.now())}); err != nil {
		s.metrics.renewals.WithLabelValues("refused").Inc()
		s.fail(w, r, err)
		return
	}
	s.metrics.renewals.WithLabelValues("ok").Inc()
	s.log.Info("SVID renewed", "spiffe_id", id.String(), "not_after", cert.NotAfter)
	writeJSON(w, http.StatusOK, s.svidResponse(id.String(), cert))
}

func certRecord(cert *x509.Certificate, id, kind string, now time.Time) fsm.CertRecord {
	return fsm.CertRecord{Serial: cert.SerialNumber.Text(16), SPIFFEID: id, Kind: kind, NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, Now: now}
}

func (s *Server) svidResponse(id string, cert *x509.Certificate) hubapi.SVIDResponse {
	return hubapi.SVIDResponse{
		SPIFFEID:    id,
		Chain:       [][]byte{cert.Raw},
		Bundle:      [][]byte{s.cfg.CA.Root().Raw},
		TrustDomain: s.td.Name(),
	}
}

func (s *Server) bundle(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, _ = w.Write(pemfile.EncodeCertificates([]*x509.Certificate{s.cfg.CA.Root()}))
}

func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, hubapi.Health{Node: s.cfg.NodeID, RaftState: s.cfg.Cluster.State().String(), Leader: s.cfg.Cluster.Leader()})
}

// publishKey records the caller's HPKE public key, to which the hub seals subjects in its tickets.
func (s *Server) publishKey(w http.ResponseWriter, r *http.Request) {
	p := peer(r)
	var req hubapi.KeyRequest
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if _, err := seal.ParsePublicKey(req.KEM, req.PublicKey); err != nil {
		writeError(w, http.StatusBadRequest, "public_key: "+err.Error())
		return
	}
	if err := s.cfg.Cluster.Apply(&fsm.ConnectorKey{Org: p.Org, Name: p.Name, KEM: req.KEM, Key: req.PublicKey, Now: s.now()}); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
