// Package server wires the hub's subsystems together and runs them: CA, node SVID, state machine, raft,
// API and telemetry.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/mydatafed/mydata/hub/internal/api"
	"github.com/mydatafed/mydata/hub/internal/backup"
	"github.com/mydatafed/mydata/hub/internal/ca"
	"github.com/mydatafed/mydata/hub/internal/cluster"
	"github.com/mydatafed/mydata/hub/internal/config"
	"github.com/mydatafed/mydata/hub/internal/consent"
	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/hub/internal/join"
	"github.com/mydatafed/mydata/hub/internal/keyring"
	"github.com/mydatafed/mydata/hub/internal/nodekeys"
	"github.com/mydatafed/mydata/hub/internal/outbox"
	"github.com/mydatafed/mydata/hub/internal/portal"
	"github.com/mydatafed/mydata/hub/internal/relay"
	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/pemfile"
	"github.com/mydatafed/mydata/pkg/telemetry"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"golang.org/x/sync/errgroup"
)

// Server is a running hub node.
type Server struct {
	cfg     config.Config
	log     *slog.Logger
	ca      *ca.CA
	node    *ca.NodeSource
	state   *fsm.FSM
	cluster *cluster.Cluster
	api     *api.Server
	apiLn   net.Listener
	// notices sends citizens the notices of each use of their data (on the leader).
	notices *outbox.Outbox
	// loginRunners are the login methods' background work (certificate revocation lists).
	loginRunners []func(context.Context) error
	tel          *telemetry.Server
	keys         *nodekeys.Keys
	keyring      *keyring.Keyring
	consent      *consent.Service
	// joined is set when this node joined through raft.join: it still has to ask to be added to raft.
	joined bool
	// published is set once this node's keys are in the replicated state: until then no directory lists
	// them and no ticket this node signs could be verified, so the node is not ready.
	published atomic.Bool
	portal    *portal.Server
	portLn    net.Listener
	portTLS   *tls.Certificate
}

