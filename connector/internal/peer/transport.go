package peer

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/mydatafed/mydata/pkg/wire"
	"github.com/quic-go/quic-go"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Transports, as metrics and the audit name them.
const (
	TransportQUIC = "quic"
	TransportTCP  = "tcp"
)

const (
	// DefaultFallbackDelay is how long a dial waits for a QUIC handshake before it also tries TCP: Chrome
	// waits 300 ms for a server it knows nothing of (libp2p 250 ms, curl 200 ms).
	DefaultFallbackDelay = 300 * time.Millisecond
	// TCPFirstFor is how long a peer whose QUIC handshake failed is dialled by TCP first; each further
	// failure in a row doubles it, up to MaxTCPFirst (Chrome's "broken alternative service" rule).
	TCPFirstFor = 5 * time.Minute
	MaxTCPFirst = 48 * time.Hour
	// quicAttemptTimeout bounds a QUIC dial that runs on after its caller went to TCP; the handshake
	// timeout (Config.HandshakeTimeout) ends a black-holed one first.
	quicAttemptTimeout = 30 * time.Second
	// tcpHandshakeTimeout bounds an incoming TLS handshake over TCP.
	tcpHandshakeTimeout = 10 * time.Second
	// tcpLinger is how long a served TCP connection waits for the peer to finish before it is closed.
	tcpLinger = 5 * time.Second
)

// Stream carries one request and its answer: a QUIC stream, or a whole TLS-over-TCP connection.
type Stream interface {
	io.ReadWriter
	// Close ends our sending side: the peer reads EOF after what we wrote.
	Close() error
	// CancelRead says we read no more. With the sending side closed too the stream is done; for TCP it
	// closes the connection.
	CancelRead()
	SetDeadline(time.Time) error
	// Transport is TransportQUIC or TransportTCP.
	Transport() string
}

// Conn is an authenticated connection to a peer connector on which requests open streams. Over QUIC it is
// one long-lived connection; over TCP each stream is a connection of its own, the first one made by the
// dial that chose the transport.
type Conn interface {
	OpenStream(ctx context.Context) (Stream, error)
	Transport() string
	Close() error
}

// QUIC wraps an established QUIC connection as a Conn.
func QUIC(c *quic.Conn) Conn { return quicConn{c} }

type quicConn struct{ c *quic.Conn }

func (q quicConn) OpenStream(ctx context.Context) (Stream, error) {
	st, err := q.c.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return quicStream{st}, nil
}

func (q quicConn) Transport() string { return TransportQUIC }
func (q quicConn) Close() error      { return q.c.CloseWithError(CodeNoError, "done") }

type quicStream struct{ s *quic.Stream }

func (q quicStream) Read(p []byte) (int, error)    { return q.s.Read(p) }
func (q quicStream) Write(p []byte) (int, error)   { return q.s.Write(p) }
func (q quicStream) Close() error                  { return q.s.Close() }
func (q quicStream) CancelRead()                   { q.s.CancelRead(quic.StreamErrorCode(CodeNoError)) }
func (q quicStream) SetDeadline(t time.Time) error { return q.s.SetDeadline(t) }
func (q quicStream) Transport() string             { return TransportQUIC }

// tcpStream is one TLS-over-TCP connection carrying one request. One connection per request rather than
// streams multiplexed on one connection: TCP's own flow control then paces each transfer (a multiplexer's
// per-stream window caps a transfer at window/RTT, yamux's default 256 KiB gives 26 MB/s at 10 ms), a
// stalled transfer cannot hold up another behind it in one byte stream, and the cost, a TLS 1.3 handshake
// per transfer, is small beside a transfer (docs/protocol.md has the measurement).
type tcpStream struct {
	n    *Node
	c    *tls.Conn
	once sync.Once
}

func (s *tcpStream) Read(p []byte) (int, error) { return s.c.Read(p) }

