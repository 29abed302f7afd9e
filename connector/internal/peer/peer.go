// Package peer is the connector's endpoint for other connectors: it accepts and dials connections with
// mutual TLS on SPIFFE SVIDs (ALPN mydata/1) over QUIC and, where UDP is blocked, over TCP with TLS 1.3
// (transport.go), authorises every peer against the directory, drops connections of peers that stop being
// active, and serves the stream protocol.
package peer

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/wire"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Application error codes on QUIC connections.
const (
	CodeNoError quic.ApplicationErrorCode = 0
	CodeRevoked quic.ApplicationErrorCode = 0x10
)

// Config configures the endpoint.
type Config struct {
	// Listen is the QUIC (UDP) address; QUICOff turns QUIC off both ways (no listener, no QUIC dials).
	Listen  string
	QUICOff bool
	// TCPOff turns TLS over TCP off both ways; with it on, TCPListen is the TCP address to serve on
	// (empty: this node only dials by TCP).
	TCPOff    bool
	TCPListen string
	// FallbackDelay is how long a dial waits for a QUIC handshake before it also tries TCP; 300 ms if zero.
	FallbackDelay time.Duration
	// HandshakeTimeout is how long a QUIC handshake may take before it has failed; 10 s if zero.
	HandshakeTimeout time.Duration
	// Now is the clock of the QUIC failure memory; time.Now if nil.
	Now         func() time.Time
	TD          spiffeid.TrustDomain
	SVID        x509svid.Source
	Bundles     x509bundle.Source
	IdleTimeout time.Duration
	// Authorize accepts a peer's ID or says why not; it is asked at every handshake and again for open
	// connections by Recheck.
	Authorize func(spiffeid.ID) error
	// Transfer serves a stream that opened with a ticket frame; nil refuses transfers (an SP-only
	// connector).
	Transfer   func(st Stream, peer spiffeid.ID, ticket string)
	Log        *slog.Logger
	Registerer prometheus.Registerer
}

// Node is a listening endpoint, QUIC or TCP or both.
type Node struct {
	cfg     Config
	ln      *quic.Listener // nil with QUIC off
	tr      *quic.Transport
	tcpLn   net.Listener // nil with TCP off
	metrics *metrics
	memory  *memory

	mu    sync.Mutex
	conns map[*quic.Conn]spiffeid.ID
	// out keeps one outgoing connection per peer for reuse: a QUIC connection carries many streams.
	out map[spiffeid.ID]*quic.Conn
	// tcp are the TLS-over-TCP connections open, both directions: each carries one request.
	tcp map[*tls.Conn]spiffeid.ID
	// attempts are the QUIC dials in flight, one per peer at most (transport.go).
	attempts map[spiffeid.ID]*quicAttempt
}

