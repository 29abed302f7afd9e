package api

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/pkg/hubapi"
)

func (s *Server) listDatasets(w http.ResponseWriter, r *http.Request) {
	ds, err := s.cfg.State.Datasets()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ds)
}

func (s *Server) addDataset(w http.ResponseWriter, r *http.Request) {
	var d hubapi.Dataset
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &d); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := d.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := s.act(r, "dataset add", map[string]string{"id": d.ID, "dp": d.DPOrg + "/" + strings.Join(d.Connectors(), ",")}, &fsm.DatasetAdd{Dataset: fsm.DatasetFrom(d), Now: s.now()}); err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, "dataset add", "dataset", d.ID)
	s.respondDataset(w, r, http.StatusCreated, d.ID)
}

func (s *Server) respondDataset(w http.ResponseWriter, r *http.Request, status int, id string) {
	d, err := s.cfg.State.Dataset(id)
	if err != nil || d == nil {
		s.fail(w, r, fmt.Errorf("read back dataset: %v", err))
		return
	}
	writeJSON(w, status, d)
}

func (s *Server) setDatasetStatus(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req hubapi.ConnectorStatusRequest
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := s.act(r, "dataset status", map[string]string{"id": id, "status": req.Status}, &fsm.DatasetStatus{ID: id, Status: req.Status, Now: s.now()}); err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, "dataset status", "dataset", id, "status", req.Status)
	s.respondDataset(w, r, http.StatusOK, id)
}

// setDatasetConnectors sets the connectors that serve a dataset (connector HA): an agency adds a second
// connector, or moves the dataset to new ones. Tickets issued from then on name them.
func (s *Server) setDatasetConnectors(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req hubapi.DatasetConnectorsRequest
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	cmd := &fsm.DatasetConnectors{ID: id, Connectors: req.Connectors, Now: s.now()}
	if err := cmd.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := s.act(r, "dataset connectors", map[string]string{"id": id, "dp_connectors": strings.Join(req.Connectors, ",")}, cmd); err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, "dataset connectors", "dataset", id, "dp_connectors", strings.Join(req.Connectors, ","))
	s.respondDataset(w, r, http.StatusOK, id)
}

func (s *Server) listServices(w http.ResponseWriter, r *http.Request) {
	ss, err := s.cfg.State.Services()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ss)
}

func (s *Server) addService(w http.ResponseWriter, r *http.Request) {
	var svc hubapi.Service
	if err := hubapi.Decode(r.Body, hubapi.MaxBody, &svc); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := svc.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := s.act(r, "service add", map[string]string{"id": svc.ID, "sp": svc.SPOrg + "/" + svc.SPConnector, "datasets": strings.Join(svc.Datasets, ",")}, &fsm.ServiceAdd{Service: fsm.ServiceFrom(svc), Now: s.now()}); err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, "service add", "service", svc.ID)
	saved, err := s.cfg.State.Service(svc.ID)
	if err != nil || saved == nil {
		s.fail(w, r, fmt.Errorf("read back service: %v", err))
		return
	}
	writeJSON(w, http.StatusCreated, saved)
}