// Write sends p in TLS records, all of them with one write to the socket where the connection batches
// (batchConn): a 64 KiB chunk frame is five records, and a write each was five trips through the TCP stack.
func (s *tcpStream) Write(p []byte) (int, error) {
	bc, ok := s.c.NetConn().(*batchConn)
	if !ok {
		return s.c.Write(p)
	}
	bc.start()
	n, err := s.c.Write(p)
	if ferr := bc.flush(); err == nil && ferr != nil {
		// tls.Conn took the records as written; none of them may have reached the peer.
		n, err = 0, ferr
	}
	return n, err
}

func (s *tcpStream) SetDeadline(t time.Time) error { return s.c.SetDeadline(t) }
func (s *tcpStream) Transport() string             { return TransportTCP }

// Close sends TLS close_notify and a TCP FIN: the peer reads EOF, and may still send.
func (s *tcpStream) Close() error {
	err := s.c.CloseWrite()
	if tc := tcpConnOf(s.c); tc != nil {
		_ = tc.CloseWrite()
	}
	return err
}

// tcpConnOf returns the TCP socket under c, or nil.
func tcpConnOf(c *tls.Conn) *net.TCPConn {
	raw := c.NetConn()
	if bc, ok := raw.(*batchConn); ok {
		raw = bc.Conn
	}
	tc, _ := raw.(*net.TCPConn)
	return tc
}

// batchConn is the socket under a TCP stream's TLS. Between start and flush it holds what TLS writes and
// flush sends it with one write; at other times (the handshake, close_notify, anything TLS writes on its
// own) it writes through. The mutex keeps the socket's bytes in the order TLS wrote them, should TLS write
// from a Read (a KeyUpdate answer) while a stream's Write is being flushed. Reads go through a read-ahead
// buffer: TLS asks the socket for about one record at a time, four reads per chunk frame.
type batchConn struct {
	net.Conn
	mu       sync.Mutex
	batching bool
	buf      []byte
	r        *bufio.Reader // made on the first read; only TLS reads, one read at a time
}

const (
	// batchMax bounds what a batch holds: a chunk frame in TLS records, with room to spare. A larger Write
	// goes out in several socket writes of about this size.
	batchMax = 256 << 10
	// readAhead is the most one socket read takes: two chunk frames in TLS records.
	readAhead = 128 << 10
)

func (b *batchConn) Read(p []byte) (int, error) {
	if b.r == nil {
		b.r = bufio.NewReaderSize(b.Conn, readAhead)
	}
	return b.r.Read(p)
}

func (b *batchConn) start() {
	b.mu.Lock()
	b.batching = true
	b.mu.Unlock()
}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.batching {
		return b.Conn.Write(p)
	}
	if len(b.buf)+len(p) > batchMax && len(b.buf) > 0 {
		if err := b.writeLocked(); err != nil {
			return 0, err
		}
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// flush sends what the batch holds and ends it.
func (b *batchConn) flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.batching = false
	return b.writeLocked()
}

func (b *batchConn) writeLocked() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.Conn.Write(b.buf)
	b.buf = b.buf[:0]
	return err
}

func (s *tcpStream) CancelRead() {
	s.once.Do(func() {
		s.n.untrackTCP(s.c)
		s.c.Close()
	})
}

// tcpConn is a Conn over TCP: it holds the connection its dial made, for the first stream, and makes a
// new one for each further stream.
type tcpConn struct {
	n     *Node
	addr  string
	want  spiffeid.ID
	mu    sync.Mutex
	first *tls.Conn
}

func (c *tcpConn) OpenStream(ctx context.Context) (Stream, error) {
	c.mu.Lock()
	tc := c.first
	c.first = nil
	c.mu.Unlock()
	if tc == nil {
		var err error
		if tc, err = c.n.dialTCP(ctx, c.addr, c.want); err != nil {
			return nil, err
		}
	}
	return &tcpStream{n: c.n, c: tc}, nil
}

func (c *tcpConn) Transport() string { return TransportTCP }

func (c *tcpConn) Close() error {
	c.mu.Lock()
	tc := c.first
	c.first = nil
	c.mu.Unlock()
	if tc != nil {
		c.n.untrackTCP(tc)
		return tc.Close()
	}
	return nil
}

