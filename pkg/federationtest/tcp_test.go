package federationtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// udpRelay forwards QUIC's datagrams between peers and a connector's real QUIC port, or, while blocked,
// reads and drops them all: a firewall that drops UDP, which can be lifted.
type udpRelay struct {
	t       testing.TB
	conn    net.PacketConn
	blocked atomic.Bool
	target  atomic.Value // string, the connector's quic.listen
	mu      sync.Mutex
	up      map[string]*net.UDPConn // by client address
}

func startUDPRelay(t testing.TB) *udpRelay {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &udpRelay{t: t, conn: c, up: map[string]*net.UDPConn{}}
	r.blocked.Store(true)
	t.Cleanup(func() {
		c.Close()
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, u := range r.up {
			u.Close()
		}
	})
	go r.run()
	return r
}

func (r *udpRelay) Addr() string { return r.conn.LocalAddr().String() }

func (r *udpRelay) run() {
	buf := make([]byte, 65536)
	for {
		n, from, err := r.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		if r.blocked.Load() {
			continue
		}
		up, err := r.upstream(from)
		if err != nil {
			continue
		}
		_, _ = up.Write(buf[:n])
	}
}

// upstream is the socket that carries one client's datagrams to the target, and its replies back.
func (r *udpRelay) upstream(from net.Addr) (*net.UDPConn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if u := r.up[from.String()]; u != nil {
		return u, nil
	}
	target, err := net.ResolveUDPAddr("udp", r.target.Load().(string))
	if err != nil {
		return nil, err
	}
	u, err := net.DialUDP("udp", nil, target)
	if err != nil {
		return nil, err
	}
	r.up[from.String()] = u
	go func() {
		buf := make([]byte, 65536)
		for {
			n, err := u.Read(buf)
			if err != nil {
				return
			}
			if !r.blocked.Load() {
				_, _ = r.conn.WriteTo(buf[:n], from)
			}
		}
	}()
	return u, nil
}

