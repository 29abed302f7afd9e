// Package api is the hub's HTTPS API: enrollment with join tokens, SVID renewal and the signed directory for
// connectors, and the admin endpoints for operators. Every endpoint but enrollment and the bundle requires an
// SVID of the federation's trust domain.
package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/mydatafed/mydata/hub/internal/ca"
	"github.com/mydatafed/mydata/hub/internal/cluster"
	"github.com/mydatafed/mydata/hub/internal/consent"
	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/hub/internal/keyring"
	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Config wires the API to the rest of the hub.
type Config struct {
	NodeID  string
	CA      *ca.CA
	SVID    x509svid.Source
	Cluster *cluster.Cluster
	State   *fsm.FSM
	Keyring *keyring.Keyring
	Consent *consent.Service
	// KEK is the cluster key-encryption key, handed to joining members.
	KEK             []byte
	SVIDTTL         time.Duration
	TokenDefaultTTL time.Duration
	TokenMaxTTL     time.Duration
	DirectoryTTL    time.Duration
	MaxLongPoll     time.Duration
	// Backup writes a backup of the node to w.
	Backup func(w io.Writer) error
	// PushRequest takes a pushed authorization request (RFC 9126) from an SP connector: the portal checks it
	// as its authorization endpoint would and makes the request_uri.
	PushRequest func(ctx context.Context, org, name string, req hubapi.PARRequest) (hubapi.PARResponse, *hubapi.Error)
	Log         *slog.Logger
	Registerer  prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Server serves the API.
type Server struct {
	cfg     Config
	td      spiffeid.TrustDomain
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics
	dir     *directoryCache
	srv     *http.Server
	live    liveness
}

// New makes the server.
func New(cfg Config) (*Server, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, td: cfg.CA.TrustDomain(), log: cfg.Log, now: cfg.Now, metrics: m}
	s.dir = &directoryCache{s: s}
	s.srv = &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         s.TLSConfig(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(cfg.Log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// TLSConfig serves the hub's SVID and asks for, but does not require, a client SVID: enrollment comes
// before the connector has one. A certificate that is presented must be an SVID of our trust domain, or the
// handshake fails.
func (s *Server) TLSConfig() *tls.Config {
	c := tlsconfig.TLSServerConfig(s.cfg.SVID)
	c.MinVersion = tls.VersionTLS13
	c.ClientAuth = tls.RequestClientCert
	verify := tlsconfig.VerifyPeerCertificate(s.cfg.CA.Bundle(), fedid.Authorizer(s.td, fedid.KindUnknown, nil))
	c.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return nil
		}
		return verify(raw, chains)
	}
	// Without session tickets every connection proves its certificate again, so a revocation or a new SVID
	// takes effect at once.
	c.SessionTicketsDisabled = true
	return c
}

// Handler routes the API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+hubapi.PathEnroll, s.enroll)
	mux.HandleFunc("GET "+hubapi.PathBundle, s.bundle)
	mux.HandleFunc("GET "+hubapi.PathHealth, s.health)
	mux.Handle("POST "+hubapi.PathRenew, s.require(fedid.KindConnector, s.renew))
	mux.Handle("POST "+hubapi.PathKeys, s.require(fedid.KindConnector, s.publishKey))
	mux.Handle("POST "+hubapi.PathRedeem, s.require(fedid.KindConnector, s.redeem))
	mux.Handle("POST "+hubapi.PathPAR, s.require(fedid.KindConnector, s.par))
	mux.Handle("POST "+hubapi.PathReceipts, s.require(fedid.KindConnector, s.receipts))
	mux.Handle("POST "+hubapi.PathCounterRedeem, s.require(fedid.KindConnector, s.counterRedeem))
	mux.Handle("POST "+hubapi.PathTicketClaim, s.require(fedid.KindConnector, s.claimTicket))
	mux.Handle("POST "+hubapi.PathTicketRelease, s.require(fedid.KindConnector, s.releaseTicket))
	mux.Handle("GET "+hubapi.PathDirectory, s.require(anyKind, s.directory))
	mux.HandleFunc("GET "+PathOpenAPI, s.openAPI)
	for _, rt := range s.adminRoutes() {
		mux.Handle(rt.method+" "+rt.path, s.allow(rt.access, rt.handler))
	}
	mux.HandleFunc("POST "+PathOperatorEnroll, s.enrollOperator)
	mux.Handle("POST "+PathOperatorRenew, s.require(fedid.KindOperator, s.renewOperator))
	mux.HandleFunc("POST "+PathClusterJoin, s.join)
	mux.Handle("GET "+PathClusterSecrets, s.require(fedid.KindHub, s.secrets))
	mux.Handle("POST "+PathClusterMembers, s.require(fedid.KindHub, s.addMember))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

// route is an admin endpoint and the roles that may call it (any one of them).
type route struct {
	method, path string
	access       []string
	handler      http.HandlerFunc
}

// adminRoutes are the operators' endpoints. Every one is authorised by role: writes and secrets need the
// federation administrator; reads of the registry, certificates, the cluster and the operator log also let
// the auditor through; the catalogue is open to every operator.
func (s *Server) adminRoutes() []route {
	return []route{
		{"GET", hubapi.PathOrgs, accessCatalogue, s.listOrgs},
		{"POST", hubapi.PathOrgs, accessAdmin, s.addOrg},
		{"GET", hubapi.PathConnectors, accessRead, s.listConnectors},
		{"POST", hubapi.PathConnectors, accessAdmin, s.addConnector},
		{"POST", hubapi.PathConnectors + "/{org}/{name}/status", accessAdmin, s.setConnectorStatus},
		{"POST", hubapi.PathConnectors + "/{org}/{name}/address", accessAdmin, s.setConnectorAddress},
		{"POST", hubapi.PathTokens, accessAdmin, s.createToken},
		{"POST", hubapi.PathIntermediates, accessAdmin, s.issueIntermediate},
		{"GET", hubapi.PathCertificates, accessRead, s.listCertificates},
		{"GET", hubapi.PathBackup, accessAdmin, s.backup},
		{"GET", hubapi.PathDatasets, accessCatalogue, s.listDatasets},
		{"POST", hubapi.PathDatasets, accessAdmin, s.addDataset},
		{"POST", hubapi.PathDatasets + "/{id}/status", accessAdmin, s.setDatasetStatus},
		{"POST", hubapi.PathDatasets + "/{id}/connectors", accessAdmin, s.setDatasetConnectors},
		{"GET", hubapi.PathServices, accessCatalogue, s.listServices},
		{"POST", hubapi.PathServices, accessAdmin, s.addService},
		{"GET", PathAdminCluster, accessRead, s.clusterStatus},
		{"POST", PathAdminNodeToken, accessAdmin, s.createNodeToken},
		{"POST", PathAdminRemove, accessAdmin, s.removeNode},
		{"POST", PathAdminKeyring, accessAdmin, s.rotateKeyring},
		{"GET", PathOperators, accessRead, s.listOperators},
		{"POST", PathOperators, accessAdmin, s.addOperator},
		{"POST", PathOperators + "/{name}/status", accessAdmin, s.setOperatorStatus},
		{"POST", PathOperators + "/{name}/tokens", accessAdmin, s.createOperatorToken},
		{"GET", PathAudit, accessRead, s.exportAudit},
		{"GET", PathAuditVerify, accessRead, s.verifyAudit},
		{"POST", PathApplications, accessApply, s.submitApplication},
		{"GET", PathApplications, accessCatalogue, s.listApplications},
		{"GET", PathApplications + "/{id}", accessCatalogue, s.showApplication},
		{"POST", PathApplications + "/{id}/review", accessReview, s.reviewApplication},
		{"POST", PathApplications + "/{id}/decide", accessAdmin, s.decideApplicationAdmin},
		{"POST", PathCalendar, accessAdmin, s.loadCalendar},
		{"GET", PathCalendar, accessCatalogue, s.getCalendar},
		{"POST", PathSuspend, accessAdmin, s.suspendNow},
		{"GET", PathReportTransfers, accessReports, s.reportTransfers},
		{"GET", PathReportReview, accessReviewReport, s.reportReview},
		{"GET", PathReportChanges, accessReports, s.reportChanges},
	}
}

// Serve serves on ln (a plain TCP listener; TLS is added here) until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(sctx)
	}()
	if err := s.srv.Serve(tls.NewListener(ln, s.srv.TLSConfig)); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

const anyKind = fedid.KindUnknown

type peerKey struct{}

// require lets through callers whose SVID is of the given kind (any federation ID for anyKind).
func (s *Server) require(kind fedid.Kind, next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			writeError(w, http.StatusUnauthorized, "client certificate required: present an SVID of "+s.td.IDString())
			return
		}
		id, err := x509svid.IDFromCert(r.TLS.PeerCertificates[0])
		if err != nil {
			writeError(w, http.StatusUnauthorized, "client certificate is not an SVID: "+err.Error())
			return
		}
		p, err := fedid.Parse(id)
		if err != nil {
			writeError(w, http.StatusForbidden, err.Error())
			return
		}
		if kind != anyKind && p.Kind != kind {
			writeError(w, http.StatusForbidden, fmt.Sprintf("%s is a %s; this endpoint is for a %s", id, p.Kind, kind))
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), peerKey{}, p)))
	})
}

func peer(r *http.Request) fedid.Parsed {
	p, _ := r.Context().Value(peerKey{}).(fedid.Parsed)
	return p
}