// keepAlive has TCP notice a silent peer in about the QUIC idle timeout, as QUIC would: probes start after
// a fifth of it without traffic and go every fifth, four unanswered ones end the connection.
func (n *Node) keepAlive() net.KeepAliveConfig {
	every := max(n.idleTimeout()/5, time.Second)
	return net.KeepAliveConfig{Enable: true, Idle: every, Interval: every, Count: 4}
}

func (n *Node) idleTimeout() time.Duration {
	if n.cfg.IdleTimeout <= 0 {
		return 10 * time.Second
	}
	return n.cfg.IdleTimeout
}

// watch has a TCP connection ended after the idle timeout without an acknowledgement of what we sent,
// where the kernel supports it (tcp_linux.go), as QUIC's idle timeout would.
func (n *Node) watch(c net.Conn) {
	if err := userTimeoutConn(c, n.idleTimeout()); err != nil {
		n.cfg.Log.Debug("TCP_USER_TIMEOUT", "err", err)
	}
}

func (n *Node) trackTCP(c *tls.Conn, id spiffeid.ID) {
	n.mu.Lock()
	n.tcp[c] = id
	n.mu.Unlock()
}

func (n *Node) untrackTCP(c *tls.Conn) {
	n.mu.Lock()
	delete(n.tcp, c)
	n.mu.Unlock()
}

// runTCP accepts TLS-over-TCP connections until ctx ends; with TCP off it just waits.
func (n *Node) runTCP(ctx context.Context) error {
	if n.tcpLn == nil {
		<-ctx.Done()
		return nil
	}
	for {
		raw, err := n.tcpLn.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: wait rather than spin or stop serving.
			n.cfg.Log.Warn("tcp accept", "err", err)
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		go n.serveTCP(ctx, raw)
	}
}

// serveTCP authenticates a peer on a TCP connection and answers its one request.
func (n *Node) serveTCP(ctx context.Context, raw net.Conn) {
	n.watch(raw)
	c := tls.Server(&batchConn{Conn: raw}, n.serverTLS(n.metrics.tcpHandshakes))
	hctx, cancel := context.WithTimeout(ctx, tcpHandshakeTimeout)
	err := c.HandshakeContext(hctx)
	cancel()
	if err != nil {
		n.cfg.Log.Debug("tcp handshake failed", "remote", raw.RemoteAddr().String(), "err", err)
		raw.Close()
		return
	}
	cs := c.ConnectionState()
	if cs.NegotiatedProtocol != wire.ALPN || len(cs.PeerCertificates) == 0 {
		n.metrics.tcpHandshakes.WithLabelValues("in", "refused").Inc()
		c.Close()
		return
	}
	id, err := x509svid.IDFromCert(cs.PeerCertificates[0])
	if err != nil {
		n.metrics.tcpHandshakes.WithLabelValues("in", "refused").Inc()
		c.Close()
		return
	}
	n.metrics.tcpHandshakes.WithLabelValues("in", "ok").Inc()
	n.trackTCP(c, id)
	st := &tcpStream{n: n, c: c}
	n.serve(st, id)
	// Close only once the peer is done too: closing a TCP socket with unread bytes in it (the peer's own
	// close_notify, say) sends a reset, which may destroy our last bytes before the peer reads them.
	st.Close()
	_ = c.SetReadDeadline(time.Now().Add(tcpLinger))
	_, _ = io.Copy(io.Discard, c)
	st.CancelRead()
}

