// Package provider is the data provider's side of a transfer: it checks a presented ticket offline
// (signature, expiry, that the QUIC peer is the named redeemer, that this connector serves the dataset,
// that the ticket was never used), opens the sealed subject, reads the dataset from the agency's backend,
// and streams it sealed to the recipient's key, signed. Every outcome goes to the audit log and, as a
// receipt, to the hub.
package provider

import (
	"context"
	"crypto/hpke"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/mydatafed/mydata/connector/internal/backend"
	"github.com/mydatafed/mydata/connector/internal/receipts"
	"github.com/mydatafed/mydata/connector/internal/tickets"
	"github.com/mydatafed/mydata/pkg/audit"
	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/seal"
	"github.com/mydatafed/mydata/pkg/ticket"
	"github.com/mydatafed/mydata/pkg/transfer"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Dataset is a dataset this connector serves.
type Dataset struct {
	Backend  backend.Backend
	MaxBytes int64
}

// Config wires the provider.
type Config struct {
	Self     spiffeid.ID
	Datasets map[string]Dataset
	Keys     ticket.KeySet
	HPKE     hpke.PrivateKey
	SVID     x509svid.Source
	Tickets  *tickets.Store
	Audit    *audit.Log
	// AuditKey keys the subject hashes in the audit log.
	AuditKey []byte
	Receipts *receipts.Outbox
	// HubClaims claims at the hub the tickets that several connectors may serve; without it such tickets
	// are refused.
	HubClaims  HubClaims
	Log        *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// HubClaims keeps single use across the connectors a ticket names (connector HA): each keeps its own
// record of the tickets it served, but only the hub sees them all, so a connector claims such a ticket
// there before it reads the agency's data, and releases it after.
type HubClaims interface {
	// Claim claims the ticket for this connector; ErrTaken if another of its connectors serves or served it.
	Claim(ctx context.Context, token string) error
	// Release ends the claim; spent says data was sent, or began to be.
	Release(ctx context.Context, token string, spent bool) error
}

// ErrTaken is a ticket another of its connectors serves or served.
var ErrTaken = errors.New(transfer.Taken)

// Provider serves transfers.
type Provider struct {
	cfg        Config
	transfers  *prometheus.CounterVec
	bytes      prometheus.Counter
	recipients *seal.PublicKeys
	datasets   datasetSet // cfg.Datasets, then each reload's
}

// New makes a provider.
func New(cfg Config) (*Provider, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p := &Provider{cfg: cfg, recipients: seal.NewPublicKeys(),
		transfers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mydata_connector_dp_transfers_total",
			Help: "Tickets served as a data provider, by dataset, outcome (delivered, no_record, pending, refused, failed) and transport (quic, tcp).",
		}, []string{"dataset", "outcome", "transport"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mydata_connector_dp_bytes_total",
			Help: "Plaintext bytes delivered as a data provider.",
		}),
	}
	p.datasets.store(cfg.Datasets)
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{p.transfers, p.bytes} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}

// outcome is what happened to one presented ticket.
type outcome struct {
	claims  *ticket.Claims
	subject string
	status  string // an audit outcome
	detail  string
	bytes   int64
	// transport carried the request (quic, tcp).
	transport string
	// notTheTransfer marks a refusal that says nothing of the ticket's own transfer (a replay, a
	// presentation by someone other than its redeemer): audited, but not reported to the hub, where it
	// would replace the receipt of the real transfer.
	notTheTransfer bool
}

// Serve answers one ticket on st from peer.
func (p *Provider) Serve(st io.ReadWriteCloser, peer spiffeid.ID, token string) {
	defer st.Close()
	ctx := context.Background()
	o := p.serve(ctx, st, peer, token)
	o.transport = transportOf(st)
	p.record(ctx, peer, o)
}

