package api

import (
	"net/http"
	"time"

	"github.com/mydatafed/mydata/hub/internal/oplog"
)

// Paths of the operator log.
const (
	PathAudit       = "/v1/admin/audit"
	PathAuditVerify = "/v1/admin/audit/verify"
)

// AuditVerifyResponse is a node's verification of its copy of the operator log. Every node holds the same
// log, so the heads of two nodes must agree; one that differs was changed there.
type AuditVerifyResponse struct {
	Node string `json:"node"`
	oplog.Report
}

// exportAudit answers the operator log entries at or after ?since (RFC 3339; all if absent). The export is
// itself an operator action, and is logged before the entries are read, so it appears in its own answer.
func (s *Server) exportAudit(w http.ResponseWriter, r *http.Request) {
	var since time.Time
	if v := r.URL.Query().Get("since"); v != "" {
		var err error
		if since, err = time.Parse(time.RFC3339, v); err != nil {
			writeError(w, http.StatusBadRequest, "since: want an RFC 3339 time such as 2026-01-02T15:04:05+08:00")
			return
		}
	}
	if err := s.act(r, "audit export", map[string]string{"since": since.UTC().Format(time.RFC3339)}, nil); err != nil {
		s.fail(w, r, err)
		return
	}
	entries, err := s.cfg.State.OperatorLog(since)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, entries)
}

func (s *Server) verifyAudit(w http.ResponseWriter, r *http.Request) {
	rep, err := s.cfg.State.VerifyOperatorLog()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !rep.OK {
		s.log.Error("the operator log does not verify", "entry", rep.BadSeq, "problem", rep.Problem)
	}
	writeJSON(w, http.StatusOK, AuditVerifyResponse{Node: s.cfg.NodeID, Report: rep})
}
