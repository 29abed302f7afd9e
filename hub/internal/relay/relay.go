// Package relay is the hub's side of a citizen's download: it presents a download ticket to the data
// provider's connector over QUIC (or TLS over TCP where QUIC does not get through: dial.go), with the hub node's SVID in mutual TLS as any connector would, and hands the
// answer on to the citizen's browser as it arrives. Everything after the DP's header is sealed to a key only
// the browser holds; the relay copies it through one fixed buffer and writes none of it anywhere.
package relay

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/strictjson"
	"github.com/mydatafed/mydata/pkg/ticket"
	"github.com/mydatafed/mydata/pkg/transfer"
	"github.com/mydatafed/mydata/pkg/wire"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// State is what the relay reads of the replicated state: the ticket keys, and the connectors' addresses.
type State interface {
	ticket.KeySet // the hub keys any node signed tickets with
	Connector(org, name string) (*hubapi.Connector, error)
}

// Config wires the relay.
type Config struct {
	TD      spiffeid.TrustDomain
	SVID    x509svid.Source
	Bundles x509bundle.Source
	State   State
	// DialTimeout bounds the QUIC handshake with the DP connector.
	DialTimeout time.Duration
	// IdleTimeout ends a relay whose DP stops sending, as the connectors' QUIC does.
	IdleTimeout time.Duration
	Log         *slog.Logger
	Registerer  prometheus.Registerer
}

// Relay presents download tickets.
type Relay struct {
	cfg     Config
	relays  *prometheus.CounterVec
	bytes   prometheus.Counter
	open    prometheus.Gauge
	nowFunc func() time.Time
}

// New makes a relay.
func New(cfg Config) (*Relay, error) {
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 30 * time.Second
	}
	r := &Relay{cfg: cfg, nowFunc: time.Now,
		relays: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mydata_hub_download_relays_total",
			Help: "Download tickets the hub presented for citizens' browsers, by the DP's answer (ok, not_ready, no_record, refused, unavailable, failed) or error (unreachable, broken).",
		}, []string{"outcome"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mydata_hub_download_relayed_bytes_total",
			Help: "Sealed bytes the hub relayed from data providers to citizens' browsers (it cannot open them).",
		}),
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mydata_hub_download_relays_open",
			Help: "Downloads being relayed now.",
		}),
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{r.relays, r.bytes, r.open} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}

// Errors callers branch on.
var (
	// ErrTicket: the ticket is not a live download ticket of this hub.
	ErrTicket = errors.New("relay: not a live download ticket")
	// ErrUnreachable: the DP connector could not be reached.
	ErrUnreachable = errors.New("relay: the data provider's connector cannot be reached")
)

// Check verifies a download ticket as the DP will: signature, time, mode and that the hub redeems it.
func (r *Relay) Check(token string) (*ticket.Claims, error) {
	c, err := ticket.Verify(token, r.cfg.State, r.nowFunc())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTicket, err)
	}
	if c.Mode != ticket.ModeDownload {
		return nil, fmt.Errorf("%w: not a download ticket", ErrTicket)
	}
	return c, nil
}

// Answer is the DP's answer as it arrives: its header, parsed and as the frame that carried it, then the
// rest of the stream (sealed chunks and trailer) to be copied on.
type Answer struct {
	Header transfer.Header
	// HeaderFrame is the header frame's bytes exactly as the DP sent them.
	HeaderFrame []byte
	// Transport carried it: quic or tcp.
	Transport string
	// DP is the connector that answered: the ticket's dp, or one of its alternates.
	DP      string
	rest    io.Reader
	conn    *peerStream
	r       *Relay
	outcome string
}

// Open presents the ticket c (token) to a DP connector it names and reads the DP's header. A ticket that
// names several connectors (connector HA) goes to the next when one cannot be reached or fails before it
// sends anything; those the state marks down are tried last. Answer.DP says which one answered.
func (r *Relay) Open(ctx context.Context, token string, c *ticket.Claims) (*Answer, error) {
	var up, down []*hubapi.Connector
	for _, s := range c.DPs() {
		dp, err := spiffeid.FromString(s)
		if err != nil {
			return nil, fmt.Errorf("%w: dp %q", ErrTicket, s)
		}
		p, err := fedid.Parse(dp)
		if err != nil || p.Kind != fedid.KindConnector || dp.TrustDomain() != r.cfg.TD {
			return nil, fmt.Errorf("%w: dp %s is not a connector of %s", ErrTicket, dp, r.cfg.TD)
		}
		conn, err := r.cfg.State.Connector(p.Org, p.Name)
		if err != nil {
			return nil, err
		}
		if conn == nil || conn.Status != hubapi.StatusActive || conn.Address == "" {
			continue
		}
		if conn.Down {
			down = append(down, conn)
		} else {
			up = append(up, conn)
		}
	}
	var last error = fmt.Errorf("%w: none of %s is an active connector with an address", ErrUnreachable, strings.Join(c.DPs(), ", "))
	// failed is the first connector that failed before it sent anything, and gave the ticket back: the next
	// may serve it; if none does, its answer is the one to relay.
	var failed *Answer
	for _, conn := range append(up, down...) {
		dp, _ := fedid.Connector(r.cfg.TD, conn.Org, conn.Name)
		a, err := r.openOne(ctx, token, conn, dp)
		switch {
		case err != nil:
			last = err
		case a.Header.Status == transfer.Failed:
			if failed == nil {
				failed = a
			} else {
				_ = a.Close()
			}
		case failed != nil && transfer.IsTaken(a.Header):
			// The connector that failed kept the ticket (it could not give it back): its failure is
			// the answer, not this refusal.
			_ = a.Close()
		default:
			if failed != nil {
				_ = failed.Close()
			}
			return a, nil
		}
	}
	if failed != nil {
		return failed, nil
	}
	return nil, last
}

