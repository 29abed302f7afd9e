package peer

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/spiffetest"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// allowList is an Authorize func whose answers a test can change.
type allowList struct {
	mu      sync.Mutex
	allowed map[spiffeid.ID]bool
}

func (a *allowList) set(id spiffeid.ID, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.allowed[id] = ok
}

func (a *allowList) authorize(id spiffeid.ID) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.allowed[id] {
		return errors.New(id.String() + " is not allowed")
	}
	return nil
}

type node struct {
	*Node
	id    spiffeid.ID
	src   *spiffetest.Source
	allow *allowList
}

func startNode(t *testing.T, ca *spiffetest.CA, id string) *node {
	t.Helper()
	svid := ca.SVID(t, id, time.Hour)
	n := &node{id: svid.ID, src: ca.NewSource(svid), allow: &allowList{allowed: map[spiffeid.ID]bool{}}}
	var err error
	n.Node, err = Listen(Config{Listen: "127.0.0.1:0", TD: spiffeid.RequireTrustDomainFromString("mydata.test"), SVID: n.src, Bundles: n.src, IdleTimeout: 10 * time.Second,
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

func TestDialAndPing(t *testing.T) {
	ca := spiffetest.New(t, "mydata.test")
	a := startNode(t, ca, "spiffe://mydata.test/org/moi/connector/a")
	b := startNode(t, ca, "spiffe://mydata.test/org/moi/connector/b")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	tests := []struct {
		name           string
		aAllowsB       bool
		bAllowsA       bool
		want           spiffeid.ID
		wantErr        string
		wantRefusedByB bool
	}{
		{"both allow", true, true, b.id, "", false},
		{"dialer refuses the server", false, true, b.id, "is not allowed", false},
		{"server refuses the dialer", true, false, b.id, "", true},
		{"server is not who we meant", true, true, spiffeid.RequireFromString("spiffe://mydata.test/org/moi/connector/c"), "want spiffe://mydata.test/org/moi/connector/c", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a.allow.set(b.id, tt.aAllowsB)
			b.allow.set(a.id, tt.bAllowsA)
			conn, err := a.Dial(ctx, b.Addr().String(), tt.want)
			if err == nil {
				_, err = Ping(ctx, QUIC(conn))
			}
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
			case tt.wantRefusedByB:
				if err == nil {
					t.Fatal("the server served a peer it refuses")
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestRecheckClosesRevokedPeers(t *testing.T) {
	ca := spiffetest.New(t, "mydata.test")
	a := startNode(t, ca, "spiffe://mydata.test/org/moi/connector/a")
	b := startNode(t, ca, "spiffe://mydata.test/org/moi/connector/b")
	a.allow.set(b.id, true)
	b.allow.set(a.id, true)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := a.Dial(ctx, b.Addr().String(), b.id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Ping(ctx, QUIC(conn)); err != nil {
		t.Fatal(err)
	}
	b.allow.set(a.id, false)
	b.Recheck()
	select {
	case <-conn.Context().Done():
	case <-ctx.Done():
		t.Fatal("the connection of a revoked peer stayed open")
	}
}

func TestRotationKeepsConnection(t *testing.T) {
	ca := spiffetest.New(t, "mydata.test")
	a := startNode(t, ca, "spiffe://mydata.test/org/moi/connector/a")
	b := startNode(t, ca, "spiffe://mydata.test/org/moi/connector/b")
	a.allow.set(b.id, true)
	b.allow.set(a.id, true)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := a.Dial(ctx, b.Addr().String(), b.id)
	if err != nil {
		t.Fatal(err)
	}
	first := conn.ConnectionState().TLS.PeerCertificates[0].SerialNumber
	b.src.Set(ca.SVID(t, b.id.String(), time.Hour))
	if _, err := Ping(ctx, QUIC(conn)); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	conn2, err := a.Dial(ctx, b.Addr().String(), b.id)
	if err != nil {
		t.Fatal(err)
	}
	if conn2.ConnectionState().TLS.PeerCertificates[0].SerialNumber.Cmp(first) == 0 {
		t.Fatal("a new connection got the old certificate")
	}
}

func TestForeignTrustDomain(t *testing.T) {
	ca := spiffetest.New(t, "mydata.test")
	evil := spiffetest.New(t, "evil.test")
	a := startNode(t, evil, "spiffe://evil.test/org/moi/connector/a")
	b := startNode(t, ca, "spiffe://mydata.test/org/moi/connector/b")
	a.allow.set(b.id, true)
	b.allow.set(spiffeid.RequireFromString("spiffe://evil.test/org/moi/connector/a"), true) // even if authorised by name
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := a.Dial(ctx, b.Addr().String(), b.id)
	if err == nil {
		_, err = Ping(ctx, QUIC(conn))
	}
	if err == nil {
		t.Fatal("a peer of another trust domain was served")
	}
}

// A connection between two connectors lives long and carries every transfer between them, so a served
// stream must give its slot back: QUIC lets the peer open a new stream only in place of a completed one,
// and a stream whose peer closed it after the request (as Ping does, after the pong) completes only once
// the server has done with its receiving side. Many more requests than MaxIncomingStreams must go through.
func TestServedStreamsAreReleased(t *testing.T) {
	ca := spiffetest.New(t, "mydata.test")
	a := startNode(t, ca, "spiffe://mydata.test/org/moi/connector/a")
	b := startNode(t, ca, "spiffe://mydata.test/org/moi/connector/b")
	a.allow.set(b.id, true)
	b.allow.set(a.id, true)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := a.Dial(ctx, b.Addr().String(), b.id)
	if err != nil {
		t.Fatal(err)
	}
	limit := b.quicConfig().MaxIncomingStreams
	for i := range 2*limit + 10 {
		if _, err := Ping(ctx, QUIC(conn)); err != nil {
			t.Fatalf("ping %d on one connection (the server allows %d streams at once): %v", i+1, limit, err)
		}
	}
}
