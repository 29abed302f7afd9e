package peer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/spiffetest"
	"github.com/mydatafed/mydata/pkg/wire"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// startNodeWith is startNode with TCP served on a loopback port and the config changed by edit.
func startNodeWith(t testing.TB, ca *spiffetest.CA, id string, edit func(*Config)) *node {
	t.Helper()
	svid := ca.SVID(t, id, time.Hour)
	n := &node{id: svid.ID, src: ca.NewSource(svid), allow: &allowList{allowed: map[spiffeid.ID]bool{}}}
	cfg := Config{Listen: "127.0.0.1:0", TCPListen: "127.0.0.1:0", TD: spiffeid.RequireTrustDomainFromString("mydata.test"), SVID: n.src, Bundles: n.src,
		IdleTimeout: 10 * time.Second, Authorize: n.allow.authorize, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if edit != nil {
		edit(&cfg)
	}
	var err error
	if n.Node, err = Listen(cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return n
}

// blackHole is a UDP socket that reads every datagram and answers none: a QUIC address whose packets a
// firewall drops.
func blackHole(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := c.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return c.LocalAddr().String()
}

func pair(t testing.TB, ca *spiffetest.CA, editB func(*Config)) (a, b *node) {
	// A black-holed QUIC handshake fails sooner than the default 10 s, for a shorter test.
	a = startNodeWith(t, ca, "spiffe://mydata.test/org/moi/connector/a", func(c *Config) { c.HandshakeTimeout = 2 * time.Second })
	b = startNodeWith(t, ca, "spiffe://mydata.test/org/moi/connector/b", editB)
	a.allow.set(b.id, true)
	b.allow.set(a.id, true)
	return a, b
}

// TestTCPPing: a node reached by TCP alone answers, with the same mutual authorisation as over QUIC.
func TestTCPPing(t *testing.T) {
	ca := spiffetest.New(t, "mydata.test")
	a, b := pair(t, ca, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tcpOnly := Addrs{TCP: b.TCPAddr().String()}

	conn, err := a.Connect(ctx, tcpOnly, b.id)
	if err != nil {
		t.Fatal(err)
	}
	if conn.Transport() != TransportTCP {
		t.Fatalf("transport %s, want tcp", conn.Transport())
	}
	for i := range 3 { // the first stream uses the dial's connection, the others their own
		if _, err := Ping(ctx, conn); err != nil {
			t.Fatalf("ping %d over TCP: %v", i, err)
		}
	}
	if _, err := a.Connect(ctx, tcpOnly, spiffeid.RequireFromString("spiffe://mydata.test/org/moi/connector/c")); err == nil ||
		!strings.Contains(err.Error(), "want spiffe://mydata.test/org/moi/connector/c") {
		t.Fatalf("a TCP peer that is not who we meant: err = %v", err)
	}
	b.allow.set(a.id, false)
	if conn, err := a.Connect(ctx, tcpOnly, b.id); err == nil {
		if _, err := Ping(ctx, conn); err == nil {
			t.Fatal("a TCP server served a peer it refuses")
		}
	}
}

// TestTransferOverTCP: streams served over TCP arrive whole (the server closes only once the client is done,
// so no reset cuts the end off), several at once, and the served stream says it is TCP.
func TestTransferOverTCP(t *testing.T) {
	const size = 8 << 20
	payload := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	var mu sync.Mutex
	var served []string
	ca := spiffetest.New(t, "mydata.test")
	a, b := pair(t, ca, func(c *Config) {
		c.Transfer = func(st Stream, _ spiffeid.ID, ticket string) {
			mu.Lock()
			served = append(served, st.Transport()+" "+ticket)
			mu.Unlock()
			st.Write(payload)
			st.Close()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := a.Connect(ctx, Addrs{TCP: b.TCPAddr().String()}, b.id)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(payload)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := conn.OpenStream(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			defer st.CancelRead()
			if err := wire.Write(st, wire.Frame{Type: wire.TypeTicket, Payload: []byte{'t', byte('0' + i)}}); err != nil {
				t.Error(err)
				return
			}
			st.Close()
			h := sha256.New()
			n, err := io.Copy(h, st)
			if err != nil || n != size || !bytes.Equal(h.Sum(nil), want[:]) {
				t.Errorf("transfer %d: %d bytes, err %v, want %d bytes whole", i, n, err, size)
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(served) != 4 || !strings.HasPrefix(served[0], "tcp t") {
		t.Errorf("served %q, want 4 tcp transfers", served)
	}
}

// TestRaceFallsBackToTCP: a peer whose QUIC packets vanish is reached by TCP after the fallback delay; once
// the QUIC attempt has failed the peer is dialled by TCP first; when QUIC answers again a background attempt
// finds it and the next dial is QUIC.
func TestRaceFallsBackToTCP(t *testing.T) {
	ca := spiffetest.New(t, "mydata.test")
	a, b := pair(t, ca, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	blocked := Addrs{QUIC: blackHole(t), TCP: b.TCPAddr().String()}

	start := time.Now()
	conn, err := a.Connect(ctx, blocked, b.id)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("QUIC black-holed: connected over %s in %s", conn.Transport(), took)
	if conn.Transport() != TransportTCP {
		t.Fatalf("transport %s, want tcp", conn.Transport())
	}
	if took < DefaultFallbackDelay {
		t.Errorf("went to TCP after %s, before the fallback delay %s", took, DefaultFallbackDelay)
	}
	if _, err := Ping(ctx, conn); err != nil {
		t.Fatal(err)
	}

	// The QUIC attempt goes on in the background until quic-go's handshake timeout fails it.
	a.mu.Lock()
	attempt := a.attempts[b.id]
	a.mu.Unlock()
	if attempt != nil {
		<-attempt.done
	}
	if !a.memory.tcpFirst(b.id) {
		t.Fatal("after a failed QUIC handshake the peer is not dialled by TCP first")
	}
	start = time.Now()
	if conn, err = a.Connect(ctx, blocked, b.id); err != nil || conn.Transport() != TransportTCP {
		t.Fatalf("dial of a peer whose QUIC failed: %v, %v", conn, err)
	}
	t.Logf("QUIC remembered as failed: connected over TCP in %s", time.Since(start))

	// QUIC comes back: a dial still goes by TCP, and its background QUIC attempt succeeds.
	fixed := Addrs{QUIC: b.Addr().String(), TCP: b.TCPAddr().String()}
	for a.memory.tcpFirst(b.id) {
		if conn, err = a.Connect(ctx, fixed, b.id); err != nil {
			t.Fatal(err)
		}
		if _, err := Ping(ctx, conn); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatal("QUIC was not found to work again")
		case <-time.After(50 * time.Millisecond):
		}
	}
	if conn, err = a.Connect(ctx, fixed, b.id); err != nil || conn.Transport() != TransportQUIC {
		t.Fatalf("once QUIC works again: %v, %v, want QUIC", conn, err)
	}
	if _, err := Ping(ctx, conn); err != nil {
		t.Fatal(err)
	}
}

// TestRaceQUICWins: with both transports answering, QUIC is used and no TCP connection is left open.
func TestRaceQUICWins(t *testing.T) {
	ca := spiffetest.New(t, "mydata.test")
	a, b := pair(t, ca, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := a.Connect(ctx, Addrs{QUIC: b.Addr().String(), TCP: b.TCPAddr().String()}, b.id)
	if err != nil || conn.Transport() != TransportQUIC {
		t.Fatalf("%v, %v, want QUIC", conn, err)
	}
	if _, err := Ping(ctx, conn); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.tcp) != 0 {
		t.Errorf("%d TCP connections open after a QUIC dial", len(a.tcp))
	}
}

// TestTransportsOff: a node with QUIC off listens and dials by TCP only; one with TCP off by QUIC only; both
// off is refused.
func TestTransportsOff(t *testing.T) {
	ca := spiffetest.New(t, "mydata.test")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a := startNodeWith(t, ca, "spiffe://mydata.test/org/moi/connector/a", func(c *Config) { c.QUICOff = true })
	b := startNodeWith(t, ca, "spiffe://mydata.test/org/moi/connector/b", nil)
	a.allow.set(b.id, true)
	b.allow.set(a.id, true)
	if a.Addr() != nil {
		t.Errorf("QUIC off, yet a UDP address %s", a.Addr())
	}
	conn, err := a.Connect(ctx, Addrs{QUIC: b.Addr().String(), TCP: b.TCPAddr().String()}, b.id)
	if err != nil || conn.Transport() != TransportTCP {
		t.Fatalf("QUIC off: %v, %v, want TCP", conn, err)
	}
	if _, err := Ping(ctx, conn); err != nil {
		t.Fatal(err)
	}
	c := startNodeWith(t, ca, "spiffe://mydata.test/org/moi/connector/c", func(c *Config) { c.TCPOff = true })
	c.allow.set(b.id, true)
	b.allow.set(c.id, true)
	if c.TCPAddr() != nil {
		t.Errorf("TCP off, yet a TCP address %s", c.TCPAddr())
	}
	if _, err := c.Connect(ctx, Addrs{TCP: b.TCPAddr().String()}, b.id); err == nil || !strings.Contains(err.Error(), "no transport in common") {
		t.Fatalf("TCP off, peer with TCP only: err = %v", err)
	}
	if conn, err = c.Connect(ctx, Addrs{QUIC: b.Addr().String(), TCP: b.TCPAddr().String()}, b.id); err != nil || conn.Transport() != TransportQUIC {
		t.Fatalf("TCP off: %v, %v, want QUIC", conn, err)
	}
	if _, err := Listen(Config{QUICOff: true, TCPOff: true}); err == nil {
		t.Error("a node with both transports off was made")
	}
}

// TestMemoryBackoff: a peer whose QUIC failed is dialled by TCP first for 5 minutes, then 10, 20, ... for
// failures in a row, at most MaxTCPFirst; a success forgets it all.
func TestMemoryBackoff(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := newMemory(func() time.Time { return now })
	id := spiffeid.RequireFromString("spiffe://mydata.test/org/moi/connector/b")
	other := spiffeid.RequireFromString("spiffe://mydata.test/org/moi/connector/c")
	if m.tcpFirst(id) {
		t.Fatal("a peer never tried is dialled by TCP first")
	}
	for i, want := range []time.Duration{5 * time.Minute, 10 * time.Minute, 20 * time.Minute, 40 * time.Minute} {
		if got := m.failed(id); got != want {
			t.Fatalf("failure %d: TCP first for %s, want %s", i+1, got, want)
		}
		now = now.Add(want - time.Second)
		if !m.tcpFirst(id) || m.tcpFirst(other) {
			t.Fatalf("failure %d: a second before the end: tcpFirst = %v (other peer %v)", i+1, m.tcpFirst(id), m.tcpFirst(other))
		}
		now = now.Add(time.Second)
		if m.tcpFirst(id) {
			t.Fatalf("failure %d: still TCP first after %s", i+1, want)
		}
	}
	for range 30 {
		m.failed(id)
	}
	if got := m.failed(id); got != MaxTCPFirst {
		t.Errorf("after many failures: %s, want the cap %s", got, MaxTCPFirst)
	}
	m.worked(id)
	if m.tcpFirst(id) {
		t.Error("still TCP first after QUIC worked")
	}
	if got := m.failed(id); got != TCPFirstFor {
		t.Errorf("first failure after a success: %s, want %s", got, TCPFirstFor)
	}
}

// BenchmarkPing measures a request's fixed cost on each transport: over QUIC a new stream on the kept
// connection, over TCP a new TLS 1.3 connection (TCP handshake, TLS handshake with both SVIDs verified),
// which is what one connection per transfer costs.
func BenchmarkPing(b *testing.B) {
	ca := spiffetest.New(b, "mydata.test")
	for _, transport := range []string{TransportQUIC, TransportTCP} {
		b.Run(transport, func(b *testing.B) {
			x, y := pair(b, ca, nil)
			ctx := context.Background()
			addrs := Addrs{QUIC: y.Addr().String()}
			if transport == TransportTCP {
				addrs = Addrs{TCP: y.TCPAddr().String()}
			}
			conn, err := x.Connect(ctx, addrs, y.id)
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if _, err := Ping(ctx, conn); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
