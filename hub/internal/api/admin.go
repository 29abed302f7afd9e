package api

import (
	"crypto/x509"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/jointoken"
)

func (s *Server) audit(r *http.Request, op string, attrs ...any) {
	s.log.Info("admin "+op, append([]any{"operator", peer(r).Name}, attrs...)...)
}

func (s *Server) listOrgs(w http.ResponseWriter, r *http.Request) {
	orgs, err := s.cfg.State.Orgs()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, orgs)
}

func (s *Server) addOrg(w http.ResponseWriter, r *http.Request) {
	var o hubapi.Org
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &o); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	cmd := &fsm.OrgAdd{Code: o.Code, NameZh: o.NameZh, NameEn: o.NameEn, Type: o.Type, ContactEmail: o.ContactEmail, Now: s.now()}
	if err := cmd.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := s.act(r, "org add", map[string]string{"code": o.Code, "type": o.Type}, cmd); err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, "org add", "org", o.Code)
	saved, err := s.cfg.State.Org(o.Code)
	if err != nil || saved == nil {
		s.fail(w, r, fmt.Errorf("read back org: %v", err))
		return
	}
	writeJSON(w, http.StatusCreated, saved)
}

func (s *Server) listConnectors(w http.ResponseWriter, r *http.Request) {
	cs, err := s.cfg.State.Connectors()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	for i := range cs {
		id, _ := fedid.Connector(s.td, cs[i].Org, cs[i].Name)
		cs[i].SPIFFEID = id.String()
	}
	writeJSON(w, http.StatusOK, cs)
}

func (s *Server) respondConnector(w http.ResponseWriter, r *http.Request, status int, org, name string) {
	c, err := s.cfg.State.Connector(org, name)
	if err != nil || c == nil {
		s.fail(w, r, fmt.Errorf("read back connector: %v", err))
		return
	}
	id, _ := fedid.Connector(s.td, org, name)
	c.SPIFFEID = id.String()
	writeJSON(w, status, c)
}

func (s *Server) addConnector(w http.ResponseWriter, r *http.Request) {
	var c hubapi.Connector
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &c); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := c.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := s.act(r, "connector add", map[string]string{"org": c.Org, "name": c.Name, "roles": strings.Join(c.Roles, ","), "address": c.Address, "tcp_address": c.TCPAddress},
		&fsm.ConnectorAdd{Org: c.Org, Name: c.Name, Roles: c.Roles, Address: c.Address, TCPAddress: c.TCPAddress, Now: s.now()}); err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, "connector add", "org", c.Org, "connector", c.Name)
	s.respondConnector(w, r, http.StatusCreated, c.Org, c.Name)
}

func (s *Server) setConnectorStatus(w http.ResponseWriter, r *http.Request) {
	org, name := r.PathValue("org"), r.PathValue("name")
	var req hubapi.ConnectorStatusRequest
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := s.act(r, "connector status", map[string]string{"org": org, "name": name, "status": req.Status}, &fsm.ConnectorStatus{Org: org, Name: name, Status: req.Status, Now: s.now()}); err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, "connector status", "org", org, "connector", name, "status", req.Status)
	s.respondConnector(w, r, http.StatusOK, org, name)
}

// setConnectorAddress moves a connector to new QUIC and TCP addresses; the directory carries them to its
// peers within a round trip.
func (s *Server) setConnectorAddress(w http.ResponseWriter, r *http.Request) {
	org, name := r.PathValue("org"), r.PathValue("name")
	var req hubapi.ConnectorAddressRequest
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	cmd := &fsm.ConnectorAddress{Org: org, Name: name, Address: req.Address, TCPAddress: req.TCPAddress, Now: s.now()}
	if err := cmd.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	params := map[string]string{"org": org, "name": name, "address": req.Address, "tcp_address": req.TCPAddress}
	if err := s.act(r, "connector address", params, cmd); err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, "connector address", "org", org, "connector", name, "address", req.Address, "tcp_address", req.TCPAddress)
	s.respondConnector(w, r, http.StatusOK, org, name)
}