// Listen binds the QUIC listener.
func Listen(cfg Config) (*Node, error) {
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	if cfg.QUICOff && cfg.TCPOff {
		return nil, errors.New("peer: both transports are off")
	}
	if cfg.FallbackDelay <= 0 {
		cfg.FallbackDelay = DefaultFallbackDelay
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	n := &Node{cfg: cfg, metrics: m, conns: map[*quic.Conn]spiffeid.ID{}, out: map[spiffeid.ID]*quic.Conn{},
		tcp: map[*tls.Conn]spiffeid.ID{}, attempts: map[spiffeid.ID]*quicAttempt{}, memory: newMemory(cfg.Now)}
	m.open = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mydata_connector_quic_connections_open",
		Help: "Open QUIC connections with peers, both directions.",
	}, func() float64 {
		n.mu.Lock()
		defer n.mu.Unlock()
		return float64(len(n.conns))
	})
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(m.open); err != nil {
			return nil, err
		}
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mydata_connector_tcp_connections_open",
			Help: "Open TLS-over-TCP connections with peers, both directions (one per request).",
		}, func() float64 {
			n.mu.Lock()
			defer n.mu.Unlock()
			return float64(len(n.tcp))
		})); err != nil {
			return nil, err
		}
	}
	if !cfg.TCPOff && cfg.TCPListen != "" {
		lc := net.ListenConfig{KeepAliveConfig: n.keepAlive()}
		if n.tcpLn, err = lc.Listen(context.Background(), "tcp", cfg.TCPListen); err != nil {
			return nil, fmt.Errorf("tcp.listen %s: %w", cfg.TCPListen, err)
		}
	}
	if cfg.QUICOff {
		return n, nil
	}
	udpAddr, err := net.ResolveUDPAddr("udp", cfg.Listen)
	if err != nil {
		n.closeTCP()
		return nil, fmt.Errorf("quic.listen %s: %w", cfg.Listen, err)
	}
	udp, err := net.ListenUDP("udp", udpAddr)
	if err != nil {
		n.closeTCP()
		return nil, fmt.Errorf("quic.listen %s: %w", cfg.Listen, err)
	}
	n.tr = &quic.Transport{Conn: udp}
	ln, err := n.tr.Listen(n.serverTLS(n.metrics.handshakes), n.quicConfig())
	if err != nil {
		udp.Close()
		n.closeTCP()
		return nil, err
	}
	n.ln = ln
	return n, nil
}

func (n *Node) closeTCP() {
	if n.tcpLn != nil {
		n.tcpLn.Close()
	}
}

// Addr is the bound UDP address, nil with QUIC off.
func (n *Node) Addr() net.Addr {
	if n.ln == nil {
		return nil
	}
	return n.ln.Addr()
}

// TCPAddr is the bound TCP address, nil if TCP is off or not served.
func (n *Node) TCPAddr() net.Addr {
	if n.tcpLn == nil {
		return nil
	}
	return n.tcpLn.Addr()
}

func (n *Node) quicConfig() *quic.Config {
	return &quic.Config{
		MaxIdleTimeout: n.cfg.IdleTimeout,
		// A connection is closed after IdleTimeout without a packet from the peer, counted from the last
		// packet received or, if later, the first ack-eliciting packet sent after it (RFC 9000 10.1): when a
		// peer dies while we have nothing to send, our first keep-alive restarts the count, so a dead peer
		// is noticed IdleTimeout to 1.2 IdleTimeout after its last packet (10 to 12 s by default). A third
		// of it, as before, gave up to 13.3 s, too near the 15 s an SP has to report a dead DP.
		KeepAlivePeriod:      n.cfg.IdleTimeout / 5,
		HandshakeIdleTimeout: n.cfg.HandshakeTimeout,
		MaxIncomingStreams:   256,
	}
}

// serverTLS authorises clients per handshake; the certificate is taken from the source per handshake too,
// so a renewed SVID is used without a restart.
func (n *Node) serverTLS(handshakes *prometheus.CounterVec) *tls.Config {
	// Connectors, and hub nodes relaying downloads: Authorize says which of either kind are welcome.
	authorize := fedid.Authorizer(n.cfg.TD, fedid.KindUnknown, func(id spiffeid.ID) error {
		p, err := fedid.Parse(id)
		if err != nil {
			return err
		}
		if p.Kind != fedid.KindConnector && p.Kind != fedid.KindHub {
			return fmt.Errorf("%s is a %s, want a connector or a hub node", id, p.Kind)
		}
		return n.cfg.Authorize(id)
	})
	c := tlsconfig.MTLSServerConfig(n.cfg.SVID, n.cfg.Bundles, authorize)
	verify := c.VerifyPeerCertificate
	c.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
		if err := verify(raw, chains); err != nil {
			handshakes.WithLabelValues("in", "refused").Inc()
			n.cfg.Log.Warn("refused a peer", "err", err)
			return err
		}
		return nil
	}
	c.NextProtos = []string{wire.ALPN}
	c.MinVersion = tls.VersionTLS13
	c.SessionTicketsDisabled = true
	return c
}

