// Package agent wires the connector's subsystems together and runs them: identity, hub directory sync, QUIC
// endpoint and telemetry.
package agent

import (
	"bytes"
	"context"
	"crypto/hpke"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/mydatafed/mydata/connector/internal/config"
	"github.com/mydatafed/mydata/connector/internal/counter"
	"github.com/mydatafed/mydata/connector/internal/dirsync"
	"github.com/mydatafed/mydata/connector/internal/exchange"
	"github.com/mydatafed/mydata/connector/internal/identity"
	"github.com/mydatafed/mydata/connector/internal/peer"
	"github.com/mydatafed/mydata/connector/internal/provider"
	"github.com/mydatafed/mydata/connector/internal/receipts"
	"github.com/mydatafed/mydata/connector/internal/tickets"
	"github.com/mydatafed/mydata/pkg/audit"
	"github.com/mydatafed/mydata/pkg/directory"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/seal"
	"github.com/mydatafed/mydata/pkg/telemetry"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
)

// Agent is a running connector.
type Agent struct {
	cfg  config.Config
	log  *slog.Logger
	id   identity.Source
	hub  *hubapi.Client
	dir  *dirsync.Sync
	node *peer.Node
	tel  *telemetry.Server
	hpke hpke.PrivateKey

	audit     *audit.Log
	tickets   *tickets.Store
	receipts  *receipts.Outbox
	exchanges *exchange.Manager
	api       *exchange.API
	apiLn     net.Listener
	// counter is the counter page, nil unless counter.listen is set.
	counter     *counter.Server
	counterLn   net.Listener
	counterCert *tls.Certificate
	provider    *provider.Provider
	// reloader applies the configuration file again on SIGHUP; reloadSig is nil unless ReloadOn was called.
	reloader  *reloader
	reloadSig <-chan os.Signal
	auditOK   prometheus.Gauge
	// dirChanged wakes the key publisher after each directory change.
	dirChanged chan struct{}
}

// OpenIdentity opens the configured identity source. reg may be nil.
// The hub client it returns fails over between the hub nodes of hub.url.
func OpenIdentity(ctx context.Context, cfg config.Config, log *slog.Logger, reg prometheus.Registerer) (identity.Source, *hubapi.Client, error) {
	hubLog := log.With(telemetry.KeyComponent, "hub")
	switch cfg.Identity.Source {
	case config.SourceSPIRE:
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		src, err := identity.NewSPIRE(sctx, cfg.Identity.SPIRESocket, cfg.ID())
		if err != nil {
			return nil, nil, err
		}
		hub, err := identity.HubClient(cfg.Hub.URLs, src, cfg.TD(), hubLog, reg)
		if err != nil {
			src.Close()
			return nil, nil, err
		}
		return src, hub, nil
	default:
		src, err := identity.LoadLocal(cfg.IdentityDir(), cfg.ID(), log.With(telemetry.KeyComponent, "identity"))
		if err != nil {
			return nil, nil, err
		}
		hub, err := identity.HubClient(cfg.Hub.URLs, src, cfg.TD(), hubLog, reg)
		if err != nil {
			return nil, nil, err
		}
		if err := src.SetHub(hub, reg); err != nil {
			return nil, nil, err
		}
		return src, hub, nil
	}
}

