package api

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/mydatafed/mydata/hub/internal/consent"
	"github.com/mydatafed/mydata/pkg/hubapi"
)

// counterRedeem trades a counter code an SP connector's counter staff entered for tickets
// (consent.Service.RedeemCounter), answering hubapi's Counter* errors when it refuses.
func (s *Server) counterRedeem(w http.ResponseWriter, r *http.Request) {
	var req hubapi.CounterRedeemRequest
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, hubapi.Error{Message: "invalid_request", Description: err.Error()})
		return
	}
	p := peer(r)
	resp, err := s.cfg.Consent.RedeemCounter(r.Context(), p, req, s.now())
	var ce *consent.CounterError
	switch {
	case errors.As(err, &ce):
		if ce.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(ce.RetryAfter.Seconds())))
		}
		s.log.Info("counter code refused", "connector", p.Org+"/"+p.Name, "error", ce.Code)
		writeJSON(w, ce.Status, hubapi.Error{Message: ce.Code, Description: ce.Description})
		return
	case err != nil:
		s.fail(w, r, err)
		return
	}
	s.log.Info("counter code redeemed", "consent", resp.ConsentID, "service", resp.Service, "connector", p.Org+"/"+p.Name,
		"tickets", len(resp.Tickets), "unavailable", len(resp.Unavailable), "agent", resp.Agent != nil)
	writeJSON(w, http.StatusOK, resp)
}