// clientTLS accepts exactly the peer we meant to reach, and only while it is active.
func (n *Node) clientTLS(want spiffeid.ID) *tls.Config {
	authorize := fedid.Authorizer(n.cfg.TD, fedid.KindConnector, func(id spiffeid.ID) error {
		if id != want {
			return fmt.Errorf("peer presented %s, want %s", id, want)
		}
		return n.cfg.Authorize(id)
	})
	c := tlsconfig.MTLSClientConfig(n.cfg.SVID, n.cfg.Bundles, authorize)
	c.NextProtos = []string{wire.ALPN}
	c.MinVersion = tls.VersionTLS13
	return c
}

// Run accepts connections until ctx ends, then closes them all.
func (n *Node) Run(ctx context.Context) error {
	tcpDone := make(chan error, 1)
	go func() { tcpDone <- n.runTCP(ctx) }()
	go func() {
		<-ctx.Done()
		if n.ln != nil {
			n.ln.Close()
		}
		n.closeTCP()
		n.mu.Lock()
		for c := range n.conns {
			c.CloseWithError(CodeNoError, "shutting down")
		}
		for c := range n.tcp {
			c.Close()
		}
		n.mu.Unlock()
		if n.tr != nil {
			n.tr.Close()
		}
	}()
	if n.ln == nil {
		return <-tcpDone
	}
	for {
		conn, err := n.ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("quic accept: %w", err)
		}
		id, err := peerID(conn)
		if err != nil {
			conn.CloseWithError(CodeRevoked, err.Error())
			continue
		}
		n.metrics.handshakes.WithLabelValues("in", "ok").Inc()
		n.track(conn, id)
		go n.serveConn(ctx, conn, id)
	}
}

func peerID(conn *quic.Conn) (spiffeid.ID, error) {
	certs := conn.ConnectionState().TLS.PeerCertificates
	if len(certs) == 0 {
		return spiffeid.ID{}, errors.New("peer sent no certificate")
	}
	return x509svid.IDFromCert(certs[0])
}

func (n *Node) track(conn *quic.Conn, id spiffeid.ID) {
	n.mu.Lock()
	n.conns[conn] = id
	n.mu.Unlock()
	go func() {
		<-conn.Context().Done()
		n.mu.Lock()
		delete(n.conns, conn)
		if n.out[id] == conn {
			delete(n.out, id)
		}
		n.mu.Unlock()
	}()
}

// Recheck closes connections whose peer is no longer authorised; call it when the directory changes.
func (n *Node) Recheck() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for c, id := range n.conns {
		if err := n.cfg.Authorize(id); err != nil {
			n.cfg.Log.Info("closing connection of a peer no longer authorised", "peer", id.String(), "reason", err)
			c.CloseWithError(CodeRevoked, "peer no longer authorised: "+err.Error())
		}
	}
	for c, id := range n.tcp {
		if err := n.cfg.Authorize(id); err != nil {
			n.cfg.Log.Info("closing TCP connection of a peer no longer authorised", "peer", id.String(), "reason", err)
			c.Close()
		}
	}
}

func (n *Node) serveConn(ctx context.Context, conn *quic.Conn, id spiffeid.ID) {
	for {
		st, err := conn.AcceptStream(ctx)
		if err != nil {
			return
		}
		go n.serveStream(st, id)
	}
}

// serveStream answers one request on a QUIC stream.
func (n *Node) serveStream(st *quic.Stream, id spiffeid.ID) {
	defer st.Close()
	// A request is one frame and we read nothing after it. QUIC frees the stream's slot, so that the peer
	// may open another on this long-lived connection, only once our receiving side is done too: reading
	// the peer's FIN does that, but it may come after the frame (a ping's comes after the pong), and
	// without this the slots of MaxIncomingStreams such requests never come back and the peer can open no
	// more streams.
	defer st.CancelRead(quic.StreamErrorCode(CodeNoError))
	n.serve(quicStream{st}, id)
}

