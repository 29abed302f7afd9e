package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/wire"
	"github.com/quic-go/quic-go"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// fallbackDelay is how long the relay waits for a QUIC handshake before it also dials the DP's TCP address,
// as connectors do (docs/protocol.md section 3). The relay dials afresh for each download and keeps no
// memory of peers whose QUIC failed.
const fallbackDelay = 300 * time.Millisecond

// peerStream is the one request to a DP: a QUIC stream on a connection of its own, or a TLS-over-TCP
// connection.
type peerStream struct {
	io.ReadWriter
	transport string
	// closeWrite ends what we send; close ends it all.
	closeWrite func() error
	close      func() error
}

// dial reaches the DP connector c by QUIC or, if no QUIC handshake completes within fallbackDelay and c has
// a TCP address, by TLS over TCP, whichever completes first.
func (r *Relay) dial(ctx context.Context, c *hubapi.Connector, dp spiffeid.ID) (*peerStream, error) {
	type result struct {
		s   *peerStream
		err error
	}
	quicc := make(chan result, 1)
	go func() {
		s, err := r.dialQUIC(ctx, c.Address, dp)
		quicc <- result{s, err}
	}()
	if c.TCPAddress == "" {
		res := <-quicc
		return res.s, res.err
	}
	// The loser, if it ever connects, is closed.
	discard := func(ch chan result) {
		if ch != nil {
			go func() {
				if res := <-ch; res.err == nil {
					res.s.close()
				}
			}()
		}
	}
	var errs []error
	wait := time.NewTimer(fallbackDelay)
	defer wait.Stop()
	select {
	case res := <-quicc:
		if res.err == nil {
			return res.s, nil
		}
		errs, quicc = append(errs, res.err), nil
	case <-wait.C:
	}
	tcpc := make(chan result, 1)
	go func() {
		s, err := r.dialTCP(ctx, c.TCPAddress, dp)
		tcpc <- result{s, err}
	}()
	for quicc != nil || tcpc != nil {
		select {
		case res := <-quicc:
			quicc = nil
			if res.err == nil {
				discard(tcpc)
				return res.s, nil
			}
			errs = append(errs, res.err)
		case res := <-tcpc:
			tcpc = nil
			if res.err == nil {
				discard(quicc)
				return res.s, nil
			}
			errs = append(errs, res.err)
		}
	}
	return nil, errors.Join(errs...)
}

func (r *Relay) dialQUIC(ctx context.Context, addr string, dp spiffeid.ID) (*peerStream, error) {
	qc, err := quic.DialAddr(ctx, addr, r.clientTLS(dp), &quic.Config{
		MaxIdleTimeout: r.cfg.IdleTimeout, KeepAlivePeriod: r.cfg.IdleTimeout / 3, HandshakeIdleTimeout: r.cfg.DialTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("quic %s: %w", addr, err)
	}
	st, err := qc.OpenStreamSync(ctx)
	if err != nil {
		_ = qc.CloseWithError(0, "")
		return nil, fmt.Errorf("quic %s: %w", addr, err)
	}
	return &peerStream{ReadWriter: st, transport: "quic", closeWrite: st.Close,
		close: func() error { return qc.CloseWithError(0, "") }}, nil
}

func (r *Relay) dialTCP(ctx context.Context, addr string, dp spiffeid.ID) (*peerStream, error) {
	// Keep-alives notice a silent DP in about the idle timeout, as QUIC's would.
	every := max(r.cfg.IdleTimeout/5, time.Second)
	d := net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: every, Interval: every, Count: 4}}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("tcp %s: %w", addr, err)
	}
	tc := tls.Client(raw, r.clientTLS(dp))
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("tcp %s: %w", addr, err)
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != wire.ALPN {
		tc.Close()
		return nil, fmt.Errorf("tcp %s: ALPN %q, want %q", addr, p, wire.ALPN)
	}
	return &peerStream{ReadWriter: tc, transport: "tcp", close: tc.Close,
		closeWrite: func() error {
			err := tc.CloseWrite()
			if t, ok := raw.(*net.TCPConn); ok {
				_ = t.CloseWrite()
			}
			return err
		}}, nil
}
