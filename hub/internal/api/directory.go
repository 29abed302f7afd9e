package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/mydatafed/mydata/pkg/directory"
	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/hubapi"
)

// directoryCache keeps the last signed directory, so that a thousand connectors polling one version cost one
// signature. It re-signs when the content changes or a quarter of the TTL has passed, which keeps the
// expiry that connectors see far away.
type directoryCache struct {
	s *Server

	mu      sync.Mutex
	version uint64
	issued  time.Time
	body    []byte
}

func (d *directoryCache) get(version uint64) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.s.now()
	if d.body != nil && d.version == version && now.Sub(d.issued) < d.s.cfg.DirectoryTTL/4 {
		return d.body, nil
	}
	conns, err := d.s.cfg.State.Connectors()
	if err != nil {
		return nil, err
	}
	for i := range conns {
		id, err := fedid.Connector(d.s.td, conns[i].Org, conns[i].Name)
		if err != nil {
			return nil, err
		}
		conns[i].SPIFFEID = id.String()
	}
	hubKeys, err := d.s.cfg.State.HubKeys()
	if err != nil {
		return nil, err
	}
	withdrawn, err := d.s.withdrawn()
	if err != nil {
		return nil, err
	}
	doc := &directory.Document{
		Withdrawn:   withdrawn,
		HubKeys:     hubKeys,
		Version:     version,
		TrustDomain: d.s.td.Name(),
		IssuedAt:    now.UTC(),
		ExpiresAt:   now.Add(d.s.cfg.DirectoryTTL).UTC(),
		Bundle:      [][]byte{d.s.cfg.CA.Root().Raw},
		Connectors:  conns,
	}
	svid, err := d.s.cfg.SVID.GetX509SVID()
	if err != nil {
		return nil, err
	}
	signed, err := directory.Sign(doc, svid)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(signed)
	if err != nil {
		return nil, err
	}
	d.version, d.issued, d.body = version, now, body
	return body, nil
}

// directory answers GET /v1/directory?after=V&wait=D. With after set to the version the caller holds, it
// waits up to D for a newer one and answers 304 if none came: the long-poll that makes a revocation reach
// every connector in about the time of one round trip.
func (s *Server) directory(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var after uint64
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("after: %q is not a version number", v))
			return
		}
		after = n
	}
	var wait time.Duration
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("wait: %q is not a duration such as 25s", v))
			return
		}
		wait = min(d, s.cfg.MaxLongPoll)
	}
	if p := peer(r); p.Kind == fedid.KindConnector {
		c, err := s.cfg.State.Connector(p.Org, p.Name)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if c == nil || c.Status == hubapi.StatusRevoked {
			writeError(w, http.StatusForbidden, fmt.Sprintf("connector %s/%s is revoked or unknown", p.Org, p.Name))
			return
		}
		// Heard from now, and as long as its long-poll stays open.
		id := p.Org + "/" + p.Name
		s.live.begin(id, s.now())
		defer func() { s.live.end(id, s.now()) }()
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		changed := s.cfg.State.Changed()
		version, err := s.cfg.State.DirectoryVersion()
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if after == 0 || version > after {
			body, err := s.dir.get(version)
			if err != nil {
				s.fail(w, r, err)
				return
			}
			s.metrics.dirServed.WithLabelValues("full").Inc()
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			_, _ = w.Write(body)
			return
		}
		select {
		case <-changed:
			continue
		case <-deadline.C:
		case <-r.Context().Done():
		}
		s.metrics.dirServed.WithLabelValues("not_modified").Inc()
		w.WriteHeader(http.StatusNotModified)
		return
	}
}

// withdrawn lists the services and datasets suspended or terminated, for the directory.
func (s *Server) withdrawn() ([]directory.Withdrawn, error) {
	var out []directory.Withdrawn
	svcs, err := s.cfg.State.Services()
	if err != nil {
		return nil, err
	}
	for _, v := range svcs {
		if v.Status != hubapi.StatusActive {
			out = append(out, directory.Withdrawn{On: "service", ID: v.ID, Status: v.Status})
		}
	}
	ds, err := s.cfg.State.Datasets()
	if err != nil {
		return nil, err
	}
	for _, v := range ds {
		if v.Status == hubapi.StatusSuspended || v.Status == hubapi.StatusTerminated {
			out = append(out, directory.Withdrawn{On: "dataset", ID: v.ID, Status: v.Status})
		}
	}
	return out, nil
}