func (p *Provider) refuse(w io.Writer, o *outcome, format string, args ...any) *outcome {
	o.status, o.detail = audit.OutcomeRefused, fmt.Sprintf(format, args...)
	_ = transfer.WriteStatus(w, transfer.Refused, o.detail, 0)
	return o
}

func (p *Provider) serve(ctx context.Context, st io.ReadWriter, peer spiffeid.ID, token string) *outcome {
	o := &outcome{}
	c, err := ticket.Verify(token, p.cfg.Keys, p.cfg.Now())
	if err != nil {
		return p.refuse(st, o, "%v", err)
	}
	o.claims = c
	if err := redeemerMayPresent(c, peer); err != nil {
		o.notTheTransfer = true
		return p.refuse(st, o, "%v", err)
	}
	sealedSubject, ok := c.ForDP(p.cfg.Self.String())
	if !ok {
		return p.refuse(st, o, "this ticket is for %s, not this connector", strings.Join(c.DPs(), " or "))
	}
	if w, ok := p.cfg.Keys.(withdrawals); ok {
		// Suspended or terminated at the hub: its directory says so within seconds, and a ticket signed
		// before is refused from then on.
		if status := w.Withdrawn("service", c.Service); c.Service != "" && status != "" {
			return p.refuse(st, o, "service %s is %s", c.Service, status)
		}
		if status := w.Withdrawn("dataset", c.Dataset); status != "" {
			return p.refuse(st, o, "dataset %s is %s", c.Dataset, status)
		}
	}
	key := c.Dataset
	if c.Stage == ticket.StageSandbox {
		// A sandbox ticket is answered from the dataset's synthetic backend only, never the real one.
		key = SandboxKey(c.Dataset)
	}
	ds, ok := p.datasets.lookup(key)
	if !ok && key != c.Dataset {
		return p.refuse(st, o, "this connector has no sandbox backend for dataset %s, and a sandbox ticket is never answered from real data", c.Dataset)
	}
	if !ok {
		return p.refuse(st, o, "this connector does not serve dataset %s", c.Dataset)
	}
	if err := p.cfg.Tickets.Claim(ctx, c.ID, time.Unix(c.ExpiresAt, 0).Add(ticket.Skew)); err != nil {
		if errors.Is(err, tickets.ErrUsed) || errors.Is(err, tickets.ErrBusy) {
			o.notTheTransfer = true
			return p.refuse(st, o, "%v", err)
		}
		p.cfg.Log.Error("ticket record", "err", err)
		o.status, o.detail = audit.OutcomeFailed, "ticket record unavailable"
		_ = transfer.WriteStatus(st, transfer.Failed, "the data provider cannot serve right now", 0)
		return o
	}
	spent := true
	defer func() {
		if err := p.cfg.Tickets.Finish(ctx, c.ID, spent); err != nil {
			p.cfg.Log.Error("ticket record", "err", err)
		}
	}()
	shared, released := len(c.Alternates) > 0, false
	// release ends the hub's claim. A connector that sent nothing releases before it answers, so that the
	// next connector the SP tries finds the ticket free.
	release := func() {
		if !shared || released {
			return
		}
		released = true
		if err := p.cfg.HubClaims.Release(ctx, token, spent); err != nil {
			p.cfg.Log.Warn("release the ticket's claim at the hub", "ticket", c.ID, "spent", spent, "err", err)
		}
	}
	if shared {
		// Other connectors may serve this ticket: the hub decides which one does. Until data is sent
		// the ticket stays free for the next one the SP tries.
		if r := p.claimAtHub(ctx, st, o, token, &spent); r != nil {
			return r
		}
		defer release()
	}
	subj, err := seal.Open(p.cfg.HPKE, ticket.SubjectInfo(c.ID), sealedSubject)
	if err != nil {
		return p.refuse(st, o, "the ticket's subject is not sealed to this connector")
	}
	o.subject = string(subj)
	recipient, err := p.recipients.Parse(c.RecipientKEM, c.RecipientKey)
	if err != nil {
		return p.refuse(st, o, "the ticket's recipient key is unusable")
	}
	res, err := ds.Backend.Fetch(backend.WithTransfer(ctx, backend.Transfer{ID: c.ID, Expires: time.Unix(c.ExpiresAt, 0), Client: c.Redeemer}), o.subject)
	if err != nil {
		// The agency's error stays here; the SP learns only that the provider failed.
		p.cfg.Log.Error("backend fetch failed", "dataset", c.Dataset, "ticket", c.ID, "err", err)
		o.status, o.detail = audit.OutcomeFailed, "backend failure"
		// Nothing was sent: another of the ticket's connectors may serve it.
		spent = !shared
		release()
		_ = transfer.WriteStatus(st, transfer.Failed, "the data provider's system could not produce the data", 0)
		return o
	}
	switch res.Status {
	case backend.NoRecord:
		o.status = audit.OutcomeNoRecord
		_ = transfer.WriteStatus(st, transfer.NoRecord, "no record for this citizen", 0)
		return o
	case backend.NotReady:
		spent = false
		release()
		// An agency may name any delay; the SP can retry only while the ticket lives, and the protocol
		// bounds retry_after to a day.
		left := time.Unix(c.ExpiresAt, 0).Sub(p.cfg.Now())
		retry := int(min(max(res.RetryAfter, time.Second), max(left, time.Second), transfer.MaxRetryAfter) / time.Second)
		o.status, o.detail = audit.OutcomePending, fmt.Sprintf("retry after %ds", retry)
		_ = transfer.WriteStatus(st, transfer.NotReady, "the agency will answer later", retry)
		return o
	}
	defer res.Body.Close()
	if res.Size > ds.MaxBytes {
		o.status, o.detail = audit.OutcomeFailed, "dataset larger than max_bytes"
		// Nothing was sent: another of the ticket's connectors, with a larger max_bytes, may serve it.
		spent = !shared
		release()
		_ = transfer.WriteStatus(st, transfer.Failed, "the data is larger than this provider delivers", 0)
		return o
	}
	m := transfer.Manifest{TicketID: c.ID, ConsentID: c.ConsentID, Dataset: c.Dataset, ContentType: res.ContentType, DeclaredSize: res.Size}
	n, err := transfer.Send(st, m, recipient, res.Body, ds.MaxBytes, p.cfg.SVID)
	o.bytes = n
	if err != nil {
		p.cfg.Log.Warn("delivery failed", "dataset", c.Dataset, "ticket", c.ID, "bytes", n, "err", err)
		o.status, o.detail = audit.OutcomeFailed, "delivery interrupted"
		return o
	}
	o.status = audit.OutcomeDelivered
	p.bytes.Add(float64(n))
	return o
}

