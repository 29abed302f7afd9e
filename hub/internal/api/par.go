package api

import (
	"net/http"

	"github.com/mydatafed/mydata/pkg/hubapi"
)

// par takes a pushed authorization request from an SP connector (RFC 9126): the mutual TLS authenticates
// the client, the portal checks the request, and the answer is 201 with the request_uri, or an OAuth error.
func (s *Server) par(w http.ResponseWriter, r *http.Request) {
	var req hubapi.PARRequest
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &req); err != nil {
		s.metrics.pushes.WithLabelValues("invalid_request").Inc()
		writeJSON(w, http.StatusBadRequest, hubapi.Error{Message: "invalid_request", Description: err.Error()})
		return
	}
	if s.cfg.PushRequest == nil {
		writeJSON(w, http.StatusNotFound, hubapi.Error{Message: "invalid_request", Description: "this hub takes no pushed requests"})
		return
	}
	p := peer(r)
	resp, perr := s.cfg.PushRequest(r.Context(), p.Org, p.Name, req)
	if perr != nil {
		s.metrics.pushes.WithLabelValues(perr.Message).Inc()
		writeJSON(w, perr.Status, perr)
		return
	}
	s.metrics.pushes.WithLabelValues("ok").Inc()
	writeJSON(w, http.StatusCreated, resp)
}