// tokenTTL is a join token's lifetime: the default, or the seconds asked for within the allowed bound. ok
// is false when it has answered.
func (s *Server) tokenTTL(w http.ResponseWriter, seconds int64) (ttl time.Duration, ok bool) {
	ttl = s.cfg.TokenDefaultTTL
	if seconds != 0 {
		ttl = time.Duration(seconds) * time.Second
	}
	if ttl <= 0 || ttl > s.cfg.TokenMaxTTL {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("ttl_seconds: must be between 1 and %d", int64(s.cfg.TokenMaxTTL/time.Second)))
		return 0, false
	}
	return ttl, true
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	var req hubapi.TokenRequest
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
	if err := s.act(r, "token create", map[string]string{"org": req.Org, "connector": req.Connector, "expires_at": exp.UTC().Format(time.RFC3339)}, &fsm.TokenCreate{Hash: tok.Hash(), Org: req.Org, Connector: req.Connector, ExpiresAt: exp, Now: now}); err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, "token create", "org", req.Org, "connector", req.Connector, "expires_at", exp)
	writeJSON(w, http.StatusCreated, hubapi.TokenResponse{Token: tok.String(), ExpiresAt: exp.UTC()})
}

func (s *Server) issueIntermediate(w http.ResponseWriter, r *http.Request) {
	var req hubapi.IntermediateRequest
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	pub, err := x509.ParsePKIXPublicKey(req.PublicKey)
	if err != nil {
		writeError(w, http.StatusBadRequest, "public_key: "+err.Error())
		return
	}
	ttl := 30 * 24 * time.Hour
	if req.TTLSeconds != 0 {
		ttl = time.Duration(req.TTLSeconds) * time.Second
	}
	if ttl < time.Hour {
		writeError(w, http.StatusBadRequest, "ttl_seconds: at least 3600")
		return
	}
	if org, err := s.cfg.State.Org(req.Org); err != nil {
		s.fail(w, r, err)
		return
	} else if org == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("org: organisation %q does not exist", req.Org))
		return
	}
	cert, err := s.cfg.CA.IssueIntermediate(pub, req.Org, ttl)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	orgURI, _ := fedid.OrgCAURI(s.td, req.Org)
	rec := certRecord(cert, orgURI.String(), "intermediate", s.now())
	if err := s.act(r, "ca intermediate", map[string]string{"org": req.Org, "serial": rec.Serial, "not_after": cert.NotAfter.UTC().Format(time.RFC3339)}, &rec); err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, "intermediate issue", "serial", rec.Serial, "not_after", cert.NotAfter)
	writeJSON(w, http.StatusCreated, hubapi.IntermediateResponse{Certificate: cert.Raw, Bundle: [][]byte{s.cfg.CA.Root().Raw}})
}

func (s *Server) listCertificates(w http.ResponseWriter, r *http.Request) {
	certs, err := s.cfg.State.Certificates(r.URL.Query().Get("spiffe_id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, certs)
}

// backup streams a backup. Errors after the first byte can only cut the stream short, which the gzip
// trailer makes visible to the client.
func (s *Server) backup(w http.ResponseWriter, r *http.Request) {
	// A backup holds the root key: it is logged before a byte of it leaves, and not taken unless logged.
	if err := s.act(r, "backup", map[string]string{"node": s.cfg.NodeID}, nil); err != nil {
		s.fail(w, r, err)
		return
	}
	cw := &countingWriter{w: w, header: func() {
		w.Header().Set("Content-Type", "application/gzip")
		w.Header().Set("Content-Disposition", `attachment; filename="mydata-hub-backup.tar.gz"`)
	}}
	if err := s.cfg.Backup(cw); err != nil {
		if cw.n == 0 {
			s.fail(w, r, err)
			return
		}
		s.log.Error("backup failed after it started", "err", err)
		// Abort the response so the client sees a broken transfer, never a short archive that looks whole.
		panic(http.ErrAbortHandler)
	}
	s.audit(r, "backup")
}

// countingWriter sets the success headers on the first write, so that a failure before it can still be
// answered with an error status.
type countingWriter struct {
	w      http.ResponseWriter
	header func()
	n      int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.n == 0 && len(p) > 0 {
		c.header()
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
