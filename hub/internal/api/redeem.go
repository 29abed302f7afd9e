package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/mydatafed/mydata/hub/internal/consent"
	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/hubapi"
)

// redeem trades an authorization code for tickets (consent.Service.Redeem), answering like RFC 6749's
// token endpoint (section 5.2) when it refuses.
func (s *Server) redeem(w http.ResponseWriter, r *http.Request) {
	var req hubapi.RedeemRequest
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &req); err != nil {
		s.metrics.redeems.WithLabelValues("invalid_request").Inc()
		writeJSON(w, http.StatusBadRequest, hubapi.Error{Message: "invalid_request", Description: err.Error()})
		return
	}
	resp, err := s.cfg.Consent.Redeem(r.Context(), peer(r), req, s.now())
	var ge *consent.GrantError
	switch {
	case errors.As(err, &ge):
		outcome := ge.Code
		if ge.Code == "invalid_client" {
			outcome = "wrong_client"
		}
		s.metrics.redeems.WithLabelValues(outcome).Inc()
		writeJSON(w, ge.Status, hubapi.Error{Message: ge.Code, Description: ge.Description})
		return
	case err != nil:
		s.fail(w, r, err)
		return
	}
	s.metrics.redeems.WithLabelValues("ok").Inc()
	s.log.Info("consent redeemed", "consent", resp.ConsentID, "service", resp.Service, "tickets", len(resp.Tickets), "unavailable", len(resp.Unavailable))
	writeJSON(w, http.StatusOK, resp)
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
		status, msg, err := s.checkReceipt(r.Context(), p, rec)
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
func (s *Server) checkReceipt(ctx context.Context, p fedid.Parsed, rec fsm.Receipt) (int, string, error) {
	if err := fsm.CheckReceipt(rec); err != nil {
		return http.StatusBadRequest, err.Error(), nil
	}
	c, found, err := s.cfg.Consent.PartiesOf(ctx, rec.ConsentID)
	if err != nil {
		return 0, "", err
	}
	if !found || !slices.Contains(c.Datasets, rec.Dataset) {
		return http.StatusNotFound, "consent_id and dataset: no such consent for this dataset", nil
	}
	if rec.Role == hubapi.RoleReceiver {
		svc, err := s.cfg.State.Service(c.Service)
		if err != nil || svc == nil {
			return 0, "", fmt.Errorf("service %s: %v", c.Service, err)
		}
		if p.Org != svc.SPOrg || p.Name != svc.SPConnector {
			return http.StatusForbidden, fmt.Sprintf("only %s/%s reports as %s for this consent and dataset", svc.SPOrg, svc.SPConnector, rec.Role), nil
		}
		return http.StatusNoContent, "", nil
	}
	d, err := s.cfg.State.Dataset(rec.Dataset)
	if err != nil || d == nil {
		return 0, "", fmt.Errorf("dataset %s: %v", rec.Dataset, err)
	}
	// Any of the dataset's connectors may have served it (connector HA), and so may a DP connector of its
	// organisation that no longer serves it: tickets issued before `dataset connectors` moved the dataset
	// name the connectors of then, and their receipts come after.
	if p.Org != d.DPOrg {
		return http.StatusForbidden, fmt.Sprintf("only %s/%s reports as %s for this consent and dataset", d.DPOrg, strings.Join(d.Connectors(), ", "), rec.Role), nil
	}
	if !slices.Contains(d.Connectors(), p.Name) {
		c, err := s.cfg.State.Connector(p.Org, p.Name)
		if err != nil {
			return 0, "", err
		}
		if c == nil || !slices.Contains(c.Roles, hubapi.RoleDP) {
			return http.StatusForbidden, fmt.Sprintf("only %s/%s, or another DP connector of %s, reports as %s for this consent and dataset", d.DPOrg, strings.Join(d.Connectors(), ", "), d.DPOrg, rec.Role), nil
		}
	}
	return http.StatusNoContent, "", nil
}
