package relay

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/spiffetest"
	"github.com/mydatafed/mydata/pkg/ticket"
	"github.com/mydatafed/mydata/pkg/transfer"
	"github.com/mydatafed/mydata/pkg/wire"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// TestOpenFallsBackToTCP: a DP connector whose QUIC packets vanish is reached over its TCP address after
// the fallback delay, with the same mutual TLS and ALPN, and its answer is relayed.
func TestOpenFallsBackToTCP(t *testing.T) {
	ca := spiffetest.New(t, "mydata.test")
	dpSrc := ca.NewSource(ca.SVID(t, "spiffe://mydata.test/org/moi/connector/dp1", time.Hour))
	hubSrc := ca.NewSource(ca.SVID(t, "spiffe://mydata.test/hub/hub-1", time.Hour))

	tcpAddr := tcpDP(t, dpSrc, transfer.NoRecord, "nothing here")
	hole := blackHole(t)

	st, signer := newState(t, map[string]*hubapi.Connector{
		"moi/dp1": {Org: "moi", Name: "dp1", Status: hubapi.StatusActive, Address: hole, TCPAddress: tcpAddr},
	})
	r, err := New(Config{TD: spiffeid.RequireTrustDomainFromString("mydata.test"), SVID: hubSrc, Bundles: hubSrc, State: st, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tok, claims := downloadTicket(t, r, signer, "spiffe://mydata.test/org/moi/connector/dp1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	a, err := r.Open(ctx, tok, claims)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	t.Logf("QUIC black-holed: the DP answered over %s in %s", a.Transport, time.Since(start))
	if a.Transport != "tcp" || a.Header.Status != transfer.NoRecord || a.Header.Message != "nothing here" {
		t.Fatalf("answer over %s: %+v", a.Transport, a.Header)
	}
	var rest strings.Builder
	if _, err := a.CopyTo(&rest, nil); err != nil || rest.String() != "rest of the answer" {
		t.Fatalf("rest %q, %v", rest.String(), err)
	}
}

// tcpDP is a DP connector reachable over TLS on TCP only, answering every ticket with status and message
// and a few more bytes; it returns its address.
func tcpDP(t *testing.T, src *spiffetest.Source, status transfer.Status, msg string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	srv := tlsconfig.MTLSServerConfig(src, src, tlsconfig.AuthorizeMemberOf(spiffeid.RequireTrustDomainFromString("mydata.test")))
	srv.NextProtos, srv.MinVersion = []string{wire.ALPN}, tls.VersionTLS13
	go func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				c := tls.Server(raw, srv)
				defer c.Close()
				if f, err := wire.Read(c); err != nil || f.Type != wire.TypeTicket {
					return
				}
				h, _ := json.Marshal(transfer.Header{Status: status, Message: msg})
				_ = wire.Write(c, wire.Frame{Type: wire.TypeHeader, Payload: h})
				_, _ = c.Write([]byte("rest of the answer"))
				_ = c.CloseWrite()
				buf := make([]byte, 1)
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, _ = c.Read(buf)
			}()
		}
	}()
	return ln.Addr().String()
}

// blackHole is a UDP address that reads and drops everything: a QUIC port behind a firewall.
func blackHole(t *testing.T) string {
	t.Helper()
	hole, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hole.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := hole.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return hole.LocalAddr().String()
}

// TestOpenTriesTheNextConnector: a download ticket that names several connectors goes to the next when
// one fails before sending anything or cannot be reached; those the state marks down come last; the answer
// says which one answered.
func TestOpenTriesTheNextConnector(t *testing.T) {
	ca := spiffetest.New(t, "mydata.test")
	hubSrc := ca.NewSource(ca.SVID(t, "spiffe://mydata.test/hub/hub-1", time.Hour))
	id := func(name string) string { return "spiffe://mydata.test/org/moi/connector/" + name }
	src := func(name string) *spiffetest.Source { return ca.NewSource(ca.SVID(t, id(name), time.Hour)) }
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close() // nothing listens there
	st, signer := newState(t, map[string]*hubapi.Connector{
		// dp1's agency fails; dp2 is marked down but answers; dp3 cannot be reached.
		"moi/dp1": {Org: "moi", Name: "dp1", Status: hubapi.StatusActive, Address: blackHole(t), TCPAddress: tcpDP(t, src("dp1"), transfer.Failed, "agency down")},
		"moi/dp2": {Org: "moi", Name: "dp2", Status: hubapi.StatusActive, Down: true, Address: blackHole(t), TCPAddress: tcpDP(t, src("dp2"), transfer.NoRecord, "from dp2")},
		"moi/dp3": {Org: "moi", Name: "dp3", Status: hubapi.StatusActive, Address: blackHole(t), TCPAddress: closedAddr},
		// dp4 is told the ticket is taken: by dp1, which failed and could not give it back.
		"moi/dp4": {Org: "moi", Name: "dp4", Status: hubapi.StatusActive, Address: blackHole(t), TCPAddress: tcpDP(t, src("dp4"), transfer.Refused, transfer.Taken+": ticket t1 is being served by "+id("dp1"))},
	})
	r, err := New(Config{TD: spiffeid.RequireTrustDomainFromString("mydata.test"), SVID: hubSrc, Bundles: hubSrc, State: st, DialTimeout: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	tok, claims := downloadTicket(t, r, signer, id("dp1"), id("dp2"), id("dp3"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := r.Open(ctx, tok, claims)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.DP != id("dp2") || a.Header.Status != transfer.NoRecord || a.Header.Message != "from dp2" {
		t.Fatalf("answered by %s: %+v", a.DP, a.Header)
	}
	// With dp2 gone too, the last answer stands: dp1's failure is what the citizen is told.
	st.connectors["moi/dp2"].Status = hubapi.StatusSuspended
	a2, err := r.Open(ctx, tok, claims)
	if err == nil {
		defer a2.Close()
	}
	if err != nil || a2.DP != id("dp1") || a2.Header.Status != transfer.Failed {
		t.Fatalf("dp2 suspended: %v %+v", err, a2)
	}
	// dp1 fails and dp4 says the ticket is taken (dp1 kept it): dp1's failure is the answer.
	tok, claims = downloadTicket(t, r, signer, id("dp1"), id("dp4"))
	a3, err := r.Open(ctx, tok, claims)
	if err == nil {
		defer a3.Close()
	}
	if err != nil || a3.DP != id("dp1") || a3.Header.Status != transfer.Failed || a3.Header.Message != "agency down" {
		t.Fatalf("dp1 failed, dp4 taken: %v %+v", err, a3)
	}
}

// downloadTicket signs a download ticket for the connectors dps (the first its dp, the others alternates)
// and checks it as the portal does before relaying.
func downloadTicket(t *testing.T, r *Relay, signer *ticket.Signer, dps ...string) (string, *ticket.Claims) {
	t.Helper()
	now := time.Now()
	c := &ticket.Claims{ID: "t1", ConsentID: "c1", Dataset: "moi.household", DP: dps[0],
		Redeemer: "spiffe://mydata.test/hub/hub-1", SealedSubject: []byte("s"), RecipientKEM: 0x20, RecipientKey: []byte("k"),
		Issuer: "spiffe://mydata.test/hub/hub-1", IssuedAt: now.Unix(), ExpiresAt: now.Add(time.Minute).Unix(), Mode: ticket.ModeDownload}
	for _, dp := range dps[1:] {
		c.Alternates = append(c.Alternates, ticket.Alternate{DP: dp, SealedSubject: []byte("s")})
	}
	tok, err := signer.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := r.Check(tok)
	if err != nil {
		t.Fatal(err)
	}
	return tok, claims
}