// openOne presents the ticket to one connector.
func (r *Relay) openOne(ctx context.Context, token string, conn *hubapi.Connector, dp spiffeid.ID) (*Answer, error) {
	dctx, cancel := context.WithTimeout(ctx, r.cfg.DialTimeout)
	defer cancel()
	ps, err := r.dial(dctx, conn, dp)
	if err != nil {
		r.relays.WithLabelValues("unreachable").Inc()
		return nil, fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	a, err := r.present(ctx, ps, token)
	if err != nil {
		_ = ps.close()
		r.relays.WithLabelValues("broken").Inc()
		return nil, err
	}
	a.DP = dp.String()
	r.open.Inc()
	return a, nil
}

func (r *Relay) present(ctx context.Context, st *peerStream, token string) (*Answer, error) {
	// Reads do not watch ctx: cut the stream when it ends before the header has come.
	stop := context.AfterFunc(ctx, func() { _ = st.close() })
	defer stop()
	if err := transfer.WriteTicket(st, token); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	// The DP reads the ticket frame and answers; nothing more goes its way.
	_ = st.closeWrite()
	f, err := wire.Read(st)
	if err != nil {
		return nil, fmt.Errorf("relay: the DP's header: %w", err)
	}
	if f.Type == wire.TypeError {
		return nil, fmt.Errorf("relay: the DP refused the stream: %s", f.Payload)
	}
	if f.Type != wire.TypeHeader {
		return nil, fmt.Errorf("relay: want a header frame, got type 0x%02x", uint8(f.Type))
	}
	var h struct {
		transfer.Header
		Manifest json.RawMessage `json:"manifest,omitempty"`
	}
	if err := strictjson.Unmarshal(f.Payload, 16<<10, &h); err != nil {
		return nil, fmt.Errorf("relay: the DP's header: %w", err)
	}
	frame, err := frameBytes(f)
	if err != nil {
		return nil, err
	}
	return &Answer{Header: h.Header, HeaderFrame: frame, Transport: st.transport, rest: st, conn: st, r: r, outcome: string(h.Status)}, nil
}

func frameBytes(f wire.Frame) ([]byte, error) {
	var b bytesWriter
	if err := wire.Write(&b, f); err != nil {
		return nil, err
	}
	return b, nil
}

type bytesWriter []byte

func (b *bytesWriter) Write(p []byte) (int, error) { *b = append(*b, p...); return len(p), nil }

// CopyTo copies the rest of the DP's answer to w through one 64 KiB buffer, flushing after every write so
// that the browser gets each chunk as it comes and the hub holds none; flush may be nil.
func (a *Answer) CopyTo(w io.Writer, flush func() error) (int64, error) {
	buf := make([]byte, 64<<10)
	var n int64
	for {
		k, rerr := a.rest.Read(buf)
		if k > 0 {
			if _, err := w.Write(buf[:k]); err != nil {
				a.outcome = "broken"
				return n, err
			}
			n += int64(k)
			a.r.bytes.Add(float64(k))
			if flush != nil {
				if err := flush(); err != nil {
					a.outcome = "broken"
					return n, err
				}
			}
		}
		if errors.Is(rerr, io.EOF) {
			return n, nil
		}
		if rerr != nil {
			a.outcome = "broken"
			return n, rerr
		}
	}
}

// Close ends the relay and counts its outcome.
func (a *Answer) Close() error {
	a.r.open.Dec()
	a.r.relays.WithLabelValues(a.outcome).Inc()
	return a.conn.close()
}

// clientTLS accepts exactly the DP connector the ticket names.
func (r *Relay) clientTLS(want spiffeid.ID) *tls.Config {
	authorize := fedid.Authorizer(r.cfg.TD, fedid.KindConnector, func(id spiffeid.ID) error {
		if id != want {
			return fmt.Errorf("peer presented %s, want %s", id, want)
		}
		return nil
	})
	c := tlsconfig.MTLSClientConfig(r.cfg.SVID, r.cfg.Bundles, authorize)
	c.NextProtos = []string{wire.ALPN}
	c.MinVersion = tls.VersionTLS13
	return c
}