// New opens everything a hub node needs, creating the CA and the operator credential on first start.
// Nothing serves until Run.
func New(cfg config.Config, log *slog.Logger) (s *Server, err error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	td := cfg.TD()
	s = &Server{cfg: cfg, log: log}
	hasState := cluster.HasState(cfg.RaftDir())
	switch {
	case !hasState && len(cfg.Raft.Join) > 0:
		if _, err := os.Stat(filepath.Join(cfg.CADir(), "root.key")); err != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			err := join.Secrets(ctx, cfg, cfg.Raft.Join, cfg.Raft.JoinToken, log)
			cancel()
			if err != nil {
				return nil, err
			}
		}
		s.joined = true
	case !hasState && !cfg.Raft.Bootstrap:
		return nil, errors.New("this node has no raft state and neither bootstraps a cluster (raft.bootstrap) nor joins one (raft.join, or --join and --token)")
	}
	// On any failure below, release what was opened so a retry in the same process can bind again. The
	// named result is nil by the time a failed New returns, so keep our own reference.
	opened := s
	defer func() {
		if err != nil {
			opened.close()
		}
	}()
	var created bool
	s.ca, created, err = ca.LoadOrCreate(cfg.CADir(), td, cfg.CA.RootTTL)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	if created {
		log.Info("created the federation root CA", "trust_domain", td.Name(), "fingerprint", fingerprint(s.ca))
	}
	kek, err := s.loadKEK(hasState)
	if err != nil {
		return nil, err
	}
	nodeID, err := fedid.Hub(td, cfg.NodeID)
	if err != nil {
		return nil, err
	}
	if s.node, err = ca.NewNodeSource(s.ca, nodeID, cfg.CA.SVIDTTL); err != nil {
		return nil, fmt.Errorf("node SVID: %w", err)
	}
	if err := EnsureOperator(cfg, s.ca, log); err != nil {
		return nil, err
	}
	if s.state, err = fsm.Open(cfg.StatePath(), log.With(telemetry.KeyComponent, "fsm")); err != nil {
		return nil, err
	}
	if s.keyring, err = keyring.New(kek, s.state); err != nil {
		return nil, err
	}
	reg := telemetry.NewRegistry("hub")
	// Hub nodes only, and never one that was removed from the cluster: its SVID may still be valid.
	notRemoved := func(id spiffeid.ID) error {
		p, err := fedid.Parse(id)
		if err == nil && s.state.NodeRemoved(p.Name) {
			return fmt.Errorf("hub node %s was removed from the cluster", p.Name)
		}
		return err
	}
	hubOnly := fedid.Authorizer(td, fedid.KindHub, notRemoved)
	serverTLS := tlsconfig.MTLSServerConfig(s.node, s.ca.Bundle(), hubOnly)
	clientTLS := tlsconfig.MTLSClientConfig(s.node, s.ca.Bundle(), hubOnly)
	s.cluster, err = cluster.New(cluster.Config{
		NodeID: cfg.NodeID, Listen: cfg.Raft.Listen, Advertise: cfg.Raft.Advertise, Dir: cfg.RaftDir(),
		Bootstrap: cfg.Raft.Bootstrap, ServerTLS: serverTLS, ClientTLS: clientTLS,
		SnapshotInterval: cfg.Raft.Snapshot, SnapshotThreshold: cfg.Raft.Threshold, HoldTimeout: cfg.Raft.HoldTimeout,
		Autopilot: cluster.AutopilotConfig{DeadServerThreshold: cfg.Raft.DeadServerThreshold, MinVoters: cfg.Raft.MinVoters},
		PeerCheck: notRemoved,
		Log:       log, Registerer: reg,
	}, s.state)
	if err != nil {
		return nil, err
	}
	if s.keys, err = nodekeys.LoadOrCreate(cfg.KeysDir(), cfg.NodeID); err != nil {
		return nil, err
	}
	s.consent = consent.New(consent.Config{
		TrustDomain: td, NodeID: cfg.NodeID, State: s.state, Keys: s.keyring, Apply: s.cluster.Apply, Sync: s.cluster.Sync,
		Tickets: s.keys.Tickets, CodeTTL: cfg.Consent.CodeTTL, Log: log.With(telemetry.KeyComponent, "consent"),
		CounterTTL: cfg.Consent.CounterTTL,
		// The portal, made below, sends and checks counter one-time codes as it does the login method's.
		OTP: consent.OTPFuncs{
			SendFunc: func(ctx context.Context, subject, purpose string) (string, bool, error) {
				return s.portal.CounterOTP().Send(ctx, subject, purpose)
			},
			CheckFunc: func(challenge, subject, purpose, code string) error {
				return s.portal.CounterOTP().Check(challenge, subject, purpose, code)
			},
		},
	})
	s.api, err = api.New(api.Config{
		NodeID: cfg.NodeID, CA: s.ca, SVID: s.node, Cluster: s.cluster, State: s.state, Keyring: s.keyring, Consent: s.consent, KEK: kek,
		SVIDTTL: cfg.CA.SVIDTTL, TokenDefaultTTL: cfg.Tokens.DefaultTTL, TokenMaxTTL: cfg.Tokens.MaxTTL,
		DirectoryTTL: cfg.Directory.TTL, MaxLongPoll: cfg.Directory.MaxLongPoll,
		PushRequest: func(ctx context.Context, org, name string, req hubapi.PARRequest) (hubapi.PARResponse, *hubapi.Error) {
			return s.portal.PushRequest(ctx, org, name, req)
		},
		Backup: func(w io.Writer) error {
			_, err := backup.Write(w, cfg, s.state)
			return err
		},
		Log: log.With(telemetry.KeyComponent, "api"), Registerer: reg,
	})
	if err != nil {
		return nil, err
	}
	loc, err := time.LoadLocation(cfg.Portal.TimeZone)
	if err != nil {
		return nil, fmt.Errorf("portal.time_zone: %w", err)
	}
	logins, runners, err := buildLogins(cfg, reg)
	if err != nil {
		return nil, err
	}
	s.loginRunners = runners
	s.notices, err = outbox.New(outbox.Config{State: s.state, Keys: s.keyring, Apply: s.cluster.Apply, Sender: logins.Notify, Templates: logins.Templates,
		PortalURL: cfg.Portal.PublicURL, Log: log.With(telemetry.KeyComponent, "notices"), Registerer: reg})
	if err != nil {
		return nil, err
	}
	downloads, err := relay.New(relay.Config{TD: td, SVID: s.node, Bundles: s.ca.Bundle(), State: s.state,
		Log: log.With(telemetry.KeyComponent, "relay"), Registerer: reg})
	if err != nil {
		return nil, err
	}
	s.portal, err = portal.New(portal.Config{
		State: s.state, Keys: s.keyring, Consent: s.consent, Sync: s.cluster.Sync, Apply: s.cluster.Apply, Logins: logins,
		DevLogin: cfg.Identity.DevLogin, PublicURL: cfg.Portal.PublicURL, APIURL: cfg.API.PublicURL, SessionTTL: cfg.Identity.SessionTTL,
		IdleTimeout: cfg.Identity.IdleTimeout, Levels: cfg.Identity.Levels, Location: loc,
		PendingTTL: cfg.Consent.PendingTTL, CounterTTL: cfg.Consent.CounterTTL, Relay: downloads, Bundle: s.ca.Bundle(),
		Log: log.With(telemetry.KeyComponent, "portal"), Registerer: reg,
	})
	if err != nil {
		return nil, err
	}
	if cfg.Portal.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.Portal.TLSCert, cfg.Portal.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("portal.tls_cert: %w", err)
		}
		s.portTLS = &cert
	}
	if s.portLn, err = net.Listen("tcp", cfg.Portal.Listen); err != nil {
		return nil, fmt.Errorf("portal listen %s: %w", cfg.Portal.Listen, err)
	}
	if s.apiLn, err = net.Listen("tcp", cfg.API.Listen); err != nil {
		return nil, fmt.Errorf("api listen %s: %w", cfg.API.Listen, err)
	}
	s.tel, err = telemetry.Listen(cfg.Telemetry.Listen, reg, s.ready)
	if err != nil {
		return nil, err
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mydata_hub_svid_expiry_seconds",
		Help: "Seconds until this hub node's SVID expires.",
	}, func() float64 { return time.Until(s.node.Leaf().NotAfter).Seconds() }))
	reg.MustRegister(&keyAges{k: s.keyring})
	return s, nil
}

