package identity

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/jointoken"
	"github.com/mydatafed/mydata/pkg/pemfile"
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
	// Force enrolls even though Dir already holds an identity, which is replaced only once the hub has issued
	// the new one.
	Force bool
}

// AlreadyEnrolledError is Enroll finding an identity in the directory when not told to replace it. A join
// token is spent on its first use, so the hub's answer to enrolling again would only be "unknown or already
// used": this says what is there instead.
type AlreadyEnrolledError struct {
	Dir string
	// ID and NotAfter describe the SVID found; both are zero when it cannot be read (Err says why).
	ID       spiffeid.ID
	NotAfter time.Time
	Err      error
}

func (e *AlreadyEnrolledError) Error() string {
	what := fmt.Sprintf("this connector is already enrolled as %s, with an SVID valid until %s", e.ID, e.NotAfter.UTC().Format(time.RFC3339))
	if !e.NotAfter.IsZero() && time.Now().After(e.NotAfter) {
		what += " (expired)"
	}
	if e.Err != nil {
		what = fmt.Sprintf("this connector's identity directory holds an SVID that cannot be read (%v)", e.Err)
	}
	return what + fmt.Sprintf("; it is kept in %s. To enroll again, with a new join token: stop the connector, "+
		"then run enroll with --force (the current identity is replaced only once the hub has issued the new one), "+
		"or move %s away first", e.Dir, e.Dir)
}

// checkNotEnrolled returns an *AlreadyEnrolledError if dir holds an SVID file.
func checkNotEnrolled(dir string) error {
	svidPath, _ := Paths(dir)
	if _, err := os.Stat(svidPath); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	svid, err := pemfile.ReadSVID(svidPath)
	if err != nil {
		return &AlreadyEnrolledError{Dir: dir, Err: err}
	}
	return &AlreadyEnrolledError{Dir: dir, ID: svid.ID, NotAfter: svid.Certificates[0].NotAfter}
}

// Enroll makes a key here, sends a CSR with the join token to the hub it pins, and keeps the SVID, key and
// bundle under req.Dir. Nothing is written unless the hub issued a good SVID. If req.Dir already holds an
// SVID, it returns an *AlreadyEnrolledError without contacting the hub, unless req.Force is set.
func Enroll(ctx context.Context, req EnrollRequest) (*x509svid.SVID, error) {
	if !req.Force {
		if err := checkNotEnrolled(req.Dir); err != nil {
			return nil, err
		}
	}
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
