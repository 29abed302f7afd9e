package api

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"time"

	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/hub/internal/portal"
	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/seal"
	"github.com/mydatafed/mydata/pkg/ticket"
)

// pkceVerifier is RFC 7636's code_verifier: 43 to 128 unreserved characters.
var pkceVerifier = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)

// grantError answers like RFC 6749's token endpoint: 400 with invalid_grant and why.
func grantError(w http.ResponseWriter, status int, code, msg string) {
	writeError(w, status, code+": "+msg)
}

// redeem trades an authorization code for tickets. The caller must be the service's own SP connector; the
// consent is spent through raft before any ticket is made, so a code yields tickets once.
func (s *Server) redeem(w http.ResponseWriter, r *http.Request) {
	p := peer(r)
	var req hubapi.RedeemRequest
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &req); err != nil {
		grantError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	if !pkceVerifier.MatchString(req.CodeVerifier) {
		grantError(w, http.StatusBadRequest, "invalid_request", "code_verifier must be 43 to 128 unreserved characters")
		return
	}
	recipient, err := seal.ParsePublicKey(req.RecipientKEM, req.RecipientKey)
	if err != nil || req.RecipientKEM != seal.KEMHybrid {
		grantError(w, http.StatusBadRequest, "invalid_request", "recipient_key must be an ML-KEM-768+X25519 HPKE public key")
		return
	}
	now := s.now()
	c, err := s.cfg.State.ConsentByCode(portal.CodeHash(req.Code))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if c == nil {
		s.metrics.redeems.WithLabelValues("invalid_grant").Inc()
		grantError(w, http.StatusBadRequest, "invalid_grant", "code unknown")
		return
	}
	svc, err := s.cfg.State.Service(c.Service)
	if err != nil || svc == nil {
		s.fail(w, r, fmt.Errorf("service of consent %s: %v", c.ID, err))
		return
	}
	if p.Org != svc.SPOrg || p.Name != svc.SPConnector || (req.ClientID != "" && req.ClientID != svc.ID) {
		s.metrics.redeems.WithLabelValues("wrong_client").Inc()
		grantError(w, http.StatusForbidden, "invalid_client", fmt.Sprintf("the code was issued to service %s, whose connector is %s/%s", svc.ID, svc.SPOrg, svc.SPConnector))
		return
	}
	if sp, err := s.cfg.State.Connector(p.Org, p.Name); err != nil {
		s.fail(w, r, err)
		return
	} else if sp == nil || sp.Status != hubapi.StatusActive {
		s.metrics.redeems.WithLabelValues("wrong_client").Inc()
		grantError(w, http.StatusForbidden, "invalid_client", fmt.Sprintf("connector %s/%s is not active", p.Org, p.Name))
		return
	}
	if req.RedirectURI != c.RedirectURI {
		s.metrics.redeems.WithLabelValues("invalid_grant").Inc()
		grantError(w, http.StatusBadRequest, "invalid_grant", "redirect_uri differs from the authorization request's")
		return
	}
	sum := sha256.Sum256([]byte(req.CodeVerifier))
	if base64.RawURLEncoding.EncodeToString(sum[:]) != c.CodeChallenge {
		s.metrics.redeems.WithLabelValues("invalid_grant").Inc()
		grantError(w, http.StatusBadRequest, "invalid_grant", "code_verifier does not match the code_challenge (PKCE)")
		return
	}
	if err := s.cfg.Cluster.Apply(&fsm.ConsentUse{ID: c.ID, Now: now}); err != nil {
		var fe *fsm.Error
		if errors.As(err, &fe) {
			s.metrics.redeems.WithLabelValues("invalid_grant").Inc()
			grantError(w, http.StatusBadRequest, "invalid_grant", fe.Message)
			return
		}
		s.fail(w, r, err)
		return
	}
	sealedSubject, err := seal.Seal(recipient, hubapi.SubjectInfo(c.ID), []byte(c.Subject))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	resp := hubapi.RedeemResponse{ConsentID: c.ID, Service: svc.ID, AAL: c.AAL, LoginMethod: c.LoginMethod, SubjectSealed: sealedSubject}
	for _, id := range c.Datasets {
		t, unavailable, err := s.ticketFor(c, id, p, req, recipient.KEM().ID(), now)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if unavailable != nil {
			resp.Unavailable = append(resp.Unavailable, *unavailable)
			continue
		}
		resp.Tickets = append(resp.Tickets, *t)
	}
	s.metrics.redeems.WithLabelValues("ok").Inc()
	s.log.Info("consent redeemed", "consent", c.ID, "service", svc.ID, "tickets", len(resp.Tickets), "unavailable", len(resp.Unavailable))
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) ticketFor(c *fsm.Consent, datasetID string, p fedid.Parsed, req hubapi.RedeemRequest, kem uint16, now time.Time) (*hubapi.RedeemedTicket, *hubapi.UnavailableDataset, error) {
	unavailable := func(status, reason string) (*hubapi.RedeemedTicket, *hubapi.UnavailableDataset, error) {
		return nil, &hubapi.UnavailableDataset{Dataset: datasetID, Status: status, Reason: reason}, nil
	}
	d, err := s.cfg.State.Dataset(datasetID)
	if err != nil {
		return nil, nil, err
	}
	if d == nil {
		return unavailable("unavailable", "the dataset no longer exists")
	}
	if d.Status == hubapi.DatasetMaintenance {
		return unavailable("unavailable", "the dataset is under maintenance")
	}
	dp, err := s.cfg.State.Connector(d.DPOrg, d.DPConnector)
	if err != nil {
		return nil, nil, err
	}
	if dp == nil || dp.Status != hubapi.StatusActive {
		return unavailable("unavailable", "the data provider's connector is not active")
	}
	if len(dp.HPKEKey) == 0 {
		return unavailable("unavailable", "the data provider's connector has not published its key yet")
	}
	dpKey, err := seal.ParsePublicKey(dp.HPKEKEM, dp.HPKEKey)
	if err != nil {
		return unavailable("unavailable", "the data provider's key is unusable")
	}
	dpID, _ := fedid.Connector(s.td, dp.Org, dp.Name)
	redeemer, _ := fedid.Connector(s.td, p.Org, p.Name)
	tid := randomTicketID()
	sealed, err := seal.Seal(dpKey, ticket.SubjectInfo(tid), []byte(c.Subject))
	if err != nil {
		return nil, nil, err
	}
	life := ticket.MaxLife
	if d.Async {
		life = ticket.MaxAsyncLife
	}
	hubID, _ := fedid.Hub(s.td, s.cfg.NodeID)
	claims := &ticket.Claims{
		ID: tid, ConsentID: c.ID, Dataset: d.ID, DP: dpID.String(), Redeemer: redeemer.String(),
		SealedSubject: sealed, RecipientKEM: kem, RecipientKey: req.RecipientKey, Issuer: hubID.String(),
		IssuedAt: now.Unix(), ExpiresAt: now.Add(life).Unix(), Async: d.Async,
	}
	tok, err := s.cfg.Keys.Tickets.Sign(claims)
	if err != nil {
		return nil, nil, err
	}
	return &hubapi.RedeemedTicket{Dataset: d.ID, DP: dpID.String(), Address: dp.Address, Ticket: tok, TicketID: tid,
		ContentType: d.ContentType, Async: d.Async, ExpiresAt: time.Unix(claims.ExpiresAt, 0).UTC()}, nil, nil
}