// dialTCP makes one authenticated TLS-over-TCP connection to want.
func (n *Node) dialTCP(ctx context.Context, addr string, want spiffeid.ID) (*tls.Conn, error) {
	if n.cfg.TCPOff {
		return nil, errors.New("TCP is off (tcp.enabled: false)")
	}
	d := net.Dialer{KeepAliveConfig: n.keepAlive()}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		n.metrics.tcpHandshakes.WithLabelValues("out", "error").Inc()
		return nil, fmt.Errorf("dial %s at tcp %s: %w", want, addr, err)
	}
	n.watch(raw)
	c := tls.Client(&batchConn{Conn: raw}, n.clientTLS(want))
	if err := c.HandshakeContext(ctx); err != nil {
		raw.Close()
		n.metrics.tcpHandshakes.WithLabelValues("out", "error").Inc()
		return nil, fmt.Errorf("dial %s at tcp %s: %w", want, addr, err)
	}
	if p := c.ConnectionState().NegotiatedProtocol; p != wire.ALPN {
		c.Close()
		n.metrics.tcpHandshakes.WithLabelValues("out", "error").Inc()
		return nil, fmt.Errorf("dial %s at tcp %s: ALPN %q, want %q", want, addr, p, wire.ALPN)
	}
	n.metrics.tcpHandshakes.WithLabelValues("out", "ok").Inc()
	n.trackTCP(c, want)
	return c, nil
}

func (n *Node) connectTCP(ctx context.Context, addr string, want spiffeid.ID) (Conn, error) {
	tc, err := n.dialTCP(ctx, addr, want)
	if err != nil {
		return nil, err
	}
	return &tcpConn{n: n, addr: addr, want: want, first: tc}, nil
}

// Addrs are where a peer listens, as the directory publishes them; either may be empty.
type Addrs struct {
	QUIC string
	TCP  string
}

