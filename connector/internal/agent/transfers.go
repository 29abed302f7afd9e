package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/mydatafed/mydata/connector/internal/config"
	"github.com/mydatafed/mydata/connector/internal/exchange"
	"github.com/mydatafed/mydata/connector/internal/peer"
	"github.com/mydatafed/mydata/connector/internal/provider"
	"github.com/mydatafed/mydata/connector/internal/receipts"
	"github.com/mydatafed/mydata/connector/internal/tickets"
	"github.com/mydatafed/mydata/pkg/audit"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/telemetry"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// AuditPaths are where the audit log and its subject-hash key live.
func AuditPaths(cfg config.Config) (db, key string) {
	return filepath.Join(cfg.DataDir, "audit.db"), filepath.Join(cfg.DataDir, "audit.key")
}

// openTransfers opens what both roles of a transfer need: audit log, ticket record, receipt outbox, the
// dataset backends (DP) and the exchange manager and its local API (SP).
func (a *Agent) openTransfers(cfg config.Config, log *slog.Logger, reg prometheus.Registerer) error {
	dbPath, keyPath := AuditPaths(cfg)
	key, err := audit.LoadOrCreateKey(keyPath)
	if err != nil {
		return fmt.Errorf("audit key: %w", err)
	}
	if a.audit, err = audit.Open(audit.Config{Path: dbPath, Retention: cfg.Audit.Retention}); err != nil {
		return err
	}
	a.auditOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "mydata_connector_audit_verify_ok",
		Help: "1 while the audit log's hash chain and anchored head verify, 0 when not; checked at start and hourly.",
	})
	if err := reg.Register(a.auditOK); err != nil {
		return err
	}
	if a.tickets, err = tickets.Open(filepath.Join(cfg.DataDir, "tickets.db")); err != nil {
		return err
	}
	if a.receipts, err = receipts.Open(filepath.Join(cfg.DataDir, "receipts.db"), a.hub, log.With(telemetry.KeyComponent, "receipts"), reg); err != nil {
		return err
	}
	datasets, err := openDatasets(cfg.Datasets)
	if err != nil {
		return err
	}
	if a.provider, err = provider.New(provider.Config{
		Self: cfg.ID(), Datasets: datasets, Keys: a.dir, HPKE: a.hpke, SVID: a.id, Tickets: a.tickets,
		Audit: a.audit, AuditKey: key, Receipts: a.receipts, HubClaims: provider.HubClient(a.hub), Log: log.With(telemetry.KeyComponent, "provider"), Registerer: reg,
	}); err != nil {
		for _, d := range datasets {
			d.Backend.Close()
		}
		return err
	}
	if a.reloader, err = newReloader(cfg, nil, a.applyDatasets, log.With(telemetry.KeyComponent, "config"), reg); err != nil {
		return err
	}
	if a.exchanges, err = exchange.New(exchange.Config{
		Hub: a.hub, Node: a.node, TCPAddress: a.tcpAddress, Down: a.peerDown, Bundles: a.id, Audit: a.audit, AuditKey: key, Receipts: a.receipts,
		MaxBytes: cfg.Exchange.MaxBytes, Keep: cfg.Exchange.Keep, SpillDir: filepath.Join(cfg.DataDir, "spill"), SpillThreshold: cfg.Exchange.SpillThreshold,
		HubKeys: a.hubKeys, Log: log.With(telemetry.KeyComponent, "exchange"), Registerer: reg,
	}); err != nil {
		return err
	}
	if a.api, err = exchange.NewAPI(a.exchanges, cfg.Exchange.BearerTokenFile, log.With(telemetry.KeyComponent, "exchange-api")); err != nil {
		return err
	}
	if cfg.Exchange.Listen != "" {
		if a.apiLn, err = net.Listen("tcp", cfg.Exchange.Listen); err != nil {
			return fmt.Errorf("exchange.listen %s: %w", cfg.Exchange.Listen, err)
		}
	}
	return a.openCounter(cfg, log.With(telemetry.KeyComponent, "counter"), reg)
}

func (a *Agent) hubKeys() []hubapi.HubKey {
	if doc := a.dir.Document(); doc != nil {
		return doc.HubKeys
	}
	return nil
}

func (a *Agent) serveTransfer(st peer.Stream, peer spiffeid.ID, ticket string) {
	a.provider.Serve(st, peer, ticket)
}

// tcpAddress is dp's TCP address in the directory, "" if it has none or the directory does not know it.
func (a *Agent) tcpAddress(dp spiffeid.ID) string {
	doc := a.dir.Document()
	if doc == nil {
		return ""
	}
	c, _ := doc.Lookup(dp)
	return c.TCPAddress
}

// peerDown says the directory marks dp down.
func (a *Agent) peerDown(dp spiffeid.ID) bool {
	doc := a.dir.Document()
	if doc == nil {
		return false
	}
	c, _ := doc.Lookup(dp)
	return c.Down
}

// verifyAudit checks the audit log's chain now and sets mydata_connector_audit_verify_ok.
func (a *Agent) verifyAudit(ctx context.Context) {
	rep, err := a.audit.Verify(ctx)
	switch {
	case err != nil:
		a.log.Error("audit verify", telemetry.KeyError, err)
		a.auditOK.Set(0)
	case !rep.OK:
		a.log.Error("AUDIT LOG DOES NOT VERIFY", "first_bad_seq", rep.FirstBadSeq, "problem", rep.Problem)
		a.auditOK.Set(0)
	default:
		a.auditOK.Set(1)
	}
}

// housekeeping verifies the audit log hourly, and daily purges it past retention and forgets expired
// tickets.
func (a *Agent) housekeeping(ctx context.Context) error {
	a.verifyAudit(ctx)
	a.purge(ctx)
	hourly, daily := time.NewTicker(time.Hour), time.NewTicker(24*time.Hour)
	defer hourly.Stop()
	defer daily.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hourly.C:
			a.verifyAudit(ctx)
		case <-daily.C:
			a.purge(ctx)
		}
	}
}

func (a *Agent) purge(ctx context.Context) {
	if n, err := a.audit.Purge(ctx); err != nil {
		a.log.Error("audit purge", telemetry.KeyError, err)
	} else if n > 0 {
		a.log.Info("purged audit entries past retention", "rows", n)
	}
	if _, err := a.tickets.Purge(ctx, time.Now().Add(-time.Hour)); err != nil {
		a.log.Warn("ticket purge", telemetry.KeyError, err)
	}
}

// close releases what New opened.
func (a *Agent) close() {
	if a.provider != nil {
		a.provider.CloseDatasets()
	}
	if a.apiLn != nil {
		a.apiLn.Close()
	}
	if a.counterLn != nil {
		a.counterLn.Close()
	}
	if a.receipts != nil {
		a.receipts.Close()
	}
	if a.tickets != nil {
		a.tickets.Close()
	}
	if a.audit != nil {
		a.audit.Close()
	}
	if a.id != nil {
		a.id.Close()
	}
}
