package federationtest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/jointoken"
	"github.com/mydatafed/mydata/pkg/pemfile"
	"github.com/mydatafed/mydata/pkg/spiffetest"
)

func identityFiles(c *Connector) []string {
	entries, _ := os.ReadDir(filepath.Join(c.DataDir(), "identity"))
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestEnrollment(t *testing.T) {
	t.Parallel()
	h := StartHub(t, HubOptions{})
	dp1 := h.AddConnector("moi", "dp1", ConnectorOptions{Roles: "dp"})
	dp2 := h.AddConnector("moi", "dp2", ConnectorOptions{Roles: "dp"})
	dp3 := h.AddConnector("moi", "dp3", ConnectorOptions{Roles: "dp"})

	tokDP2 := h.Token("moi", "dp2")
	tokDP1 := h.Token("moi", "dp1")
	tokShort := h.Token("moi", "dp1", "--ttl", "1s")
	tokDP3 := h.Token("moi", "dp3")
	h.Admin("connector", "revoke", "--org", "moi", "--name", "dp3")
	time.Sleep(1100 * time.Millisecond) // let tokShort expire

	otherCA := sha256Hex(t)
	steps := []struct {
		name    string
		c       *Connector
		token   string
		extra   []string
		wantErr string
	}{
		{"token of another connector", dp1, tokDP2, nil, "join token was issued for connector moi/dp2, not moi/dp1"},
		{"expired token", dp1, tokShort, nil, "join token expired"},
		{"revoked connector", dp3, tokDP3, nil, "connector moi/dp3 is revoked"},
		{"hub with another CA than pinned", dp1, tokDP1, []string{"--hub-ca", otherCA}, "the join token was made by a hub with CA"},
		{"malformed token", dp1, "mdj1.nope", nil, "malformed join token"},
		{"happy path", dp1, tokDP1, nil, ""},
		// An enrolled connector says so before it asks the hub; forced, the hub refuses the spent token and
		// the identity it has stays as it was.
		{"enroll again without --force", dp1, tokDP1, nil, "this connector is already enrolled as " + dp1.ID()},
		{"replayed token", dp1, tokDP1, []string{"--force"}, "join token is unknown or already used"},
		{"token of another connector, unharmed by the first attempt", dp2, tokDP2, nil, ""},
	}
	for _, s := range steps {
		before := identityFiles(s.c)
		out, err := s.c.Enroll(s.token, s.extra...)
		if s.wantErr == "" {
			if err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			if !strings.Contains(out, "enrolled "+s.c.ID()) {
				t.Fatalf("%s: output %q", s.name, out)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), s.wantErr) {
			t.Fatalf("%s: err = %v, want %q", s.name, err, s.wantErr)
		}
		if after := identityFiles(s.c); strings.Join(after, ",") != strings.Join(before, ",") {
			t.Fatalf("%s: a refused enrollment changed the identity files: %v -> %v", s.name, before, after)
		}
	}

	// The key never left the connector, and is private.
	fi, err := os.Stat(filepath.Join(dp1.DataDir(), "identity", "svid.pem"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("svid.pem mode %v %v", fi.Mode(), err)
	}
	svid, err := pemfile.ReadSVID(filepath.Join(dp1.DataDir(), "identity", "svid.pem"))
	if err != nil || svid.ID.String() != dp1.ID() {
		t.Fatalf("stored SVID %v %v", svid, err)
	}
	if ttl := svid.Certificates[0].NotAfter.Sub(svid.Certificates[0].NotBefore); ttl < 23*time.Hour || ttl > 25*time.Hour {
		t.Fatalf("default SVID TTL is %s, want 24h", ttl)
	}
	if !strings.Contains(h.Admin("cert", "list", "--spiffe-id", dp1.ID()), "enroll") {
		t.Fatal("the hub has no record of the certificate it issued")
	}
	m := h.Metrics()
	for _, want := range []string{`mydata_hub_enrollments_total{outcome="ok"} 2`, `outcome="wrong_connector"} 1`, `outcome="expired_token"} 1`,
		`outcome="invalid_token"} 1`, `outcome="connector_not_active"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("hub metrics lack %s", want)
		}
	}
}

func sha256Hex(t *testing.T) string {
	var fp [32]byte
	rand.Read(fp[:])
	return jointoken.FormatFingerprint(fp)
}

// TestEnrollWrongSPIFFEID sends a CSR for another connector's ID straight to the API, as a tampered
// connector would; the token must survive the refusal.
func TestEnrollWrongSPIFFEID(t *testing.T) {
	t.Parallel()
	h := StartHub(t, HubOptions{})
	dp1 := h.AddConnector("moi", "dp1", ConnectorOptions{})
	h.AddConnector("moi", "dp2", ConnectorOptions{})
	tokStr := h.Token("moi", "dp1")
	tok, err := jointoken.Parse(tokStr)
	if err != nil {
		t.Fatal(err)
	}
	client := hubapi.NewClient(h.URL(), hubapi.PinnedTLSConfig(tok.CAFingerprint))
	csr := func(ids ...string) []byte {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.CertificateRequest{}
		for _, id := range ids {
			u, _ := url.Parse(id)
			tmpl.URIs = append(tmpl.URIs, u)
		}
		der, _ := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
		return der
	}
	cases := []struct {
		name string
		req  hubapi.EnrollRequest
		want string
	}{
		{"another connector's ID", hubapi.EnrollRequest{Token: tokStr, Org: "moi", Connector: "dp1", CSR: csr("spiffe://mydata.test/org/moi/connector/dp2")}, "asks for spiffe://mydata.test/org/moi/connector/dp2 but this enrollment allows only spiffe://mydata.test/org/moi/connector/dp1"},
		{"a hub ID", hubapi.EnrollRequest{Token: tokStr, Org: "moi", Connector: "dp1", CSR: csr("spiffe://mydata.test/hub/evil")}, "allows only"},
		{"two IDs", hubapi.EnrollRequest{Token: tokStr, Org: "moi", Connector: "dp1", CSR: csr(dp1.ID(), "spiffe://mydata.test/operator/x")}, "exactly one URI SAN"},
		{"garbage CSR", hubapi.EnrollRequest{Token: tokStr, Org: "moi", Connector: "dp1", CSR: []byte("nope")}, "csr"},
	}
	for _, c := range cases {
		err := client.Do(context.Background(), http.MethodPost, hubapi.PathEnroll, c.req, nil)
		var he *hubapi.Error
		if !errors.As(err, &he) || he.Status != http.StatusBadRequest || !strings.Contains(he.Message, c.want) {
			t.Fatalf("%s: err = %v, want 400 with %q", c.name, err, c.want)
		}
	}
	if _, err := dp1.Enroll(tokStr); err != nil {
		t.Fatalf("the token did not survive refused requests: %v", err)
	}
	if !strings.Contains(h.Metrics(), `mydata_hub_enrollments_total{outcome="wrong_spiffe_id"} 3`) {
		t.Error("wrong SPIFFE ID attempts not counted")
	}
}

func TestAdminAPIAuth(t *testing.T) {
	t.Parallel()
	h := StartHub(t, HubOptions{})
	dp := h.EnrolledConnector("moi", "dp1", ConnectorOptions{})
	get := func(cert *tls.Certificate) (int, string) {
		conf := &tls.Config{InsecureSkipVerify: true} // the test checks the hub's answer, not the hub
		if cert != nil {
			conf.Certificates = []tls.Certificate{*cert}
		}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: conf}}
		resp, err := c.Get(h.URL() + hubapi.PathOrgs)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(nil); code != 401 || !strings.Contains(body, "client certificate required") {
		t.Fatalf("anonymous: %d %s", code, body)
	}
	cert := dp.LoadSVID(t)
	if code, body := get(&cert); code != 403 || !strings.Contains(body, "is a connector; this endpoint is for a operator") {
		t.Fatalf("connector: %d %s", code, body)
	}
	if _, err := h.AdminErr("org", "add", "--code", "x1", "--name-zh", "x", "--name-en", "x", "--type", "club"); err == nil || !strings.Contains(err.Error(), `type: "club" is not one of`) {
		t.Fatalf("bad org type: %v", err)
	}
	if _, err := h.AdminErr("connector", "add", "--org", "nowhere", "--name", "c", "--roles", "dp", "--address", "127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), `organisation "nowhere" does not exist`) || !strings.Contains(err.Error(), "HTTP 404") {
		t.Fatalf("connector of unknown org: %v", err)
	}
	if _, err := h.AdminErr("token", "create", "--org", "moi", "--connector", "dp1", "--ttl", "9999h"); err == nil || !strings.Contains(err.Error(), "ttl_seconds") {
		t.Fatalf("overlong token: %v", err)
	}
}

// foreignCert makes a CA of its own and an SVID for id under it.
func foreignCert(t *testing.T, id string) tls.Certificate {
	u, _ := url.Parse(id)
	ca := spiffetest.New(t, u.Host)
	return spiffetest.TLSCertificate(ca.SVID(t, id, time.Hour))
}

func TestForeignPeersRefusedAtHandshake(t *testing.T) {
	t.Parallel()
	h := StartHub(t, HubOptions{})
	dp := h.EnrolledConnector("moi", "dp1", ConnectorOptions{Roles: "dp"})
	sp := h.EnrolledConnector("bank", "sp1", ConnectorOptions{Roles: "sp"})
	if err := sp.Ping(dp); err != nil {
		t.Fatalf("enrolled peers cannot talk: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	impostors := map[string]tls.Certificate{
		"foreign trust domain":            foreignCert(t, "spiffe://evil.test/org/bank/connector/sp1"),
		"our trust domain, rogue CA":      foreignCert(t, sp.ID()),
		"not registered in the directory": foreignCert(t, "spiffe://mydata.test/org/bank/connector/ghost"),
	}
	for name, cert := range impostors {
		conn, err := DialRaw(ctx, dp.QUIC, cert)
		if err == nil {
			// TLS 1.3 lets the client finish before the server's verdict arrives; the connection must die
			// before any stream is served.
			err = PingConn(ctx, conn)
		}
		if err == nil {
			t.Fatalf("%s: the connector served an impostor", name)
		}
	}
	// A genuine SVID is accepted by the same raw client, so the refusals above are about the identity.
	cert := sp.LoadSVID(t)
	conn, err := DialRaw(ctx, dp.QUIC, cert)
	if err != nil {
		t.Fatal(err)
	}
	if err := PingConn(ctx, conn); err != nil {
		t.Fatalf("genuine peer: %v", err)
	}
	if m := dp.Metrics(); !regexp.MustCompile(`mydata_connector_quic_handshakes_total\{direction="in",outcome="refused"\} [3-9]`).MatchString(m) {
		t.Errorf("refused handshakes not counted:\n%s", grep(m, "handshakes"))
	}
	// The hub's API refuses a client certificate from another trust domain at the handshake as well.
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{impostors["foreign trust domain"]}}}}
	if resp, err := c.Get(h.URL() + hubapi.PathHealth); err == nil {
		resp.Body.Close()
		t.Fatalf("hub accepted a foreign client certificate: %s", resp.Status)
	}
}

func grep(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestRevocationReachesPeers(t *testing.T) {
	h := StartHub(t, HubOptions{})
	dp := h.EnrolledConnector("moi", "dp1", ConnectorOptions{Roles: "dp"})
	sp := h.EnrolledConnector("bank", "sp1", ConnectorOptions{Roles: "sp"})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := DialRaw(ctx, dp.QUIC, sp.LoadSVID(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := PingConn(ctx, conn); err != nil {
		t.Fatal(err)
	}

	h.Admin("connector", "suspend", "--org", "bank", "--name", "sp1")
	const syncInterval = 10 * time.Second
	took := Eventually(t, syncInterval, "suspended peer refused", func() error {
		if err := sp.Ping(dp); err == nil {
			return errors.New("still accepted")
		}
		return nil
	})
	t.Logf("suspension enforced by the peer after %s", took)
	select {
	case <-conn.Context().Done():
	case <-time.After(syncInterval):
		t.Fatal("the open connection of a suspended peer was not closed")
	}

	h.Admin("connector", "activate", "--org", "bank", "--name", "sp1")
	Eventually(t, syncInterval, "reactivated peer accepted", func() error { return sp.Ping(dp) })

	h.Admin("connector", "revoke", "--org", "bank", "--name", "sp1")
	took = Eventually(t, syncInterval, "revoked peer refused", func() error {
		if _, err := DialRaw(ctx, dp.QUIC, sp.LoadSVID(t)); err == nil {
			if err := sp.Ping(dp); err == nil {
				return errors.New("still accepted")
			}
		}
		return nil
	})
	t.Logf("revocation enforced after %s", took)
	if _, err := h.AdminErr("connector", "activate", "--org", "bank", "--name", "sp1"); err == nil || !strings.Contains(err.Error(), "HTTP 410") {
		t.Fatalf("a revoked connector came back: %v", err)
	}
	// A revoked connector can no longer renew, even with a valid SVID.
	if !strings.Contains(sp.Metrics(), "mydata_connector_directory") {
		t.Fatal("connector metrics missing")
	}
}

func TestSVIDRotationKeepsConnections(t *testing.T) {
	h := StartHub(t, HubOptions{Extra: "ca:\n  svid_ttl: 12s\n"})
	dp := h.EnrolledConnector("moi", "dp1", ConnectorOptions{Roles: "dp"})
	sp := h.EnrolledConnector("bank", "sp1", ConnectorOptions{Roles: "sp"})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := DialRaw(ctx, dp.QUIC, sp.LoadSVID(t))
	if err != nil {
		t.Fatal(err)
	}
	first := conn.ConnectionState().TLS.PeerCertificates[0]
	Eventually(t, 15*time.Second, "the DP renews its SVID", func() error {
		if dp.LoadSVID(t).Leaf.SerialNumber.Cmp(first.SerialNumber) == 0 {
			return errors.New("same serial")
		}
		return nil
	})
	if err := PingConn(ctx, conn); err != nil {
		t.Fatalf("connection unusable after rotation: %v", err)
	}
	// Past the first SVID's expiry the connection still works: TLS authenticated it once, at the start.
	time.Sleep(time.Until(first.NotAfter) + time.Second)
	if err := PingConn(ctx, conn); err != nil {
		t.Fatalf("connection unusable after the old SVID expired: %v", err)
	}
	conn2, err := DialRaw(ctx, dp.QUIC, sp.LoadSVID(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := conn2.ConnectionState().TLS.PeerCertificates[0]; got.SerialNumber.Cmp(first.SerialNumber) == 0 || time.Now().After(got.NotAfter) {
		t.Fatal("a new connection did not get the renewed SVID")
	}
	if err := sp.Ping(dp); err != nil {
		t.Fatalf("status --peer after rotation: %v", err)
	}
	if !regexp.MustCompile(`mydata_hub_svid_renewals_total\{outcome="ok"\} [2-9]`).MatchString(h.Metrics()) {
		t.Errorf("renewals not counted:\n%s", grep(h.Metrics(), "renewals"))
	}
}

func TestHubRestartKeepsRegistry(t *testing.T) {
	t.Parallel()
	h := StartHub(t, HubOptions{})
	h.EnrolledConnector("moi", "dp1", ConnectorOptions{Roles: "dp"})
	dp2 := h.AddConnector("fia", "dp2", ConnectorOptions{Roles: "dp"})
	unused := h.Token("fia", "dp2")
	h.Admin("connector", "suspend", "--org", "moi", "--name", "dp1")
	lists := func() string {
		return h.Admin("--json", "org", "list") + h.Admin("--json", "connector", "list") + h.Admin("--json", "cert", "list")
	}
	before := lists()
	h.Stop()
	h.Start()
	if after := lists(); after != before {
		t.Fatalf("registry changed across a restart:\nbefore %s\nafter %s", before, after)
	}
	if _, err := dp2.Enroll(unused); err != nil {
		t.Fatalf("the join token made before the restart: %v", err)
	}
}

func TestBackupRestoreOntoFreshNode(t *testing.T) {
	t.Parallel()
	h := StartHub(t, HubOptions{})
	dp := h.EnrolledConnector("moi", "dp1", ConnectorOptions{Roles: "dp"})
	h.AddConnector("fia", "dp2", ConnectorOptions{Roles: "dp"})
	h.Admin("connector", "revoke", "--org", "fia", "--name", "dp2")
	lists := func(h *Hub) string {
		return h.Admin("--json", "org", "list") + h.Admin("--json", "connector", "list") + h.Admin("--json", "cert", "list")
	}
	want := lists(h)
	file := filepath.Join(t.TempDir(), "backup.tar.gz")
	if _, err := Run(h.Bin, "backup", "--config", h.ConfigPath, "--out", file); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file mode: %v %v", fi.Mode(), err)
	}
	fresh := NewHub(t, HubOptions{})
	if _, err := Run(fresh.Bin, "restore", "--config", fresh.ConfigPath, "--in", file); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(fresh.Bin, "restore", "--config", fresh.ConfigPath, "--in", file); err == nil || !strings.Contains(err.Error(), "fresh node") {
		t.Fatalf("second restore: %v", err)
	}
	fresh.Start()
	if got := lists(fresh); got != want {
		t.Fatalf("restored registry differs:\nwant %s\ngot  %s", want, got)
	}
	// The restored node has the same CA: a connector enrolled at the old node renews at the new one.
	dp.Stop()
	var cfg bytes.Buffer
	old, _ := os.ReadFile(dp.ConfigPath)
	cfg.Write(bytes.ReplaceAll(old, []byte(h.URL()), []byte(fresh.URL())))
	os.WriteFile(dp.ConfigPath, cfg.Bytes(), 0o644)
	out, err := dp.Status()
	if err != nil || !strings.Contains(out, "hub:             reachable") {
		t.Fatalf("old connector against the restored node: %v\n%s", err, out)
	}
	// The restored node keeps working as a cluster: it accepts writes.
	fresh.Admin("org", "add", "--code", "edu", "--name-zh", "教育部", "--name-en", "Ministry of Education", "--type", "central-agency")
}

func TestHubOutage(t *testing.T) {
	h := StartHub(t, HubOptions{})
	dp := h.EnrolledConnector("moi", "dp1", ConnectorOptions{Roles: "dp", Extra: "directory:\n  max_backoff: 2s\n"})
	sp := h.EnrolledConnector("bank", "sp1", ConnectorOptions{Roles: "sp", Extra: "directory:\n  max_backoff: 2s\n"})
	h.Stop()
	for i := 0; i < 3; i++ {
		if err := sp.Ping(dp); err != nil {
			t.Fatalf("ping %d with the hub down: %v", i, err)
		}
	}
	out, _ := sp.Status()
	if !strings.Contains(out, "hub:             unreachable") {
		t.Fatalf("status does not report the hub down:\n%s", out)
	}
	// A connector restarts and serves from its stored directory while the hub is down.
	dp.Stop()
	dp.Start()
	if err := sp.Ping(dp); err != nil {
		t.Fatalf("ping after a restart without hub: %v", err)
	}
	if !strings.Contains(dp.Metrics(), "mydata_connector_hub_reachable 0") {
		t.Error("hub_reachable should be 0 while the hub is down")
	}
	h.Start()
	h.Admin("connector", "suspend", "--org", "bank", "--name", "sp1")
	took := Eventually(t, 20*time.Second, "a change made after the outage reaches the DP", func() error {
		if err := sp.Ping(dp); err == nil {
			return errors.New("still accepted")
		}
		return nil
	})
	t.Logf("change propagated %s after the hub came back", took)
	if !strings.Contains(dp.Metrics(), "mydata_connector_hub_reachable 1") {
		t.Error("hub_reachable should be 1 again")
	}
}

// TestDirectoryRefresh checks that a connector keeps its directory copy far from expiry while the hub is up,
// even when nothing changes: it fetches a freshly signed copy once half of the copy's life is gone.
func TestDirectoryRefresh(t *testing.T) {
	h := StartHub(t, HubOptions{Extra: "directory:\n  ttl: 1m\n"})
	dp := h.EnrolledConnector("moi", "dp1", ConnectorOptions{Roles: "dp", Extra: "directory:\n  sync_interval: 2s\n"})
	issued := func() time.Time {
		var signed struct {
			Payload []byte `json:"payload"`
		}
		var doc struct {
			IssuedAt time.Time `json:"issued_at"`
		}
		raw, err := os.ReadFile(filepath.Join(dp.DataDir(), "directory.json"))
		if err != nil || json.Unmarshal(raw, &signed) != nil || json.Unmarshal(signed.Payload, &doc) != nil {
			t.Fatalf("stored directory: %v", err)
		}
		return doc.IssuedAt
	}
	first := issued()
	Eventually(t, 40*time.Second, "a freshly signed directory replaces the copy", func() error {
		if !issued().After(first) {
			return errors.New("same copy")
		}
		return nil
	})
	if m := dp.Metrics(); !regexp.MustCompile(`mydata_connector_directory_expiry_seconds [3-6][0-9]\.`).MatchString(m) {
		t.Fatalf("directory expiry gauge:\n%s", grep(m, "directory_expiry"))
	}
}

func TestSuspendedConnectorCannotRenew(t *testing.T) {
	t.Parallel()
	h := StartHub(t, HubOptions{Extra: "ca:\n  svid_ttl: 12s\n"})
	dp := h.EnrolledConnector("moi", "dp1", ConnectorOptions{Roles: "dp"})
	first := dp.LoadSVID(t).Leaf.SerialNumber
	h.Admin("connector", "suspend", "--org", "moi", "--name", "dp1")
	Eventually(t, 20*time.Second, "the hub refuses the suspended connector's renewal", func() error {
		if !strings.Contains(h.Metrics(), `mydata_hub_svid_renewals_total{outcome="connector_not_active"}`) {
			return errors.New("no refused renewal yet")
		}
		return nil
	})
	if dp.LoadSVID(t).Leaf.SerialNumber.Cmp(first) != 0 {
		t.Fatal("a suspended connector got a new SVID")
	}
	if !regexp.MustCompile(`mydata_connector_svid_renewals_total\{outcome="refused"\} [1-9]`).MatchString(dp.Metrics()) {
		t.Error("the connector does not count its refused renewals")
	}
	// Reactivated, it recovers by itself.
	h.Admin("connector", "activate", "--org", "moi", "--name", "dp1")
	Eventually(t, 90*time.Second, "renewal after reactivation", func() error {
		if dp.LoadSVID(t).Leaf.SerialNumber.Cmp(first) == 0 {
			return errors.New("same SVID")
		}
		return nil
	})
}

// TestStartupErrorsAreClear checks that a binary that cannot start says why and exits, rather than
// crashing: here a port it needs is taken.
func TestStartupErrorsAreClear(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	h := NewHub(t, HubOptions{})
	os.WriteFile(h.ConfigPath, []byte(strings.Replace(mustRead(t, h.ConfigPath), h.Portal, taken.Addr().String(), 1)), 0o644)
	_, err = Run(h.Bin, "serve", "--config", h.ConfigPath)
	if err == nil || !strings.Contains(err.Error(), "portal listen") || strings.Contains(err.Error(), "panic") {
		t.Fatalf("hub with its portal port taken: %v", err)
	}

	good := StartHub(t, HubOptions{})
	c := good.AddConnector("moi", "dp1", ConnectorOptions{})
	if _, err := c.Enroll(good.Token("moi", "dp1")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(c.ConfigPath, []byte(strings.Replace(mustRead(t, c.ConfigPath), c.API, taken.Addr().String(), 1)), 0o644)
	_, err = Run(good.ConnectorBin, "serve", "--config", c.ConfigPath)
	if err == nil || !strings.Contains(err.Error(), "exchange.listen") || strings.Contains(err.Error(), "panic") {
		t.Fatalf("connector with its API port taken: %v", err)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