// Connect returns a connection to want: the open QUIC connection if there is one, else the first of a QUIC
// dial and, FallbackDelay later, a TCP dial. A peer whose QUIC handshake failed lately is dialled by TCP at
// once while QUIC is tried again in the background; once a QUIC dial succeeds the peer is reached by QUIC
// again.
func (n *Node) Connect(ctx context.Context, addrs Addrs, want spiffeid.ID) (Conn, error) {
	n.mu.Lock()
	c := n.out[want]
	n.mu.Unlock()
	if c != nil && c.Context().Err() == nil {
		return QUIC(c), nil
	}
	quicOK := n.tr != nil && addrs.QUIC != ""
	tcpOK := !n.cfg.TCPOff && addrs.TCP != ""
	switch {
	case !quicOK && !tcpOK:
		return nil, fmt.Errorf("dial %s: no transport in common: the directory has QUIC address %q and TCP address %q, here QUIC is %s and TCP %s",
			want, addrs.QUIC, addrs.TCP, onOff(n.tr != nil), onOff(!n.cfg.TCPOff))
	case !tcpOK:
		qc, err := n.Conn(ctx, addrs.QUIC, want)
		if err != nil {
			return nil, err
		}
		return QUIC(qc), nil
	case !quicOK:
		return n.connectTCP(ctx, addrs.TCP, want)
	}

	a := n.attemptQUIC(addrs.QUIC, want)
	if n.memory.tcpFirst(want) {
		n.metrics.fallbacks.WithLabelValues("memory").Inc()
		tc, err := n.connectTCP(ctx, addrs.TCP, want)
		if err == nil {
			return tc, nil
		}
		return a.wait(ctx, err)
	}
	// A QUIC dial already in flight for another caller has used some of the delay.
	wait := time.NewTimer(n.cfg.FallbackDelay - time.Since(a.started))
	defer wait.Stop()
	select {
	case <-a.done:
		if a.err == nil {
			return QUIC(a.conn), nil
		}
		n.metrics.fallbacks.WithLabelValues("quic_failed").Inc()
		tc, err := n.connectTCP(ctx, addrs.TCP, want)
		if err != nil {
			return nil, errors.Join(a.err, err)
		}
		return tc, nil
	case <-wait.C:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	type result struct {
		c   Conn
		err error
	}
	tcpc := make(chan result, 1)
	go func() {
		c, err := n.connectTCP(ctx, addrs.TCP, want)
		tcpc <- result{c, err}
	}()
	select {
	case <-a.done:
		if a.err == nil {
			go func() {
				if r := <-tcpc; r.err == nil {
					r.c.Close()
				}
			}()
			return QUIC(a.conn), nil
		}
		r := <-tcpc
		if r.err != nil {
			return nil, errors.Join(a.err, r.err)
		}
		n.metrics.fallbacks.WithLabelValues("quic_failed").Inc()
		return r.c, nil
	case r := <-tcpc:
		if r.err == nil {
			n.metrics.fallbacks.WithLabelValues("race").Inc()
			return r.c, nil
		}
		return a.wait(ctx, r.err)
	}
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// quicAttempt is a QUIC dial that outlives the Connect that started it: when TCP wins the race, or a peer
// is dialled by TCP first, it goes on in the background and its outcome decides how the peer is dialled
// next.
type quicAttempt struct {
	addr    string
	started time.Time
	done    chan struct{}
	conn    *quic.Conn
	err     error
}

func (a *quicAttempt) wait(ctx context.Context, tcpErr error) (Conn, error) {
	select {
	case <-a.done:
		if a.err == nil {
			return QUIC(a.conn), nil
		}
		return nil, errors.Join(a.err, tcpErr)
	case <-ctx.Done():
		return nil, errors.Join(ctx.Err(), tcpErr)
	}
}

// attemptQUIC starts a QUIC dial to want, or returns the one in flight. A dial that succeeds becomes the
// peer's cached connection and clears the memory of failures; one that fails while the peer was not
// already dialled by TCP first makes it so, for TCPFirstFor doubled by each failure in a row. A dial made
// while the peer is dialled by TCP first is a background probe and its failure extends nothing.
func (n *Node) attemptQUIC(addr string, want spiffeid.ID) *quicAttempt {
	n.mu.Lock()
	defer n.mu.Unlock()
	// One attempted at an address the peer has since left (the directory changed) says nothing of the new.
	if a := n.attempts[want]; a != nil && a.addr == addr {
		return a
	}
	a := &quicAttempt{addr: addr, started: time.Now(), done: make(chan struct{})}
	n.attempts[want] = a
	probe := n.memory.tcpFirst(want)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), quicAttemptTimeout)
		defer cancel()
		a.conn, a.err = n.Conn(ctx, addr, want)
		switch {
		case a.err == nil:
			if probe {
				n.cfg.Log.Info("QUIC works again with a peer dialled by TCP first", "peer", want.String())
			}
			n.memory.worked(want)
		case !probe:
			d := n.memory.failed(want)
			n.cfg.Log.Warn("QUIC handshake failed: dialling the peer by TCP first", "peer", want.String(), "for", d, "err", a.err)
		}
		n.mu.Lock()
		if n.attempts[want] == a {
			delete(n.attempts, want)
		}
		n.mu.Unlock()
		close(a.done)
	}()
	return a
}

// memory remembers the peers whose QUIC handshake failed, to dial them by TCP first for a while.
type memory struct {
	now   func() time.Time
	mu    sync.Mutex
	peers map[spiffeid.ID]*quicFailures
}

type quicFailures struct {
	n     int       // failures in a row
	until time.Time // dial by TCP first until then
}

func newMemory(now func() time.Time) *memory {
	return &memory{now: now, peers: map[spiffeid.ID]*quicFailures{}}
}

// tcpFirst says whether id is to be dialled by TCP first now.
func (m *memory) tcpFirst(id spiffeid.ID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.peers[id]
	return f != nil && m.now().Before(f.until)
}

// failed records a failed QUIC handshake with id and says for how long it is dialled by TCP first.
func (m *memory) failed(id spiffeid.ID) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.peers[id]
	if f == nil {
		f = &quicFailures{}
		m.peers[id] = f
	}
	f.n++
	d := TCPFirstFor
	for i := 1; i < f.n && d < MaxTCPFirst; i++ {
		d *= 2
	}
	d = min(d, MaxTCPFirst)
	f.until = m.now().Add(d)
	return d
}

// worked forgets id's failures.
func (m *memory) worked(id spiffeid.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.peers, id)
}