// TestTCPFallback: a DP whose QUIC packets are dropped (its registered QUIC address is a relay that drops
// every datagram) serves over TCP, the SP having raced QUIC for 300 ms; once the QUIC handshake has failed
// the SP goes to TCP at once; when UDP gets through again the SP finds QUIC again and uses it. Metrics and
// both audit logs say which transport carried each transfer. A config with both transports off is refused
// with both keys named.
func TestTCPFallback(t *testing.T) {
	t.Parallel()
	h := StartHub(t, HubOptions{})
	relay := startUDPRelay(t)
	household := fmt.Sprintf(`{"household":"PAYLOAD-HOUSEHOLD-%s"}`, citizenA)
	dp := h.AddConnector("moi", "dp1", ConnectorOptions{Roles: "dp", RegisteredQUIC: relay.Addr(),
		Extra: DatasetsYAML(FileDataset(t, "moi.household", map[string]string{citizenA: household}))})
	relay.target.Store(dp.QUIC)
	sp := h.AddConnector("bank", "sp1", ConnectorOptions{Roles: "sp"})
	for _, c := range []*Connector{dp, sp} {
		if _, err := c.Enroll(h.Token(c.Org, c.Name)); err != nil {
			t.Fatal(err)
		}
		c.Start()
	}
	const redirect = "http://127.0.0.1:9/callback"
	h.Admin("dataset", "add", "--id", "moi.household", "--name-zh", "戶籍資料", "--name-en", "Household registration", "--dp", "moi/dp1", "--min-aal", "2")
	h.Admin("service", "add", "--id", "bank.card", "--name-zh", "信用卡申辦", "--name-en", "Credit card application", "--sp", "bank/sp1",
		"--datasets", "moi.household", "--purpose", "Check identity for a credit card", "--terms", "Terms", "--terms-version", "1", "--redirect-uri", redirect)
	Eventually(t, 10*time.Second, "DP key published", func() error {
		if out := h.Admin("--json", "connector", "list"); strings.Count(out, `"hpke_key"`) < 2 {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	if out := h.Admin("--json", "connector", "list"); !strings.Contains(out, `"tcp_address": "`+dp.TCP+`"`) {
		t.Fatalf("the directory does not publish the DP's TCP address %s:\n%s", dp.TCP, out)
	}

	// exchange runs one consent and exchange and says how long the exchange took.
	exchange := func() time.Duration {
		t.Helper()
		c := h.NewCitizen()
		c.Login(citizenA, "nhi-card")
		p := NewPKCE()
		code := c.Approve(h.AuthorizeURL("bank.card", redirect, "moi.household", "st", p, nil))
		start := time.Now()
		res, status, body := sp.Exchange(code, p.Verifier, redirect)
		took := time.Since(start)
		if status != 200 {
			t.Fatalf("exchange: %d %s", status, body)
		}
		if st, reason, content := res.Dataset(t, "moi.household"); st != "delivered" || !bytes.Contains(content, []byte("PAYLOAD-HOUSEHOLD-")) {
			t.Fatalf("household: %s (%s) %q", st, reason, content)
		}
		return took
	}
	delivered := func(c *Connector, transport string) string {
		if c == sp {
			return fmt.Sprintf(`mydata_connector_sp_datasets_total{status="delivered",transport="%s"}`, transport)
		}
		return fmt.Sprintf(`mydata_connector_dp_transfers_total{dataset="moi.household",outcome="delivered",transport="%s"}`, transport)
	}
	count := func(c *Connector, transport string) int {
		var n int
		for _, line := range strings.Split(c.Metrics(), "\n") {
			if rest, ok := strings.CutPrefix(line, delivered(c, transport)+" "); ok {
				fmt.Sscan(rest, &n)
			}
		}
		return n
	}

	// UDP dropped: the first exchange waits out the race, then TCP carries it.
	took := exchange()
	t.Logf("QUIC black-holed, first exchange (300 ms race, then TCP): %s", took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("the exchange over TCP took %s", took)
	}
	if n := count(sp, "tcp"); n != 1 {
		t.Fatalf("SP: %d datasets delivered over TCP, want 1", n)
	}
	if n := count(dp, "tcp"); n != 1 {
		t.Fatalf("DP: %d transfers delivered over TCP, want 1", n)
	}

	// The QUIC attempt goes on in the background until its handshake times out; the SP then dials the DP
	// by TCP first, without waiting for QUIC.
	spLog := filepath.Join(sp.Dir, "connector.log")
	Eventually(t, 30*time.Second, "the SP notes that QUIC failed", func() error {
		b, _ := os.ReadFile(spLog)
		if !bytes.Contains(b, []byte("QUIC handshake failed: dialling the peer by TCP first")) {
			return fmt.Errorf("not in the log yet")
		}
		return nil
	})
	took = exchange()
	t.Logf("QUIC black-holed and remembered, second exchange (TCP at once): %s", took.Round(time.Millisecond))
	if n := count(sp, "tcp"); n != 2 {
		t.Fatalf("SP: %d datasets delivered over TCP, want 2", n)
	}
	if m := sp.Metrics(); !strings.Contains(m, `mydata_connector_tcp_fallbacks_total{reason="memory"}`) {
		t.Errorf("the SP's second dial was not by TCP first from memory:\n%s", grepLines(m, "fallbacks"))
	}

	// UDP gets through again: a background QUIC attempt finds it, and QUIC carries the next transfers.
	relay.blocked.Store(false)
	var tries int
	Eventually(t, 60*time.Second, "a transfer over QUIC again", func() error {
		tries++
		exchange()
		if count(sp, "quic") == 0 {
			return fmt.Errorf("%d exchanges since UDP was let through, all over TCP", tries)
		}
		return nil
	})
	t.Logf("QUIC let through: %d exchanges until one went over QUIC", tries)
	if n := count(dp, "quic"); n != 1 {
		t.Errorf("DP: %d transfers over QUIC, want 1", n)
	}

	// Both audit logs say the transport of each transfer.
	for _, c := range []*Connector{sp, dp} {
		out, err := c.Audit("export")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "transport=tcp") || !strings.Contains(out, "transport=quic") {
			t.Errorf("%s audit does not name both transports:\n%s", c.Name, out)
		}
	}

	// Both transports off is a configuration error naming both keys.
	cfg, err := os.ReadFile(sp.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	off := strings.Replace(strings.Replace(string(cfg), "quic:\n", "quic:\n  enabled: false\n", 1), "tcp:\n", "tcp:\n  enabled: false\n", 1)
	offPath := filepath.Join(t.TempDir(), "connector.yaml")
	if err := os.WriteFile(offPath, []byte(off), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := Run(h.ConnectorBin, "serve", "--config", offPath); err == nil || !strings.Contains(out+err.Error(), "quic.enabled, tcp.enabled: both are false") {
		t.Fatalf("serve with both transports off: %v\n%s", err, out)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestDeadDPFailsTransferTCP is TestDeadDPFailsTransfer's streamed case over the TCP fallback (QUIC off at
// the SP): a DP killed mid-transfer must not pass for a whole delivery when its connection ends at a TLS
// record boundary without close_notify, and the SP reports the dataset failed within deadPeerBound.
func TestDeadDPFailsTransferTCP(t *testing.T) {
	t.Parallel()
	const size = 64 << 20
	subject := benchSubjects(t, 1)[0]
	dir := t.TempDir()
	writeBulkFile(t, filepath.Join(dir, subject+".json"), size)
	f := startBenchFedTCP(t, dir)
	cut, failed, err := killDPMidStream(t, f, subject)
	if err != nil {
		t.Fatal(err)
	}
	if cut > deadPeerBound {
		t.Fatalf("the body broke off %s after the kill", cut)
	}
	t.Logf("over TCP: kill to cut %s, kill to failed %s", cut.Round(time.Millisecond), failed.Round(time.Millisecond))
	if m := f.sp.Metrics(); !strings.Contains(m, `mydata_connector_sp_datasets_total{status="failed",transport="tcp"} 1`) {
		t.Errorf("the failed transfer was not over TCP:\n%s", grepLines(m, "sp_datasets_total"))
	}
}