// loadKEK reads the cluster key-encryption key. The first node of a cluster makes it (as does a one-node
// hub that predates the keyring); a node that joined received it; any other node lacks what it needs.
func (s *Server) loadKEK(hasState bool) ([]byte, error) {
	path := s.cfg.KEKPath()
	if s.cfg.Raft.Bootstrap {
		kek, created, err := keyring.LoadOrCreateKEK(path)
		if created {
			s.log.Info("created the cluster key-encryption key; joining nodes receive it over mutual TLS", "path", path)
		}
		return kek, err
	}
	kek, err := keyring.LoadKEK(path)
	if err != nil && hasState {
		return nil, fmt.Errorf("%w: this node has raft state but not the cluster's key; copy %s from another node (mode 0600), or remove the node and join it again", err, path)
	}
	return kek, err
}

// keyAges exports the age of each keyring purpose's active key, for the rotation alert. The lookup key is
// left out: it is not meant to rotate (old hashes stay findable, but each rotation adds a hash per search).
type keyAges struct{ k *keyring.Keyring }

var keyAgeDesc = prometheus.NewDesc("mydata_hub_keyring_active_key_age_seconds", "Age of the active keyring key of each purpose.", []string{"purpose"}, nil)

func (a *keyAges) Describe(ch chan<- *prometheus.Desc) { ch <- keyAgeDesc }

func (a *keyAges) Collect(ch chan<- prometheus.Metric) {
	for p, age := range a.k.ActiveAges() {
		if p == fsm.PurposeLookup {
			continue
		}
		ch <- prometheus.MustNewConstMetric(keyAgeDesc, prometheus.GaugeValue, age.Seconds(), p)
	}
}

func fingerprint(c *ca.CA) string {
	fp := c.Fingerprint()
	return fmt.Sprintf("sha256:%x", fp[:])
}

// ready says whether this node can serve: it knows a leader and hears from it, it is not far behind the
// log it knows to be committed, its ticket key is published, and the keyring has its keys.
func (s *Server) ready() error {
	st := s.cluster.Stats()
	if st.Leader == "" {
		return errors.New("no raft leader")
	}
	if st.LastContactMS > s.cfg.Raft.HoldTimeout.Milliseconds() {
		return fmt.Errorf("no contact with the leader for %d ms", st.LastContactMS)
	}
	if st.CommitIndex > st.AppliedIndex+s.cfg.Raft.ReadyLag {
		return fmt.Errorf("%d entries behind the commit index", st.CommitIndex-st.AppliedIndex)
	}
	if !s.published.Load() {
		return errors.New("this node's keys are not published yet")
	}
	if missing, err := s.keyring.Missing(); err != nil || len(missing) > 0 {
		return fmt.Errorf("the keyring lacks keys for %v (%v)", missing, err)
	}
	return nil
}

// APIAddr is the bound API address.
func (s *Server) APIAddr() net.Addr { return s.apiLn.Addr() }

// TelemetryAddr is the bound telemetry address.
func (s *Server) TelemetryAddr() net.Addr { return s.tel.Addr() }

// CA is the node's CA.
func (s *Server) CA() *ca.CA { return s.ca }

