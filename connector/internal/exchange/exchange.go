// Package exchange is the service provider's side of the online mode: the connector's local API takes an
// authorization code from the SP's web application, redeems it at the hub over mTLS, fetches every dataset
// from its data provider's connector in parallel over QUIC, verifies each, and reports per dataset:
// delivered, no record, pending (retry after), unavailable or failed. One dataset failing never fails the
// others. Results stay a short while and are then dropped: in memory up to a threshold each, larger ones in
// a file sealed under a key held only in memory (spill.go).
package exchange

import (
	"context"
	"crypto/hpke"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/mydatafed/mydata/connector/internal/peer"
	"github.com/mydatafed/mydata/connector/internal/receipts"
	"github.com/mydatafed/mydata/pkg/audit"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/nationalid"
	"github.com/mydatafed/mydata/pkg/seal"
	"github.com/mydatafed/mydata/pkg/transfer"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Dataset statuses in an exchange.
const (
	StatusFetching    = "fetching"
	StatusDelivered   = "delivered"
	StatusNoRecord    = "no_record"
	StatusPending     = "pending"
	StatusUnavailable = "unavailable"
	StatusFailed      = "failed"
)

// Config wires the manager.
type Config struct {
	Hub  *hubapi.Client
	Node *peer.Node
	// TCPAddress is the DP's TCP address in the directory ("" if it has none); the hub's redeemed ticket
	// carries only its QUIC address. Nil: TCP is not tried.
	TCPAddress func(dp spiffeid.ID) string
	// Down says the directory marks dp down (no hub node has heard from it lately); a dataset's other
	// connectors are tried first. Nil: none is.
	Down     func(dp spiffeid.ID) bool
	Bundles  x509bundle.Source
	Audit    *audit.Log
	AuditKey []byte
	Receipts *receipts.Outbox
	MaxBytes int64
	// Keep is how long a finished exchange's results stay available.
	Keep time.Duration
	// SpillDir, if set, is where POST /v1/exchanges keeps results larger than SpillThreshold bytes, sealed
	// (spill.go); the spill files in it are removed at start. Empty: every result is kept in memory.
	SpillDir       string
	SpillThreshold int64
	// HubKeys lists the hub's published keys (from the directory), for sealing login hints.
	HubKeys    func() []hubapi.HubKey
	Log        *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Manager runs exchanges.
type Manager struct {
	cfg     Config
	mu      sync.Mutex
	byID    map[string]*Exchange
	metrics *metrics

	// signers remembers the DP chains already verified.
	signers *transfer.Signers

	keyMu    sync.Mutex
	key      hpke.PrivateKey
	keyBytes []byte
	keyUntil time.Time
}

// recipientKeyLife is how long one recipient key serves new exchanges. A key exists only in memory and
// only while exchanges that use it run, so content sealed to it cannot be opened once it is gone; a
// fresh key per exchange cost a hybrid key generation each (about 2 % of a small exchange's CPU).
const recipientKeyLife = time.Minute

// recipientKey returns the HPKE key new exchanges ask their data to be sealed to, and its public bytes.
func (m *Manager) recipientKey() (hpke.PrivateKey, []byte, error) {
	m.keyMu.Lock()
	defer m.keyMu.Unlock()
	if now := m.cfg.Now(); m.key == nil || !now.Before(m.keyUntil) {
		key, err := seal.GenerateKey(seal.KEMHybrid)
		if err != nil {
			return nil, nil, err
		}
		m.key, m.keyBytes, m.keyUntil = key, key.PublicKey().Bytes(), now.Add(recipientKeyLife)
	}
	return m.key, m.keyBytes, nil
}

// New makes a manager.
func New(cfg Config) (*Manager, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	if cfg.SpillDir != "" {
		n, err := cleanSpillDir(cfg.SpillDir)
		if err != nil {
			return nil, fmt.Errorf("exchange spill directory: %w", err)
		}
		if n > 0 {
			cfg.Log.Info("removed spill files left by an earlier process (their keys died with it)", "files", n)
		}
	}
	return &Manager{cfg: cfg, byID: map[string]*Exchange{}, metrics: m, signers: transfer.NewSigners()}, nil
}

// Exchange is one redeemed consent and its datasets.
type Exchange struct {
	ID          string     `json:"id"`
	ConsentID   string     `json:"consent_id"`
	Service     string     `json:"service"`
	AAL         int        `json:"assurance_level"`
	LoginMethod string     `json:"login_method"`
	State       string     `json:"state"` // in_progress or complete
	Created     time.Time  `json:"created_at"`
	Datasets    []*Dataset `json:"datasets"`

	mu      sync.Mutex
	changed chan struct{}
	subject string
	settled time.Time
	// purged: content is overwritten as it arrives (Purge).
	purged bool
	// spill: results larger than the threshold go to a spill file (POST /v1/exchanges).
	spill bool
}

// Dataset is one dataset's result.
type Dataset struct {
	Dataset     string `json:"dataset"`
	DP          string `json:"dp,omitempty"`
	Status      string `json:"status"`
	Reason      string `json:"reason,omitempty"`
	RetryAfter  int    `json:"retry_after,omitempty"`
	ContentType string `json:"content_type,omitempty"`
	Size        int64  `json:"size,omitempty"`
	SHA256      string `json:"sha256,omitempty"`
	Verified    bool   `json:"verified"`
	Content     []byte `json:"content,omitempty"`
	// ContentURL is where a result too large to be held in memory is read (GET, with the API's bearer
	// token), once; Content is then empty.
	ContentURL string    `json:"content_url,omitempty"`
	UpdatedAt  time.Time `json:"updated_at"`

	ticket hubapi.RedeemedTicket
	// transport carried the last attempt (peer.TransportQUIC or TransportTCP), "" before a connection.
	transport string
	// file holds the content when ContentURL is set; read is set once it has been read and removed.
	file *spillFile
	read bool
}

// Request is what the SP's application sends: the code and PKCE verifier from its redirect.
type Request struct {
	ClientID     string `json:"client_id,omitempty"`
	Code         string `json:"code"`
	CodeVerifier string `json:"code_verifier"`
	RedirectURI  string `json:"redirect_uri"`
}

func newID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

// Redeemer asks the hub for tickets whose content the data providers seal to pub, a public key of the
// KEM kem. An error it returns comes back to the caller of Collect unchanged.
type Redeemer func(ctx context.Context, kem uint16, pub []byte) (*hubapi.RedeemResponse, error)

// redeem trades the code for tickets, naming the current recipient key.
func (m *Manager) redeem(ctx context.Context, req Request) (*Exchange, hpke.PrivateKey, error) {
	if req.Code == "" || req.CodeVerifier == "" || req.RedirectURI == "" {
		return nil, nil, &apiError{http.StatusBadRequest, "code, code_verifier and redirect_uri are required"}
	}
	ex, key, err := m.open(ctx, func(ctx context.Context, kem uint16, pub []byte) (*hubapi.RedeemResponse, error) {
		var resp hubapi.RedeemResponse
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		err := m.cfg.Hub.Do(rctx, http.MethodPost, hubapi.PathRedeem, hubapi.RedeemRequest{
			ClientID: req.ClientID, Code: req.Code, CodeVerifier: req.CodeVerifier, RedirectURI: req.RedirectURI,
			RecipientKEM: kem, RecipientKey: pub,
		}, &resp)
		if err != nil {
			var he *hubapi.Error
			if errors.As(err, &he) && he.Status < 500 {
				m.metrics.exchanges.WithLabelValues("refused").Inc()
				msg := he.Message
				if he.Description != "" {
					msg += ": " + he.Description
				}
				return nil, &apiError{he.Status, "the hub refused the code: " + msg}
			}
			m.metrics.exchanges.WithLabelValues("hub_unreachable").Inc()
			return nil, &apiError{http.StatusBadGateway, "the hub could not be reached: " + err.Error()}
		}
		return &resp, nil
	})
	if err != nil {
		return nil, nil, err
	}
	m.mu.Lock()
	m.byID[ex.ID] = ex
	m.mu.Unlock()
	m.metrics.exchanges.WithLabelValues("redeemed").Inc()
	return ex, key, nil
}

// open redeems through redeem with the current recipient key and makes the exchange, its datasets not yet
// fetched. The exchange is registered nowhere: the caller decides who may see it.
func (m *Manager) open(ctx context.Context, redeem Redeemer) (*Exchange, hpke.PrivateKey, error) {
	key, pub, err := m.recipientKey()
	if err != nil {
		return nil, nil, err
	}
	resp, err := redeem(ctx, seal.KEMHybrid, pub)
	if err != nil {
		return nil, nil, err
	}
	ex := &Exchange{ID: newID(), ConsentID: resp.ConsentID, Service: resp.Service, AAL: resp.AAL, LoginMethod: resp.LoginMethod,
		State: "in_progress", Created: m.cfg.Now().UTC(), changed: make(chan struct{})}
	if nationalid.Valid(resp.Subject) == nil {
		ex.subject = resp.Subject
	}
	for _, t := range resp.Tickets {
		ex.Datasets = append(ex.Datasets, &Dataset{Dataset: t.Dataset, DP: t.DP, Status: StatusFetching, ContentType: t.ContentType, ticket: t, UpdatedAt: ex.Created})
	}
	for _, u := range resp.Unavailable {
		ex.Datasets = append(ex.Datasets, &Dataset{Dataset: u.Dataset, Status: StatusUnavailable, Reason: u.Reason, UpdatedAt: ex.Created})
	}
	return ex, key, nil
}

// Collect redeems through redeem and fetches every dataset into memory, as POST /v1/exchanges does, with
// the same retries, checks, audit entries and receipts; it returns once no dataset is still being fetched
// for the first time (ctx bounds that wait). Pending datasets go on being fetched under bg, which the
// caller cancels when it no longer wants them. The exchange is the caller's alone: the local API does not
// list it and Run does not drop it, so the caller must Purge it.
func (m *Manager) Collect(ctx, bg context.Context, redeem Redeemer) (*Exchange, error) {
	ex, key, err := m.open(ctx, redeem)
	if err != nil {
		return nil, err
	}
	for _, d := range ex.Datasets {
		if d.Status == StatusFetching {
			go m.fetch(bg, ex, d, key, nil)
		}
	}
	ex.waitSettled(ctx)
	return ex, nil
}

// Purge overwrites the content the exchange holds and drops it; content that arrives later is overwritten
// on arrival. What stays is the metadata: datasets, statuses, sizes.
func (ex *Exchange) Purge() {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	ex.purged = true
	for _, d := range ex.Datasets {
		clear(d.Content)
		d.Content = nil
		d.dropFile()
	}
}

// dropFile removes the dataset's spill file, if it has one.
func (d *Dataset) dropFile() {
	if d.file != nil {
		_ = d.file.remove()
		d.file, d.ContentURL = nil, ""
	}
}

// consumed removes the spill file f, whose content has been read in full.
func (ex *Exchange) consumed(f *spillFile) {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	for _, d := range ex.Datasets {
		if d.file == f {
			d.dropFile()
			d.read = true
		}
	}
	_ = f.remove()
}

// HeldBytes is the size of the content the exchange holds in memory.
func (ex *Exchange) HeldBytes() int64 {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	var n int64
	for _, d := range ex.Datasets {
		n += int64(len(d.Content))
	}
	return n
}

// Start redeems the code and fetches every dataset; it returns once each dataset is delivered, settled
// otherwise, or pending, and keeps retrying pending ones in the background.
func (m *Manager) Start(ctx context.Context, req Request) (*Exchange, error) {
	ex, key, err := m.redeem(ctx, req)
	if err != nil {
		return nil, err
	}
	ex.spill = true
	for _, d := range ex.Datasets {
		if d.Status == StatusFetching {
			go m.fetch(context.Background(), ex, d, key, nil)
		}
	}
	ex.waitSettled(ctx)
	return ex, nil
}

// waitSettled waits until no dataset is still being fetched for the first time.
func (ex *Exchange) waitSettled(ctx context.Context) {
	for {
		ex.mu.Lock()
		busy := false
		for _, d := range ex.Datasets {
			if d.Status == StatusFetching {
				busy = true
			}
		}
		ch := ex.changed
		ex.mu.Unlock()
		if !busy {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

// set updates a dataset and wakes waiters.
func (ex *Exchange) set(d *Dataset, fn func(*Dataset)) {
	ex.mu.Lock()
	fn(d)
	if ex.purged {
		clear(d.Content)
		d.Content = nil
		d.dropFile()
	}
	d.UpdatedAt = time.Now().UTC()
	done := true
	for _, x := range ex.Datasets {
		if x.Status == StatusFetching || x.Status == StatusPending {
			done = false
		}
	}
	if done && ex.State != "complete" {
		ex.State, ex.settled = "complete", time.Now()
	}
	close(ex.changed)
	ex.changed = make(chan struct{})
	ex.mu.Unlock()
}

// Snapshot copies the exchange for a reader.
func (ex *Exchange) Snapshot() *Exchange {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	c := &Exchange{ID: ex.ID, ConsentID: ex.ConsentID, Service: ex.Service, AAL: ex.AAL, LoginMethod: ex.LoginMethod, State: ex.State, Created: ex.Created}
	for _, d := range ex.Datasets {
		dc := *d
		c.Datasets = append(c.Datasets, &dc)
	}
	return c
}

// Get finds an exchange.
func (m *Manager) Get(id string) (*Exchange, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ex, ok := m.byID[id]
	return ex, ok
}

// fetch gets one dataset, retrying "not ready" within the ticket's life, and a data provider it cannot
// reach a few times, since a consent spent on a passing network fault is lost to the citizen. A dataset
// served by several connectors (connector HA) goes to the next one when one cannot be reached or fails
// before it sends anything. With sink set, content goes there as it arrives (streaming) instead of into
// memory.
func (m *Manager) fetch(parent context.Context, ex *Exchange, d *Dataset, key hpke.PrivateKey, sink io.Writer) {
	t := d.ticket
	ctx, cancel := context.WithDeadline(parent, t.ExpiresAt.Add(30*time.Second))
	defer cancel()
	cands, err := m.candidates(t)
	if err != nil {
		m.finish(ex, d, StatusFailed, "the hub named an invalid data provider", 0)
		return
	}
	cur, unreachable, failed := 0, 0, 0
	dp := cands[0]
	// next moves to the next candidate; false after a whole round.
	next := func() bool {
		cur = (cur + 1) % len(cands)
		dp = cands[cur]
		return cur != 0
	}
	for {
		var buf wipingBuffer
		var spill *spillWriter
		held := io.Writer(&buf)
		if ex.spill && m.cfg.SpillDir != "" && sink == nil {
			spill = &spillWriter{dir: m.cfg.SpillDir, threshold: m.cfg.SpillThreshold}
			held = spill
		}
		dst := io.Writer(&limitedWriter{w: held, n: m.cfg.MaxBytes})
		if sink != nil {
			dst = sink
		}
		var transport string
		res, err := m.fetchOnce(ctx, t, dp, key, dst, &transport)
		ex.set(d, func(d *Dataset) {
			d.DP = dp.id.String()
			if transport != "" {
				d.transport = transport
			}
		})
		if err != nil || res.Header.Status != transfer.OK {
			clear(buf.b) // part of a delivery that failed
			if spill != nil {
				spill.abort()
			}
		}
		var ue *unreachableError
		if errors.As(err, &ue) {
			// Nothing reached the sink: another of the dataset's connectors may serve it at once.
			if len(cands) > 1 && next() {
				m.metrics.failovers.Inc()
				continue
			}
			if unreachable < 3 && sink == nil {
				unreachable++
				select {
				case <-time.After(time.Duration(unreachable) * time.Second):
					continue
				case <-ctx.Done():
				}
			}
		}
		if err == nil && res.Header.Status == transfer.Failed && failed < len(cands)-1 {
			// The connector failed before it sent anything (its agency's system, say) and gave the ticket
			// back: the next one may serve it.
			failed++
			next()
			m.metrics.failovers.Inc()
			m.cfg.Log.Info("data provider failed, trying the dataset's next connector", "ticket", t.TicketID, "failed", res.Header.Message, "next", dp.id)
			continue
		}
		if err != nil {
			m.finish(ex, d, StatusFailed, err.Error(), 0)
			return
		}
		h := res.Header
		switch h.Status {
		case transfer.OK:
			content := buf.b
			var file *spillFile
			if spill != nil {
				if content, file, err = spill.finish(); err != nil {
					m.cfg.Log.Error("keep a delivery", "ticket", t.TicketID, "err", err)
					m.finish(ex, d, StatusFailed, "the connector could not keep the delivery", 0)
					return
				}
				if file != nil {
					m.metrics.spills.Inc()
					m.metrics.spilled.Add(float64(file.sealed))
					file.onRemove = func() { m.metrics.spilled.Sub(float64(file.sealed)) }
				}
			}
			if sink != nil {
				content = nil
			}
			ex.set(d, func(d *Dataset) {
				d.ContentType, d.Size, d.SHA256, d.Verified, d.Content = h.Manifest.ContentType, res.Size, hex.EncodeToString(res.SHA256), true, content
				if file != nil {
					d.file, d.ContentURL = file, ContentPath(ex.ID, d.Dataset)
				}
			})
			m.finish(ex, d, StatusDelivered, "", res.Size)
			return
		case transfer.NoRecord:
			m.finish(ex, d, StatusNoRecord, h.Message, 0)
			return
		case transfer.NotReady:
			retry := time.Duration(max(h.RetryAfter, 1)) * time.Second
			if time.Now().Add(retry).After(t.ExpiresAt) {
				m.finish(ex, d, StatusFailed, "the agency did not answer within the ticket's life", 0)
				return
			}
			ex.set(d, func(d *Dataset) { d.Status, d.RetryAfter, d.Reason = StatusPending, h.RetryAfter, h.Message })
			m.metrics.datasets.WithLabelValues(StatusPending, transport).Inc()
			select {
			case <-time.After(retry):
			case <-ctx.Done():
				m.finish(ex, d, StatusFailed, "the ticket expired while the agency was not ready", 0)
				return
			}
		default:
			m.finish(ex, d, StatusFailed, fmt.Sprintf("data provider answered %s: %s", h.Status, h.Message), 0)
			return
		}
	}
}

// candidate is a connector that may serve a ticket.
type candidate struct {
	id   spiffeid.ID
	addr string
}

// candidates are the ticket's connectors in the order to try them: as the hub listed them, those the
// directory marks down last.
func (m *Manager) candidates(t hubapi.RedeemedTicket) ([]candidate, error) {
	all := append([]hubapi.TicketDP{{DP: t.DP, Address: t.Address}}, t.Alternates...)
	var up, down []candidate
	for _, c := range all {
		id, err := spiffeid.FromString(c.DP)
		if err != nil {
			return nil, err
		}
		if m.cfg.Down != nil && m.cfg.Down(id) {
			down = append(down, candidate{id, c.Address})
		} else {
			up = append(up, candidate{id, c.Address})
		}
	}
	return append(up, down...), nil
}

// fetchOnce sets *transport to the transport of the connection it got.
func (m *Manager) fetchOnce(ctx context.Context, t hubapi.RedeemedTicket, c candidate, key hpke.PrivateKey, dst io.Writer, transport *string) (*transfer.Result, error) {
	dp := c.id
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	addrs := peer.Addrs{QUIC: c.addr}
	if m.cfg.TCPAddress != nil {
		addrs.TCP = m.cfg.TCPAddress(dp)
	}
	conn, err := m.cfg.Node.Connect(dctx, addrs, dp)
	cancel()
	if err != nil {
		return nil, &unreachableError{err}
	}
	*transport = conn.Transport()
	st, err := conn.OpenStream(ctx)
	if err != nil {
		return nil, &unreachableError{err}
	}
	defer st.CancelRead()
	// Reads on the stream do not watch ctx: without this a transfer outlives its ticket's deadline and a
	// streaming client that went away. A DP that dies is the transport's to notice (quic.idle_timeout,
	// TCP keep-alives).
	stop := context.AfterFunc(ctx, st.CancelRead)
	defer stop()
	if err := transfer.WriteTicket(st, t.Ticket); err != nil {
		return nil, fmt.Errorf("send ticket: %v", err)
	}
	st.Close() // we have said all we will say on this stream
	in := &countingReader{r: st}
	res, err := transfer.Receive(in, dst, transfer.Expect{TicketID: t.TicketID, Dataset: t.Dataset, DP: dp, MaxSize: m.cfg.MaxBytes, Bundles: m.cfg.Bundles, Signers: m.signers}, key)
	if err != nil && in.n == 0 {
		// Not a byte came back: the connector went away (a connection to a dead peer looks alive until
		// its idle timeout). It may not have read the ticket; another connector may serve it.
		return nil, &unreachableError{fmt.Errorf("no answer: %v", err)}
	}
	if err != nil {
		return nil, fmt.Errorf("delivery rejected: %v", err)
	}
	return res, nil
}

// countingReader counts what it reads.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// finish settles a dataset and records it: audit log and receipt.
func (m *Manager) finish(ex *Exchange, d *Dataset, status, reason string, size int64) {
	ex.set(d, func(d *Dataset) {
		d.Status, d.Reason = status, reason
		if status != StatusPending {
			d.RetryAfter = 0
		}
	})
	ex.mu.Lock()
	transport := d.transport
	ex.mu.Unlock()
	m.metrics.datasets.WithLabelValues(status, transport).Inc()
	if status == StatusDelivered {
		m.metrics.bytes.Add(float64(size))
	}
	outcome := map[string]string{StatusDelivered: audit.OutcomeDelivered, StatusNoRecord: audit.OutcomeNoRecord, StatusFailed: audit.OutcomeFailed}[status]
	ctx := context.Background()
	e := audit.Entry{Time: m.cfg.Now(), Role: audit.RoleSP, Dataset: d.Dataset, Counterpart: d.DP, ConsentID: ex.ConsentID,
		TicketID: d.ticket.TicketID, Bytes: size, Outcome: outcome, Detail: audit.CleanDetail(audit.WithTransport(reason, transport))}
	if ex.subject != "" {
		e.Subject = audit.SubjectHash(m.cfg.AuditKey, ex.subject)
	}
	if _, err := m.cfg.Audit.Append(ctx, e); err != nil {
		m.cfg.Log.Error("audit append failed", "ticket", e.TicketID, "err", err)
	}
	if err := m.cfg.Receipts.Add(ctx, hubapi.ReceiptRequest{TicketID: d.ticket.TicketID, ConsentID: ex.ConsentID, Dataset: d.Dataset,
		Role: hubapi.RoleReceiver, Counterpart: d.DP, Outcome: outcome, Bytes: size, At: e.Time}); err != nil {
		m.cfg.Log.Error("queue receipt failed", "ticket", e.TicketID, "err", err)
	}
}

// ContentPath is the local API's path of a dataset's content.
func ContentPath(exchangeID, dataset string) string {
	return "/v1/exchanges/" + url.PathEscape(exchangeID) + "/datasets/" + url.PathEscape(dataset) + "/content"
}

// Run drops finished exchanges after Keep, so results do not linger in the connector; their spill files
// go with them, and every spill file goes when ctx ends, since their keys do.
func (m *Manager) Run(ctx context.Context) error {
	t := time.NewTicker(min(m.cfg.Keep, time.Minute))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			m.mu.Lock()
			for _, ex := range m.byID {
				ex.Purge()
			}
			m.mu.Unlock()
			return nil
		case <-t.C:
		}
		m.drop()
	}
}

// drop forgets the exchanges that are done with, overwriting their content and removing their files.
func (m *Manager) drop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, ex := range m.byID {
		ex.mu.Lock()
		old := ex.State == "complete" && time.Since(ex.settled) > m.cfg.Keep || time.Since(ex.Created) > 2*time.Hour
		ex.mu.Unlock()
		if old {
			delete(m.byID, id)
			ex.Purge()
		}
	}
}

// limitedWriter refuses to buffer more than n bytes.
type limitedWriter struct {
	w io.Writer
	n int64
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		return 0, transfer.ErrTooLarge
	}
	l.n -= int64(len(p))
	return l.w.Write(p)
}

// wipingBuffer collects content and overwrites each backing array it outgrows, so that the only copy of
// the plaintext it leaves is the one it hands over, which Purge can overwrite.
type wipingBuffer struct{ b []byte }

func (w *wipingBuffer) Write(p []byte) (int, error) {
	if need := len(w.b) + len(p); need > cap(w.b) {
		nb := make([]byte, len(w.b), max(need, 2*cap(w.b), 4096))
		copy(nb, w.b)
		clear(w.b[:cap(w.b)])
		w.b = nb
	}
	w.b = append(w.b, p...)
	return len(p), nil
}

// unreachableError is a data provider that could not be reached: nothing was presented, so trying again
// cannot spend the ticket twice.
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return "data provider unreachable: " + e.err.Error() }

type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }
