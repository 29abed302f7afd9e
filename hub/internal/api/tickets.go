package api

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/ticket"
)

// claimable checks a ticket a DP connector claims or releases: it verifies, names several connectors (a
// ticket for one is that connector's alone to keep single use), and names the caller.
func (s *Server) claimable(r *http.Request, token string) (*ticket.Claims, string, int, string) {
	c, err := ticket.Verify(token, s.cfg.State, s.now())
	if err != nil {
		return nil, "", http.StatusBadRequest, "ticket: " + err.Error()
	}
	p := peer(r)
	self, err := fedid.Connector(s.td, p.Org, p.Name)
	if err != nil {
		return nil, "", http.StatusForbidden, err.Error()
	}
	if len(c.Alternates) == 0 {
		return nil, "", http.StatusBadRequest, "ticket: it names one connector, which keeps its single use itself"
	}
	if _, ok := c.ForDP(self.String()); !ok {
		return nil, "", http.StatusForbidden, fmt.Sprintf("ticket %s does not name %s", c.ID, self)
	}
	return c, self.String(), 0, ""
}

// claimTicket answers POST /v1/tickets/claim: the first of a ticket's connectors to claim it serves it.
func (s *Server) claimTicket(w http.ResponseWriter, r *http.Request) {
	var req hubapi.TicketClaimRequest
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	c, dp, status, msg := s.claimable(r, req.Ticket)
	if c == nil {
		s.metrics.ticketClaims.WithLabelValues("refused").Inc()
		writeError(w, status, msg)
		return
	}
	// The claim lives as long as the ticket may still be presented.
	expires := time.Unix(c.ExpiresAt, 0).Add(ticket.Skew)
	if err := s.cfg.Cluster.Apply(&fsm.TicketClaim{TicketID: c.ID, DP: dp, Expires: expires, Now: s.now()}); err != nil {
		var fe *fsm.Error
		if errors.As(err, &fe) {
			s.metrics.ticketClaims.WithLabelValues("taken").Inc()
		}
		s.fail(w, r, err)
		return
	}
	s.metrics.ticketClaims.WithLabelValues("claimed").Inc()
	w.WriteHeader(http.StatusNoContent)
}

// releaseTicket answers POST /v1/tickets/release.
func (s *Server) releaseTicket(w http.ResponseWriter, r *http.Request) {
	var req hubapi.TicketReleaseRequest
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	c, dp, status, msg := s.claimable(r, req.Ticket)
	if c == nil {
		writeError(w, status, msg)
		return
	}
	if err := s.cfg.Cluster.Apply(&fsm.TicketRelease{TicketID: c.ID, DP: dp, Spent: req.Spent, Now: s.now()}); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