// Run serves until ctx ends, then shuts down raft and closes the state.
func (s *Server) Run(ctx context.Context) error {
	defer s.close()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.api.Serve(gctx, s.apiLn) })
	g.Go(func() error { return s.portal.Serve(gctx, s.portLn, s.portTLS) })
	g.Go(func() error { return s.tel.Run(gctx) })
	g.Go(func() error { return s.node.Run(gctx) })
	g.Go(func() error { return s.publishKeys(gctx) })
	g.Go(func() error { return s.cluster.RunAutopilot(gctx) })
	g.Go(func() error { return s.cluster.RunAsLeader(gctx, "purge tokens", s.purgeTokens) })
	g.Go(func() error {
		return s.cluster.RunAsLeader(gctx, "keyring", func(ctx context.Context) {
			s.keyring.Upkeep(ctx, keyringKeep, s.cluster.Apply, func(err error) { s.log.Warn("keyring upkeep", telemetry.KeyError, err) })
		})
	})
	g.Go(func() error { return s.cluster.RunAsLeader(gctx, "reconcile nodes", s.reconcileNodes) })
	g.Go(func() error {
		return s.cluster.RunAsLeader(gctx, "consent upkeep", func(ctx context.Context) { s.consent.Upkeep(ctx, time.Minute) })
	})
	if s.joined {
		g.Go(func() error {
			return join.Member(gctx, s.cfg, s.cfg.Raft.Join, tlsconfig.MTLSClientConfig(s.node, s.ca.Bundle(), fedid.Authorizer(s.ca.TrustDomain(), fedid.KindHub, nil)), s.log)
		})
	}
	g.Go(func() error { return s.refreshOperator(gctx) })
	g.Go(func() error { return s.cluster.RunAsLeader(gctx, "notices", s.notices.Run) })
	g.Go(func() error { return s.cluster.RunAsLeader(gctx, "lifecycle", s.lifecycle) })
	g.Go(func() error { return s.cluster.RunAsLeader(gctx, "records purge", s.purgeRecords) })
	if s.cfg.Directory.DownAfter > 0 {
		// Off (0) while a cluster is upgraded to the release that has it: a node of an earlier release
		// cannot apply these entries (docs/operations.md, section 6).
		g.Go(func() error { s.api.RunLiveness(gctx, s.cfg.Directory.DownAfter); return nil })
		g.Go(func() error { return s.cluster.RunAsLeader(gctx, "connector liveness", s.checkLiveness) })
	}
	for _, run := range s.loginRunners {
		g.Go(func() error { return run(gctx) })
	}
	s.log.Info("hub serving", "node", s.cfg.NodeID, "api", s.apiLn.Addr().String(), "portal", s.portLn.Addr().String(), "telemetry", s.tel.Addr().String(),
		"trust_domain", s.cfg.TrustDomain, "ca_fingerprint", fingerprint(s.ca))
	err := g.Wait()
	s.log.Info("hub stopping", telemetry.KeyError, err)
	return err
}

// refreshOperator reissues the local operator credential when it has used two thirds of its life, so that a
// hub that runs for months keeps its admin CLI working.
func (s *Server) refreshOperator(ctx context.Context) error {
	t := time.NewTicker(6 * time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := EnsureOperator(s.cfg, s.ca, s.log); err != nil {
				s.log.Warn("refresh operator credential", telemetry.KeyError, err)
			}
		}
	}
}