func randomTicketID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// receipt records a connector's report of one transfer. Only the two parties of the ticket's consent may
// report: the service's SP connector and the dataset's DP connector.
func (s *Server) receipt(w http.ResponseWriter, r *http.Request) {
	p := peer(r)
	var req hubapi.ReceiptRequest
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	c, err := s.cfg.State.Consent(req.ConsentID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if c == nil || !slices.Contains(c.Datasets, req.Dataset) {
		writeError(w, http.StatusNotFound, "consent_id and dataset: no such consent for this dataset")
		return
	}
	var org, name string
	switch req.Role {
	case hubapi.RoleReceiver:
		svc, err := s.cfg.State.Service(c.Service)
		if err != nil || svc == nil {
			s.fail(w, r, fmt.Errorf("service %s: %v", c.Service, err))
			return
		}
		org, name = svc.SPOrg, svc.SPConnector
	case hubapi.RoleSender:
		d, err := s.cfg.State.Dataset(req.Dataset)
		if err != nil || d == nil {
			s.fail(w, r, fmt.Errorf("dataset %s: %v", req.Dataset, err))
			return
		}
		org, name = d.DPOrg, d.DPConnector
	default:
		writeError(w, http.StatusBadRequest, "role: must be dp or sp")
		return
	}
	if p.Org != org || p.Name != name {
		writeError(w, http.StatusForbidden, fmt.Sprintf("only %s/%s reports as %s for this consent and dataset", org, name, req.Role))
		return
	}
	reporter, _ := fedid.Connector(s.td, p.Org, p.Name)
	rec := fsm.Receipt{TicketID: req.TicketID, Role: req.Role, ConsentID: req.ConsentID, Dataset: req.Dataset, Reporter: reporter.String(),
		Counterpart: req.Counterpart, Outcome: req.Outcome, Bytes: req.Bytes, At: req.At, RecordedAt: s.now()}
	if err := s.cfg.Cluster.Apply(&fsm.ReceiptAdd{Receipt: rec}); err != nil {
		s.fail(w, r, err)
		return
	}
	s.metrics.receipts.WithLabelValues(req.Role).Inc()
	w.WriteHeader(http.StatusNoContent)
}
