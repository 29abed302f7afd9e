package federationtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/pemfile"
	"github.com/mydatafed/mydata/pkg/seal"
	"github.com/mydatafed/mydata/pkg/ticket"
	"github.com/mydatafed/mydata/pkg/transfer"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// hubClientAs talks to the hub's API with a connector's SVID, as that connector would.
func hubClientAs(t *testing.T, h *Hub, c *Connector) *hubapi.Client {
	t.Helper()
	svid, err := pemfile.ReadSVID(filepath.Join(c.DataDir(), "identity", "svid.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots, err := pemfile.ReadCertificates(filepath.Join(c.DataDir(), "identity", "bundle.crt"))
	if err != nil {
		t.Fatal(err)
	}
	td := spiffeid.RequireTrustDomainFromString(TrustDomain)
	bundle := x509bundle.FromX509Authorities(td, roots)
	return hubapi.NewClient(h.URL(), tlsconfig.MTLSClientConfig(svid, bundle, fedid.Authorizer(td, fedid.KindHub, nil)))
}

// present presents a ticket to a DP over QUIC with the given connector's SVID and returns the DP's answer.
func present(t *testing.T, dp, as *Connector, tok, ticketID, dataset string, key interface{ Bytes() ([]byte, error) }) (*transfer.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := DialRaw(ctx, dp.QUIC, as.LoadSVID(t))
	if err != nil {
		return nil, err
	}
	defer conn.CloseWithError(0, "")
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	if err := transfer.WriteTicket(st, tok); err != nil {
		return nil, err
	}
	st.Close()
	raw, _ := key.Bytes()
	sk, _ := seal.ParsePrivateKey(seal.KEMHybrid, raw)
	roots, _ := pemfile.ReadCertificates(filepath.Join(as.DataDir(), "identity", "bundle.crt"))
	td := spiffeid.RequireTrustDomainFromString(TrustDomain)
	return transfer.Receive(st, io.Discard, transfer.Expect{TicketID: ticketID, Dataset: dataset,
		DP: spiffeid.RequireFromString(dp.ID()), MaxSize: 1 << 20, Bundles: x509bundle.FromX509Authorities(td, roots)}, sk)
}

func TestTicketChecksAtTheDP(t *testing.T) {
	t.Parallel()
	f := startOnline(t)
	redeem := func(as *Connector) (*hubapi.RedeemResponse, interface{ Bytes() ([]byte, error) }, error) {
		code, p := f.approve(t, citizenA, "moi.household")
		key, _ := seal.GenerateKey(seal.KEMHybrid)
		var resp hubapi.RedeemResponse
		err := hubClientAs(t, f.h, as).Do(context.Background(), http.MethodPost, hubapi.PathRedeem, hubapi.RedeemRequest{
			Code: code, CodeVerifier: p.Verifier, RedirectURI: f.redirect, RecipientKEM: seal.KEMHybrid, RecipientKey: key.PublicKey().Bytes()}, &resp)
		return &resp, key, err
	}

	// Only the service's own SP connector may redeem its codes.
	if _, _, err := redeem(f.fia); err == nil || !strings.Contains(err.Error(), "invalid_client") || !strings.Contains(err.Error(), "403") {
		t.Fatalf("another connector redeemed the bank's code: %v", err)
	}

	resp, key, err := redeem(f.bank)
	if err != nil || len(resp.Tickets) != 1 {
		t.Fatalf("redeem: %v %+v", err, resp)
	}
	tk := resp.Tickets[0]
	res, err := present(t, f.moi, f.bank, tk.Ticket, tk.TicketID, tk.Dataset, key)
	if err != nil || res.Header.Status != transfer.OK {
		t.Fatalf("first presentation: %v %+v", err, res)
	}
	refused := func(name, tok, id string, as *Connector, want string) {
		t.Helper()
		res, err := present(t, f.moi, as, tok, id, "moi.household", key)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if res.Header.Status != transfer.Refused || !strings.Contains(res.Header.Message, want) {
			t.Fatalf("%s: %s %q, want refused with %q", name, res.Header.Status, res.Header.Message, want)
		}
	}
	refused("replayed ticket", tk.Ticket, tk.TicketID, f.bank, "already used")

	resp2, key2, err := redeem(f.bank)
	if err != nil {
		t.Fatal(err)
	}
	tk2 := resp2.Tickets[0]
	refused("ticket presented by another connector", tk2.Ticket, tk2.TicketID, f.fia, "may be presented only by")
	parts := strings.Split(tk2.Ticket, ".")
	tampered := parts[0] + "." + parts[1][:10] + flip(parts[1][10]) + parts[1][11:] + "." + parts[2]
	refused("tampered ticket", tampered, tk2.TicketID, f.bank, "")
	// A ticket signed by a key the hub never published.
	rogue, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signer, _ := ticket.NewSigner(rogue)
	forged, _ := signer.Sign(&ticket.Claims{ID: "forged-1", ConsentID: resp2.ConsentID, Dataset: "moi.household", DP: f.moi.ID(), Redeemer: f.bank.ID(),
		SealedSubject: []byte{1}, RecipientKEM: seal.KEMHybrid, RecipientKey: []byte{2}, Issuer: "spiffe://mydata.test/hub/hub-1",
		IssuedAt: time.Now().Unix(), ExpiresAt: time.Now().Add(time.Minute).Unix()})
	refused("foreign-signed ticket", forged, "forged-1", f.bank, "does not list")
	// The genuine second ticket still works after all that.
	if res, err := present(t, f.moi, f.bank, tk2.Ticket, tk2.TicketID, tk2.Dataset, key2); err != nil || res.Header.Status != transfer.OK {
		t.Fatalf("second ticket: %v %+v", err, res)
	}
	out, _ := f.moi.Audit("export")
	if strings.Count(out, `"outcome":"refused"`) < 4 {
		t.Fatalf("the DP's audit log lacks the refusals:\n%s", out)
	}
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

// TestRedeemErrorsAreRFC6749 checks the shape of the hub's redemption errors: an OAuth client library
// reads error and error_description (RFC 6749 section 5.2).
func TestRedeemErrorsAreRFC6749(t *testing.T) {
	t.Parallel()
	f := startOnline(t)
	key, err := seal.GenerateKey(seal.KEMHybrid)
	if err != nil {
		t.Fatal(err)
	}
	pub := key.PublicKey().Bytes()
	var e *hubapi.Error
	err = hubClientAs(t, f.h, f.bank).Do(context.Background(), http.MethodPost, hubapi.PathRedeem, hubapi.RedeemRequest{
		Code: "no-such-code", CodeVerifier: strings.Repeat("v", 43), RedirectURI: f.redirect, RecipientKEM: seal.KEMHybrid, RecipientKey: pub}, nil)
	if !errors.As(err, &e) || e.Status != 400 || e.Message != "invalid_grant" || e.Description != "code unknown" {
		t.Fatalf("unknown code: %#v", err)
	}
	err = hubClientAs(t, f.h, f.bank).Do(context.Background(), http.MethodPost, hubapi.PathRedeem, hubapi.RedeemRequest{
		Code: "no-such-code", CodeVerifier: "short", RedirectURI: f.redirect, RecipientKEM: seal.KEMHybrid, RecipientKey: pub}, nil)
	if !errors.As(err, &e) || e.Status != 400 || e.Message != "invalid_request" || !strings.Contains(e.Description, "code_verifier") {
		t.Fatalf("short verifier: %#v", err)
	}
}