// New opens the identity and the stored directory and binds the listeners. Nothing serves until Run.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (a *Agent, err error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	reg := telemetry.NewRegistry("connector")
	a = &Agent{cfg: cfg, log: log}
	opened := a // the named result is nil by the time a failed New returns
	defer func() {
		if err != nil {
			opened.close()
		}
	}()
	if a.id, a.hub, err = OpenIdentity(ctx, cfg, log, reg); err != nil {
		return nil, err
	}
	a.dir, err = dirsync.New(dirsync.Config{
		TD: cfg.TD(), Path: cfg.DirectoryPath(), Hub: a.hub, Bundles: a.id,
		SyncInterval: cfg.Directory.SyncInterval, MaxBackoff: cfg.Directory.MaxBackoff,
		Refresh: cfg.Directory.Refresh, ExpiryWarning: cfg.Directory.ExpiryWarning,
		Log: log.With(telemetry.KeyComponent, "directory"), Registerer: reg,
	})
	if err != nil {
		return nil, err
	}
	a.node, err = peer.Listen(peer.Config{
		Listen: cfg.QUIC.Listen, QUICOff: !cfg.QUIC.Enabled, TCPOff: !cfg.TCP.Enabled, TCPListen: cfg.TCP.Listen, TD: cfg.TD(), SVID: a.id, Bundles: a.id, IdleTimeout: cfg.QUIC.IdleTimeout,
		Authorize: a.dir.Authorize, Transfer: a.serveTransfer, Log: log.With(telemetry.KeyComponent, "peer"), Registerer: reg,
	})
	if err != nil {
		return nil, err
	}
	if a.hpke, err = seal.LoadOrCreateKey(filepath.Join(cfg.DataDir, "hpke.key"), seal.KEMHybrid); err != nil {
		return nil, fmt.Errorf("HPKE key: %w", err)
	}
	if err := a.openTransfers(cfg, log, reg); err != nil {
		return nil, err
	}
	a.dirChanged = make(chan struct{}, 1)
	a.dir.OnChange(func(*directory.Document) {
		a.node.Recheck()
		select {
		case a.dirChanged <- struct{}{}:
		default:
		}
	})
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mydata_connector_svid_expiry_seconds",
		Help: "Seconds until this connector's SVID expires.",
	}, func() float64 {
		svid, err := a.id.GetX509SVID()
		if err != nil {
			return 0
		}
		return time.Until(svid.Certificates[0].NotAfter).Seconds()
	}))
	if a.tel, err = telemetry.Listen(cfg.Telemetry.Listen, reg, a.ready); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *Agent) ready() error {
	svid, err := a.id.GetX509SVID()
	if err != nil {
		return err
	}
	if time.Now().After(svid.Certificates[0].NotAfter) {
		return errors.New("SVID expired")
	}
	if err := a.dir.Ready(); err != nil {
		return err
	}
	c, ok := a.dir.Lookup(a.cfg.Org, a.cfg.Name)
	if !ok {
		return errors.New("this connector is not in the directory")
	}
	if c.Status != hubapi.StatusActive {
		return fmt.Errorf("this connector is %s", c.Status)
	}
	return nil
}

// recheck closes connections whose peers stopped being authorised without a directory change, such as when
// the directory copy expires.
func (a *Agent) recheck(ctx context.Context) error {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			a.node.Recheck()
		}
	}
}

func addrOrOff(a net.Addr) string {
	if a == nil {
		return "off"
	}
	return a.String()
}

// Node is the endpoint for other connectors, QUIC and TCP.
func (a *Agent) Node() *peer.Node { return a.node }

// Directory is the directory copy.
func (a *Agent) Directory() *dirsync.Sync { return a.dir }

// Run serves until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	defer a.close()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.id.Run(gctx) })
	g.Go(func() error { return a.dir.Run(gctx) })
	g.Go(func() error { return a.node.Run(gctx) })
	g.Go(func() error { return a.tel.Run(gctx) })
	g.Go(func() error { return a.publishKey(gctx, a.dirChanged) })
	g.Go(func() error { return a.recheck(gctx) })
	g.Go(func() error { return a.receipts.Run(gctx) })
	g.Go(func() error { return a.exchanges.Run(gctx) })
	if a.apiLn != nil {
		g.Go(func() error { return a.api.Serve(gctx, a.apiLn) })
	}
	if a.counterLn != nil {
		g.Go(func() error { return a.counter.Serve(gctx, a.counterLn, a.counterCert) })
		g.Go(func() error { return a.counter.Run(gctx) })
	}
	g.Go(func() error { return a.housekeeping(gctx) })
	if a.reloadSig != nil {
		g.Go(func() error { return a.reloader.run(gctx, a.reloadSig) })
	}
	a.log.Info("connector serving", telemetry.KeySPIFFEID, a.cfg.ID().String(), "quic", addrOrOff(a.node.Addr()), "tcp", addrOrOff(a.node.TCPAddr()),
		"telemetry", a.tel.Addr().String(), "hub", a.hub.Current(), "hub_nodes", len(a.cfg.Hub.URLs), "datasets", len(a.provider.Datasets()))
	err := g.Wait()
	a.log.Info("connector stopped", telemetry.KeyError, err)
	return err
}

// publishKey publishes the connector's HPKE public key to the hub, and again whenever the directory shows
// another key for this connector (after a hub restore, say). It retries until the hub takes it.
func (a *Agent) publishKey(ctx context.Context, changed <-chan struct{}) error {
	pub := a.hpke.PublicKey()
	for {
		if !a.keyPublished(pub.Bytes()) {
			err := a.hub.Do(ctx, http.MethodPost, hubapi.PathKeys, hubapi.KeyRequest{KEM: pub.KEM().ID(), PublicKey: pub.Bytes()}, nil)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				a.log.Warn("publish HPKE key", telemetry.KeyError, err)
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(2 * time.Second):
				}
				continue
			}
			a.log.Info("published HPKE key", "kem", fmt.Sprintf("0x%04x", pub.KEM().ID()))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

func (a *Agent) keyPublished(pub []byte) bool {
	c, ok := a.dir.Lookup(a.cfg.Org, a.cfg.Name)
	return ok && bytes.Equal(c.HPKEKey, pub)
}