// claimAtHub claims a ticket several connectors may serve; it answers the SP and returns the outcome when
// this connector may not serve it.
func (p *Provider) claimAtHub(ctx context.Context, st io.Writer, o *outcome, token string, spent *bool) *outcome {
	if p.cfg.HubClaims == nil {
		*spent = false
		o.status, o.detail = audit.OutcomeFailed, "no hub to claim a ticket several connectors serve"
		_ = transfer.WriteStatus(st, transfer.Failed, "the data provider cannot serve this ticket", 0)
		return o
	}
	err := p.cfg.HubClaims.Claim(ctx, token)
	switch {
	case errors.Is(err, ErrTaken):
		*spent = false // ours was never used
		o.notTheTransfer = true
		return p.refuse(st, o, "%v", err)
	case err != nil:
		*spent = false
		p.cfg.Log.Warn("claim the ticket at the hub", "ticket", o.claims.ID, "err", err)
		// The claim may still be applied (a leader change, a lost answer): give it back, or the ticket
		// would stay held by a connector that sent nothing until it expires. A release of no claim is
		// refused by the hub and harmless.
		if rerr := p.cfg.HubClaims.Release(ctx, token, false); rerr != nil {
			p.cfg.Log.Debug("release after a failed claim", "ticket", o.claims.ID, "err", rerr)
		}
		o.status, o.detail = audit.OutcomeFailed, "the hub could not be asked to claim the ticket"
		_ = transfer.WriteStatus(st, transfer.Failed, "the data provider cannot serve right now", 0)
		return o
	}
	return nil
}

