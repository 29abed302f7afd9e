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

// grantError answers like RFC 6749's token endpoint (section 5.2): an error code and why.
func grantError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, hubapi.Error{Message: code, Description: msg})
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
	recipient, err := s.keys.Parse(req.RecipientKEM, req.RecipientKey)
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
	s.rememberParties(c)
	resp := hubapi.RedeemResponse{ConsentID: c.ID, Service: svc.ID, AAL: c.AAL, LoginMethod: c.LoginMethod, Subject: c.Subject}
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
	dpKey, err := s.keys.Parse(dp.HPKEKEM, dp.HPKEKey)
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

// receipts records a connector's reports of transfers, a batch at a time. Only the two parties of a
// ticket's consent may report it: the service's SP connector and the dataset's DP connector. Each receipt
// is checked on its own and answered on its own; the accepted ones go to raft as one entry.
func (s *Server) receipts(w http.ResponseWriter, r *http.Request) {
	p := peer(r)
	var req hubapi.ReceiptBatch
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if len(req.Receipts) == 0 || len(req.Receipts) > hubapi.MaxReceiptBatch {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("receipts: between 1 and %d receipts per request, not %d", hubapi.MaxReceiptBatch, len(req.Receipts)))
		return
	}
	reporter, _ := fedid.Connector(s.td, p.Org, p.Name)
	res := hubapi.ReceiptBatchResult{Results: make([]hubapi.ReceiptResult, len(req.Receipts))}
	var accepted []fsm.Receipt
	for i, rr := range req.Receipts {
		rec := fsm.Receipt{TicketID: rr.TicketID, Role: rr.Role, ConsentID: rr.ConsentID, Dataset: rr.Dataset, Reporter: reporter.String(),
			Counterpart: rr.Counterpart, Outcome: rr.Outcome, Bytes: rr.Bytes, At: rr.At, RecordedAt: s.now()}
		status, msg, err := s.checkReceipt(p, rec)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		res.Results[i] = hubapi.ReceiptResult{Status: status, Error: msg}
		if status == http.StatusNoContent {
			accepted = append(accepted, rec)
		}
	}
	if len(accepted) > 0 {
		if err := s.cfg.Cluster.Apply(&fsm.ReceiptsAdd{Receipts: accepted}); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	for _, rec := range accepted {
		s.metrics.receipts.WithLabelValues(rec.Role).Inc()
	}
	writeJSON(w, http.StatusOK, res)
}

// checkReceipt says whether the reporting connector p may record rec: the HTTP status of the answer
// (204 when it may) and why not.
func (s *Server) checkReceipt(p fedid.Parsed, rec fsm.Receipt) (int, string, error) {
	if err := fsm.CheckReceipt(rec); err != nil {
		return http.StatusBadRequest, err.Error(), nil
	}
	c, found, err := s.partiesOf(rec.ConsentID)
	if err != nil {
		return 0, "", err
	}
	if !found || !slices.Contains(c.datasets, rec.Dataset) {
		return http.StatusNotFound, "consent_id and dataset: no such consent for this dataset", nil
	}
	var org, name string
	if rec.Role == hubapi.RoleReceiver {
		svc, err := s.cfg.State.Service(c.service)
		if err != nil || svc == nil {
			return 0, "", fmt.Errorf("service %s: %v", c.service, err)
		}
		org, name = svc.SPOrg, svc.SPConnector
	} else {
		d, err := s.cfg.State.Dataset(rec.Dataset)
		if err != nil || d == nil {
			return 0, "", fmt.Errorf("dataset %s: %v", rec.Dataset, err)
		}
		org, name = d.DPOrg, d.DPConnector
	}
	if p.Org != org || p.Name != name {
		return http.StatusForbidden, fmt.Sprintf("only %s/%s reports as %s for this consent and dataset", org, name, rec.Role), nil
	}
	return http.StatusNoContent, "", nil
}
