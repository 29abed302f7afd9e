package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// The raft port carries two protocols between hub nodes, told apart by ALPN in the mutual-TLS handshake:
// raft itself, and the forwarding of writes (and membership changes) from followers to the leader. One
// port, one certificate check, one firewall rule.
const (
	protoRaft    = "mydata-raft/1"
	protoForward = "mydata-forward/1"
)

// handshakeTimeout bounds a peer's TLS handshake on the raft port, so a silent client holds no goroutine.
const handshakeTimeout = 10 * time.Second

// listenStream binds the raft port and starts sorting its connections by protocol. A connection whose
// handshake fails (not a hub of this federation, or not TLS) is closed and never seen by raft.
func listenStream(listen, advertise string, server, client *tls.Config, log *slog.Logger) (*streamLayer, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("raft listen %s: %w", listen, err)
	}
	adv, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil || adv.Port == 0 {
		// Port 0 in tests: advertise what we got.
		adv = ln.Addr().(*net.TCPAddr)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	server = server.Clone()
	server.NextProtos = []string{protoRaft, protoForward}
	s := &streamLayer{
		tcp: ln, server: server, client: client, advertise: adv, log: log,
		raft: newChanListener(ln.Addr()), forward: newChanListener(ln.Addr()),
	}
	go s.acceptLoop()
	return s, nil
}

// streamLayer is raft's transport (raft.StreamLayer) on the shared port.
type streamLayer struct {
	tcp       net.Listener
	server    *tls.Config
	client    *tls.Config
	advertise net.Addr
	log       *slog.Logger
	raft      *chanListener
	forward   *chanListener
}

func (s *streamLayer) acceptLoop() {
	for {
		conn, err := s.tcp.Accept()
		if err != nil {
			s.raft.close(err)
			s.forward.close(err)
			return
		}
		go s.sort(conn)
	}
}

func (s *streamLayer) sort(conn net.Conn) {
	tc := tls.Server(conn, s.server)
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		s.log.Debug("refused a connection on the raft port", "remote", conn.RemoteAddr().String(), "err", err)
		conn.Close()
		return
	}
	var c net.Conn = tc
	l := s.raft
	if tc.ConnectionState().NegotiatedProtocol == protoForward {
		// net/http closes a *tls.Conn whose ALPN protocol is not HTTP's; the peer is already authenticated,
		// so the forwarding server gets the connection as a plain stream.
		var peer spiffeid.ID
		if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
			peer, _ = x509svid.IDFromCert(certs[0])
		}
		l, c = s.forward, plainConn{Conn: tc, peer: peer}
	}
	if !l.deliver(c) {
		c.Close()
	}
}

// Accept hands raft its next connection.
func (s *streamLayer) Accept() (net.Conn, error) { return s.raft.Accept() }

// Close stops the listener; both protocols end.
func (s *streamLayer) Close() error { return s.tcp.Close() }

// Addr is the address other nodes reach this one at.
func (s *streamLayer) Addr() net.Addr { return s.advertise }

// Dial opens a raft connection to another node.
func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.dial(ctx, string(addr), protoRaft)
}

func (s *streamLayer) dial(ctx context.Context, addr, proto string) (*tls.Conn, error) {
	conf := s.client.Clone()
	conf.NextProtos = []string{proto}
	d := &tls.Dialer{NetDialer: &net.Dialer{}, Config: conf}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := conn.(*tls.Conn)
	if got := tc.ConnectionState().NegotiatedProtocol; got != proto {
		tc.Close()
		return nil, fmt.Errorf("hub node %s does not speak %s (it offered %q): is it an older release?", addr, proto, got)
	}
	return tc, nil
}

// chanListener is a net.Listener fed by the sorting loop.
type chanListener struct {
	addr  net.Addr
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
	err   error
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, l.err
	}
}

func (l *chanListener) close(err error) {
	l.once.Do(func() {
		if errors.Is(err, net.ErrClosed) || err == nil {
			err = net.ErrClosed
		}
		l.err = err
		close(l.done)
	})
}

func (l *chanListener) Close() error { l.close(nil); return nil }

func (l *chanListener) Addr() net.Addr { return l.addr }

// plainConn hides a *tls.Conn's type from net/http (see sort), keeping the peer's SPIFFE ID: the handler
// checks it again on every request, since a connection outlives a node's removal.
type plainConn struct {
	net.Conn
	peer spiffeid.ID
}
