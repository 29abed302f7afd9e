package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/mydatafed/mydata/hub/internal/cluster"
	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/pkg/hubapi"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, hubapi.Error{Message: msg})
}

// fsmStatus maps refused commands to HTTP, in one place.
var fsmStatus = map[fsm.Code]int{
	fsm.Invalid:   http.StatusBadRequest,
	fsm.NotFound:  http.StatusNotFound,
	fsm.Conflict:  http.StatusConflict,
	fsm.Gone:      http.StatusGone,
	fsm.Forbidden: http.StatusForbidden,
}

// fail answers an error from the state or the cluster: a refused command with its own message, anything
// else as an internal error whose detail goes to the log only.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var fe *fsm.Error
	switch {
	case errors.As(err, &fe):
		writeError(w, fsmStatus[fe.Code], fe.Message)
	case errors.Is(err, cluster.ErrNoLeader), errors.Is(err, cluster.ErrNotLeader):
		// After the hold timeout: an election that lasts, or this node is cut off from the majority.
		w.Header().Set("Retry-After", "2")
		writeError(w, http.StatusServiceUnavailable, err.Error()+"; retry, or try another hub node")
	case errors.Is(err, cluster.ErrRefused):
		s.log.Error("the leader refuses this node: it was removed from the cluster", "err", err)
		writeError(w, http.StatusServiceUnavailable, "this hub node was removed from the cluster; use another")
	case errors.Is(err, cluster.ErrUnknownOutcome):
		// Not 503: a client that retried elsewhere would be refused a single-use write it may have made.
		writeError(w, http.StatusInternalServerError, err.Error())
	default:
		s.log.Error("request failed", "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
	}
}