// publishKeys puts this node's ticket key and addresses into the replicated state, retrying until a leader
// takes them.
func (s *Server) publishKeys(ctx context.Context) error {
	keys, err := s.keys.Public()
	if err != nil {
		return err
	}
	cmds := []fsm.Command{&fsm.NodeInfo{Node: s.cfg.NodeID, RaftAddress: s.cluster.Addr(), APIURL: s.cfg.API.PublicURL, Now: time.Now()}}
	for _, k := range keys {
		cmds = append(cmds, &fsm.HubKey{Key: fsm.HubKeyFrom(k)})
	}
	for _, cmd := range cmds {
		for {
			err := s.cluster.Apply(cmd)
			if err == nil {
				break
			}
			var fe *fsm.Error
			if errors.As(err, &fe) {
				// Removed from the cluster: this node must not serve.
				return fmt.Errorf("publish this node: %w", err)
			}
			s.log.Debug("publish this node's key and addresses; retrying", telemetry.KeyError, err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	s.published.Store(true)
	return nil
}

// reconcileGrace is how long a node admitted by a join may take to be added to raft before the leader
// takes it for gone.
const reconcileGrace = 10 * time.Minute

// reconcileNodes removes from the federation the hub nodes the state holds as active but raft does not
// know: removed from raft by the autopilot's dead-server cleanup, or members of the cluster a backup was
// taken from. Their ticket keys leave the directory and their SVIDs are refused, as with `cluster remove`.
func (s *Server) reconcileNodes(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		servers, err := s.cluster.Servers(ctx)
		if err != nil {
			continue
		}
		nodes, err := s.state.Nodes()
		if err != nil {
			continue
		}
		for _, n := range nodes {
			if n.Status != fsm.NodeActive || time.Since(n.JoinedAt) < reconcileGrace ||
				slices.ContainsFunc(servers, func(sv cluster.Server) bool { return sv.ID == n.ID }) {
				continue
			}
			if err := s.cluster.Apply(&fsm.NodeRemove{Node: n.ID, Now: time.Now()}); err != nil {
				s.log.Warn("remove a node raft no longer knows", "node", n.ID, telemetry.KeyError, err)
				continue
			}
			s.log.Warn("removed a hub node that is no longer in the raft configuration", "node", n.ID)
		}
	}
}

// keyringKeep is how long a retired keyring key still verifies and opens what it made: longer than any
// session, consent page, login hint or sealed subject lives.
const keyringKeep = 7 * 24 * time.Hour

// purgeTokens removes expired join tokens from the state now and then; the leader runs it.
func (s *Server) purgeTokens(ctx context.Context) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// Spent one-time codes and failure counters go too, an hour after they can matter.
		for _, cmd := range []fsm.Command{&fsm.TokenPurge{Now: time.Now()}, &fsm.NodeTokenPurge{Now: time.Now()}, &fsm.IdentityPurge{Before: time.Now().Add(-time.Hour)}} {
			if err := s.cluster.Apply(cmd); err != nil {
				s.log.Warn("purge expired join tokens", telemetry.KeyError, err)
			}
		}
	}
}

func (s *Server) close() {
	if s.cluster != nil {
		if err := s.cluster.Shutdown(); err != nil {
			s.log.Warn("raft shutdown", telemetry.KeyError, err)
		}
	}
	if s.apiLn != nil {
		s.apiLn.Close()
	}
	if s.portLn != nil {
		s.portLn.Close()
	}
	if s.state != nil {
		s.state.Close()
	}
}

// Operator credential files under data_dir/operator.
const (
	OperatorName = "admin"
	operatorCert = "admin.crt"
	operatorKey  = "admin.key"
	operatorCA   = "bundle.crt"
)

// OperatorFiles gives the paths of the bootstrap operator's certificate, key and trust bundle.
func OperatorFiles(cfg config.Config) (cert, key, bundle string) {
	d := cfg.OperatorDir()
	return filepath.Join(d, operatorCert), filepath.Join(d, operatorKey), filepath.Join(d, operatorCA)
}

// EnsureOperator issues the bootstrap operator credential (spiffe://<td>/operator/admin) if there is none or
// it has used up two thirds of its life, so that `mydata-hub admin` on this machine always has one.
func EnsureOperator(cfg config.Config, c *ca.CA, log *slog.Logger) error {
	certPath, keyPath, bundlePath := OperatorFiles(cfg)
	if certs, err := pemfile.ReadCertificates(certPath); err == nil {
		leaf := certs[0]
		life := leaf.NotAfter.Sub(leaf.NotBefore)
		if time.Until(leaf.NotAfter) > life/3 && leaf.CheckSignatureFrom(c.Root()) == nil {
			return nil
		}
	}
	if err := os.MkdirAll(cfg.OperatorDir(), 0o700); err != nil {
		return err
	}
	id, err := fedid.Operator(c.TrustDomain(), OperatorName)
	if err != nil {
		return err
	}
	certs, key, err := c.Issue(id, cfg.CA.OperatorTTL)
	if err != nil {
		return err
	}
	keyPEM, err := pemfile.EncodeKey(key)
	if err != nil {
		return err
	}
	if err := pemfile.WriteAtomic(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	if err := pemfile.WriteAtomic(certPath, pemfile.EncodeCertificates(certs), 0o600); err != nil {
		return err
	}
	if err := pemfile.WriteAtomic(bundlePath, pemfile.EncodeCertificates([]*x509.Certificate{c.Root()}), 0o600); err != nil {
		return err
	}
	log.Info("issued the bootstrap operator credential", telemetry.KeySPIFFEID, id.String(), "dir", cfg.OperatorDir())
	return nil
}
