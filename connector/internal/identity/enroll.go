package identity

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/jointoken"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// EnrollRequest is what `mydata-connector enroll` knows.
type EnrollRequest struct {
	Dir string
	// HubURLs are the hub nodes' API URLs, tried in turn.
	HubURLs []string
	Token   jointoken.Token
	// Pin is the hub CA fingerprint to trust; the token's own is used when it is zero.
	Pin       [32]byte
	Org, Name string
	ID        spiffeid.ID
	// Log hears of failovers between hub nodes; nil discards.
	Log *slog.Logger
}

// Enroll makes a key here, sends a CSR with the join token to the hub it pins, and keeps the SVID, key and
// bundle under req.Dir. Nothing is written unless the hub issued a good SVID.
func Enroll(ctx context.Context, req EnrollRequest) (*x509svid.SVID, error) {
	pin := req.Pin
	if pin == [32]byte{} {
		pin = req.Token.CAFingerprint
	}
	if pin != req.Token.CAFingerprint {
		return nil, fmt.Errorf("the join token was made by a hub with CA %s, not the pinned %s",
			jointoken.FormatFingerprint(req.Token.CAFingerprint), jointoken.FormatFingerprint(pin))
	}
	key, csr, err := newCSR(req.ID)
	if err != nil {
		return nil, err
	}
	client, err := newHubClient(req.HubURLs, hubapi.PinnedTLSConfig(pin), req.Log, nil)
	if err != nil {
		return nil, err
	}
	defer client.CloseIdle()
	var resp hubapi.SVIDResponse
	err = client.Do(ctx, http.MethodPost, hubapi.PathEnroll, hubapi.EnrollRequest{
		Token: req.Token.String(), Org: req.Org, Connector: req.Name, CSR: csr,
	}, &resp)
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	svid, roots, err := checkResponse(&resp, key, req.ID)
	if err != nil {
		return nil, err
	}
	pinned := false
	for _, r := range roots {
		if sha256.Sum256(r.Raw) == pin {
			pinned = true
		}
	}
	if !pinned {
		return nil, fmt.Errorf("hub's bundle does not hold the pinned CA %s", jointoken.FormatFingerprint(pin))
	}
	if err := os.MkdirAll(req.Dir, 0o700); err != nil {
		return nil, err
	}
	if err := save(req.Dir, svid, roots); err != nil {
		return nil, fmt.Errorf("store SVID: %w", err)
	}
	return svid, nil
}
