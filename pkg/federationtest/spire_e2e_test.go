package federationtest

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConnectorWithSPIREIdentity runs a connector whose SVID comes from a real SPIRE agent, under an
// intermediate CA that the hub issued to the agency, beside a connector enrolled with a join token.
func TestConnectorWithSPIREIdentity(t *testing.T) {
	if _, _, ok := SPIREBinaries(); !ok {
		t.Skip("spire-server/spire-agent not built: run .ci/spire/build.sh (CI does)")
	}
	h := StartHub(t, HubOptions{})
	dp := h.EnrolledConnector("moi", "dp1", ConnectorOptions{Roles: "dp"})
	h.AddOrg("bank")

	dir := t.TempDir()
	certOut, keyOut, bundleOut := filepath.Join(dir, "upstream.crt"), filepath.Join(dir, "upstream.key"), filepath.Join(dir, "bundle.crt")
	h.Admin("ca", "intermediate", "--org", "bank", "--cert-out", certOut, "--key-out", keyOut, "--bundle-out", bundleOut, "--ttl", "72h")
	spire := StartSPIRE(t, SPIREConfig{TrustDomain: TrustDomain, UpstreamCert: certOut, UpstreamKey: keyOut, UpstreamBundle: bundleOut})

	sp := h.AddConnector("bank", "sp-spire", ConnectorOptions{Roles: "sp",
		Extra: "identity:\n  source: spire\n  spire_socket: " + spire.WorkloadAPIAddr() + "\n"})
	spire.Register(t, sp.ID())
	sp.Start()

	out, err := sp.Status("--peer", "moi/dp1")
	if err != nil {
		t.Fatalf("SPIRE-backed connector cannot reach the enrolled one: %v\n%s", err, out)
	}
	for _, want := range []string{"spiffe id:       " + sp.ID(), "identity source: spire", "hub:             reachable", "answered ping"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if err := dp.Ping(sp); err != nil {
		t.Fatalf("enrolled connector cannot reach the SPIRE-backed one: %v", err)
	}
	// Revocation at the hub binds a SPIRE-backed connector too: its peers drop it.
	h.Admin("connector", "revoke", "--org", "bank", "--name", "sp-spire")
	Eventually(t, 10*time.Second, "revoked SPIRE-backed connector refused", func() error {
		if sp.Ping(dp) == nil {
			return errors.New("still accepted")
		}
		return nil
	})
	// An entry for another ID is a configuration mistake the connector reports.
	wrong := h.AddConnector("bank", "sp-other", ConnectorOptions{Roles: "sp",
		Extra: "identity:\n  source: spire\n  spire_socket: " + spire.WorkloadAPIAddr() + "\n"})
	if _, err := wrong.Status(); err == nil || !strings.Contains(err.Error(), "but the config names") {
		t.Fatalf("connector with another ID's SVID: %v", err)
	}
}

// TestSPIRECannotMintOtherOrganisations checks that an organisation's SPIRE server, under the intermediate
// CA the hub issued to it, cannot pass off a connector of another organisation.
func TestSPIRECannotMintOtherOrganisations(t *testing.T) {
	if _, _, ok := SPIREBinaries(); !ok {
		t.Skip("spire-server/spire-agent not built: run .ci/spire/build.sh (CI does)")
	}
	h := StartHub(t, HubOptions{})
	h.EnrolledConnector("moi", "dp1", ConnectorOptions{Roles: "dp"})
	h.AddOrg("bank")
	dir := t.TempDir()
	certOut, keyOut, bundleOut := filepath.Join(dir, "upstream.crt"), filepath.Join(dir, "upstream.key"), filepath.Join(dir, "bundle.crt")
	h.Admin("ca", "intermediate", "--org", "bank", "--cert-out", certOut, "--key-out", keyOut, "--bundle-out", bundleOut, "--ttl", "72h")
	spire := StartSPIRE(t, SPIREConfig{TrustDomain: TrustDomain, UpstreamCert: certOut, UpstreamKey: keyOut, UpstreamBundle: bundleOut})

	// The bank's SPIRE issues an SVID claiming to be a connector of the Ministry of the Interior.
	forged := h.AddConnector("moi", "forged", ConnectorOptions{Roles: "sp",
		Extra: "identity:\n  source: spire\n  spire_socket: " + spire.WorkloadAPIAddr() + "\n"})
	spire.Register(t, forged.ID())
	out, err := forged.Status("--peer", "moi/dp1")
	if err == nil {
		t.Fatalf("a connector minted by another organisation's SPIRE reached a peer:\n%s", out)
	}
	if !strings.Contains(out, "hub:             unreachable") {
		t.Errorf("the hub should refuse it at the handshake:\n%s", out)
	}
}