// serve answers the request on st, on either transport.
func (n *Node) serve(st Stream, id spiffeid.ID) {
	st.SetDeadline(time.Now().Add(30 * time.Second))
	f, err := wire.Read(st)
	if err != nil {
		n.cfg.Log.Debug("bad request frame", "peer", id.String(), "err", err)
		writeError(st, "bad request: "+err.Error())
		return
	}
	// The first frame must come quickly; a transfer then runs as long as it keeps moving, which QUIC's idle
	// timeout, or TCP's keep-alives, watch.
	st.SetDeadline(time.Time{})
	switch f.Type {
	case wire.TypePing:
		_ = wire.Write(st, wire.Frame{Type: wire.TypePong, Payload: f.Payload})
	case wire.TypeTicket:
		if n.cfg.Transfer == nil {
			writeError(st, "this connector serves no datasets")
			return
		}
		n.cfg.Transfer(st, id, string(f.Payload))
	default:
		writeError(st, fmt.Sprintf("unexpected frame type 0x%02x", uint8(f.Type)))
	}
}

func writeError(w io.Writer, msg string) {
	if len(msg) > 1024 {
		msg = msg[:1024]
	}
	_ = wire.Write(w, wire.Frame{Type: wire.TypeError, Payload: []byte(msg)})
}

// Dial connects to the connector want at addr.
func (n *Node) Dial(ctx context.Context, addr string, want spiffeid.ID) (*quic.Conn, error) {
	udpAddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	if n.tr == nil {
		return nil, errors.New("QUIC is off (quic.enabled: false)")
	}
	conn, err := n.tr.Dial(ctx, udpAddr, n.clientTLS(want), n.quicConfig())
	if err != nil {
		n.metrics.handshakes.WithLabelValues("out", "error").Inc()
		return nil, fmt.Errorf("dial %s at %s: %w", want, addr, err)
	}
	n.metrics.handshakes.WithLabelValues("out", "ok").Inc()
	n.track(conn, want)
	go n.serveConn(conn.Context(), conn, want)
	return conn, nil
}

// Conn returns the open QUIC connection to want, or dials one.
func (n *Node) Conn(ctx context.Context, addr string, want spiffeid.ID) (*quic.Conn, error) {
	n.mu.Lock()
	c := n.out[want]
	n.mu.Unlock()
	if c != nil && c.Context().Err() == nil {
		return c, nil
	}
	c, err := n.Dial(ctx, addr, want)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	if old := n.out[want]; old != nil && old.Context().Err() == nil {
		// Another caller dialled at the same time; keep one connection.
		n.mu.Unlock()
		c.CloseWithError(CodeNoError, "duplicate")
		return old, nil
	}
	n.out[want] = c
	n.mu.Unlock()
	return c, nil
}

// Ping sends a ping on a new stream of conn and waits for the pong.
func Ping(ctx context.Context, conn Conn) (time.Duration, error) {
	start := time.Now()
	st, err := conn.OpenStream(ctx)
	if err != nil {
		return 0, fmt.Errorf("open stream: %w", err)
	}
	defer st.CancelRead()
	defer st.Close()
	if dl, ok := ctx.Deadline(); ok {
		st.SetDeadline(dl)
	}
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	if err := wire.Write(st, wire.Frame{Type: wire.TypePing, Payload: nonce}); err != nil {
		return 0, err
	}
	f, err := wire.Read(st)
	if err != nil {
		return 0, fmt.Errorf("read pong: %w", err)
	}
	if f.Type == wire.TypeError {
		return 0, fmt.Errorf("peer: %s", f.Payload)
	}
	if f.Type != wire.TypePong || !bytes.Equal(f.Payload, nonce) {
		return 0, errors.New("peer answered the ping with something else")
	}
	return time.Since(start), nil
}
