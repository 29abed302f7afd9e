package relay

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/ticket"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

type state struct {
	keys       []hubapi.HubKey
	connectors map[string]*hubapi.Connector
}

func (s *state) TicketKey(kid string) (*ecdsa.PublicKey, bool) { return hubapi.TicketKey(s.keys, kid) }
func (s *state) Connector(org, name string) (*hubapi.Connector, error) {
	return s.connectors[org+"/"+name], nil
}

// newState is a state with one hub ticket key, whose signer it returns, and the connectors given.
func newState(t *testing.T, connectors map[string]*hubapi.Connector) (*state, *ticket.Signer) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signer, err := ticket.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	return &state{keys: []hubapi.HubKey{{KID: signer.KeyID(), Node: "hub-1", Kind: hubapi.HubKeyTicket, PublicKey: der}}, connectors: connectors}, signer
}

func TestCheckAndOpenRefusals(t *testing.T) {
	st, signer := newState(t, map[string]*hubapi.Connector{
		"moi/dp1": {Org: "moi", Name: "dp1", Status: hubapi.StatusSuspended, Address: "127.0.0.1:1"},
	})
	r, err := New(Config{TD: spiffeid.RequireTrustDomainFromString("mydata.test"), State: st, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	mk := func(edit func(*ticket.Claims)) string {
		c := &ticket.Claims{ID: "t1", ConsentID: "c1", Dataset: "moi.household", DP: "spiffe://mydata.test/org/moi/connector/dp1",
			Redeemer: "spiffe://mydata.test/hub/hub-1", SealedSubject: []byte("s"), RecipientKEM: 0x20, RecipientKey: []byte("k"),
			Issuer: "spiffe://mydata.test/hub/hub-1", IssuedAt: now.Unix(), ExpiresAt: now.Add(time.Minute).Unix(), Mode: ticket.ModeDownload}
		edit(c)
		tok, err := signer.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	for _, tc := range []struct {
		name, token, want string
	}{
		{"an SP's ticket", mk(func(c *ticket.Claims) { c.Mode = "" }), "not a download ticket"},
		{"expired", mk(func(c *ticket.Claims) {
			c.IssuedAt, c.ExpiresAt = now.Add(-time.Hour).Unix(), now.Add(-time.Hour+time.Minute).Unix()
		}), "expired"},
		{"garbage", "a.b.c", "malformed"},
	} {
		if _, err := r.Check(tc.token); !errors.Is(err, ErrTicket) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	// A ticket signed with a key the state does not list.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	os, _ := ticket.NewSigner(other)
	c := &ticket.Claims{ID: "t1", ConsentID: "c1", Dataset: "d.x", DP: "spiffe://mydata.test/org/moi/connector/dp1", Redeemer: "spiffe://mydata.test/hub/hub-1",
		SealedSubject: []byte("s"), RecipientKey: []byte("k"), Issuer: "x", IssuedAt: now.Unix(), ExpiresAt: now.Add(time.Minute).Unix(), Mode: ticket.ModeDownload}
	tok, _ := os.Sign(c)
	if _, err := r.Check(tok); !errors.Is(err, ErrTicket) {
		t.Errorf("a foreign key's ticket: %v", err)
	}

	good, err := r.Check(mk(func(*ticket.Claims) {}))
	if err != nil {
		t.Fatal(err)
	}
	// The DP connector named is suspended: nothing is dialled.
	if _, err := r.Open(context.Background(), "tok", good); !errors.Is(err, ErrUnreachable) {
		t.Errorf("a suspended DP: %v", err)
	}
	// A DP of another trust domain, or not a connector, is not dialled either.
	for _, dp := range []string{"spiffe://other.test/org/moi/connector/dp1", "spiffe://mydata.test/hub/hub-2"} {
		bad := *good
		bad.DP = dp
		if _, err := r.Open(context.Background(), "tok", &bad); !errors.Is(err, ErrTicket) {
			t.Errorf("dp %s: %v", dp, err)
		}
	}
}
