package peer

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/spiffetest"
	"github.com/quic-go/quic-go"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// startIdleNode is startNode with the idle timeout given.
func startIdleNode(t *testing.T, ca *spiffetest.CA, id string, idle time.Duration) *node {
	t.Helper()
	svid := ca.SVID(t, id, time.Hour)
	n := &node{id: svid.ID, src: ca.NewSource(svid), allow: &allowList{allowed: map[spiffeid.ID]bool{}}}
	var err error
	n.Node, err = Listen(Config{Listen: "127.0.0.1:0", TD: spiffeid.RequireTrustDomainFromString("mydata.test"), SVID: n.src, Bundles: n.src, IdleTimeout: idle,
		Authorize: n.allow.authorize, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return n
}

// TestIdleTimeout: a connection with nothing to carry stays open past the idle timeout, kept alive by
// keep-alives; a peer that goes silent, as a killed process does (its socket closed without a word), is
// dropped by the idle timeout.
func TestIdleTimeout(t *testing.T) {
	const idle = time.Second
	ca := spiffetest.New(t, "mydata.test")
	a := startIdleNode(t, ca, "spiffe://mydata.test/org/moi/connector/a", idle)
	b := startIdleNode(t, ca, "spiffe://mydata.test/org/moi/connector/b", idle)
	a.allow.set(b.id, true)
	b.allow.set(a.id, true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := a.Conn(ctx, b.Addr().String(), b.id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Ping(ctx, QUIC(conn)); err != nil {
		t.Fatal(err)
	}

	time.Sleep(4 * idle)
	if err := conn.Context().Err(); err != nil {
		t.Fatalf("a quiet connection to a live peer was closed after 4 idle timeouts: %v", context.Cause(conn.Context()))
	}
	if _, err := Ping(ctx, QUIC(conn)); err != nil {
		t.Fatalf("ping on the kept connection: %v", err)
	}

	// b dies: its socket goes away without a CONNECTION_CLOSE.
	b.tr.Conn.Close()
	start := time.Now()
	select {
	case <-conn.Context().Done():
	case <-ctx.Done():
		t.Fatal("the connection to a dead peer is still open after 30 s")
	}
	var ie *quic.IdleTimeoutError
	if err := context.Cause(conn.Context()); !errors.As(err, &ie) {
		t.Fatalf("closed by %v, want the idle timeout", err)
	}
	t.Logf("the connection to the dead peer closed %s after its socket did (idle timeout %s)", time.Since(start).Round(time.Millisecond), idle)
}