// record writes the outcome to the audit log and queues the receipt. A refusal of a ticket that did not
// verify has no consent to report to the hub, and a replay is not the ticket's transfer: both are audited
// only.
func (p *Provider) record(ctx context.Context, peer spiffeid.ID, o *outcome) {
	dataset := "unknown"
	e := audit.Entry{Time: p.cfg.Now(), Role: audit.RoleDP, Counterpart: peer.String(), Outcome: o.status,
		Detail: audit.CleanDetail(audit.WithTransport(o.detail, o.transport)), Bytes: o.bytes}
	if o.claims != nil {
		dataset = o.claims.Dataset
		e.Dataset, e.ConsentID, e.TicketID = o.claims.Dataset, o.claims.ConsentID, o.claims.ID
	} else {
		e.Dataset = dataset
	}
	if o.subject != "" {
		e.Subject = audit.SubjectHash(p.cfg.AuditKey, o.subject)
	}
	p.transfers.WithLabelValues(dataset, o.status, o.transport).Inc()
	if _, err := p.cfg.Audit.Append(ctx, e); err != nil {
		p.cfg.Log.Error("audit append failed", "ticket", e.TicketID, "err", err)
	}
	if o.claims == nil || o.notTheTransfer {
		return
	}
	if err := p.cfg.Receipts.Add(ctx, hubapi.ReceiptRequest{TicketID: o.claims.ID, ConsentID: o.claims.ConsentID, Dataset: o.claims.Dataset,
		Role: hubapi.RoleSender, Counterpart: peer.String(), Outcome: o.status, Bytes: o.bytes, At: e.Time}); err != nil {
		p.cfg.Log.Error("queue receipt failed", "ticket", o.claims.ID, "err", err)
	}
}

// withdrawals is what the directory (Config.Keys) says of suspended and terminated services and datasets.
type withdrawals interface {
	Withdrawn(on, id string) string
}

// transportOf is the transport carrying st, as peer.Stream says (the provider does not import peer, which
// serves it): "" for a stream that does not say.
func transportOf(st io.ReadWriteCloser) string {
	if t, ok := st.(interface{ Transport() string }); ok {
		return t.Transport()
	}
	return ""
}

// redeemerMayPresent says whether peer may present c. A connector may present a ticket that names it as
// redeemer, and no download ticket; a hub node may present only download tickets, which name the hub as
// redeemer: any of its nodes may relay, since the citizen's browser may reach any of them.
func redeemerMayPresent(c *ticket.Claims, peer spiffeid.ID) error {
	kind := fedid.KindUnknown
	if p, err := fedid.Parse(peer); err == nil {
		kind = p.Kind
	}
	switch {
	case kind == fedid.KindHub && c.Mode != ticket.ModeDownload:
		return errors.New("the hub may present only download tickets")
	case kind == fedid.KindHub:
		red, err := spiffeid.FromString(c.Redeemer)
		if err != nil || red.TrustDomain() != peer.TrustDomain() {
			return fmt.Errorf("this ticket may be presented only by %s", c.Redeemer)
		}
		if p, err := fedid.Parse(red); err != nil || p.Kind != fedid.KindHub {
			return fmt.Errorf("this ticket may be presented only by %s", c.Redeemer)
		}
		return nil
	case c.Mode == ticket.ModeDownload:
		return errors.New("a download ticket may be presented only by the hub")
	case c.Redeemer != peer.String():
		return fmt.Errorf("this ticket may be presented only by %s", c.Redeemer)
	}
	return nil
}
