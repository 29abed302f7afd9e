package oidclogin

import (
	"context"
	"errors"
	"fmt"
	"net"
)

// Errors that Finish and Start return, wrapped with the detail; the portal branches with errors.Is and
// shows a message for each. The detail is for the hub's log, never for the browser.
var (
	// ErrState: the state cookie is missing, malformed, expired or for another method, or the callback's
	// state does not match it — a forged or stale callback, or a second tab. The citizen starts again.
	ErrState = errors.New("oidc login: state does not match")
	// ErrIdP: the IdP answered the authorization request with an error; errors.As gives an *IdPError
	// with its code (access_denied when the citizen cancelled).
	ErrIdP = errors.New("oidc login: identity provider refused")
	// ErrToken: the code exchange was refused (a spent, foreign or expired code) or the ID token failed
	// verification (signature, issuer, audience, expiry, nonce).
	ErrToken = errors.New("oidc login: token refused")
	// ErrNoSubject: the verified ID token has no string in the configured subject claim.
	ErrNoSubject = errors.New("oidc login: no subject claim")
	// ErrLevel: neither acr nor any amr value maps to a level and there is no default level.
	ErrLevel = errors.New("oidc login: no assurance level")
	// ErrUnavailable: the IdP's discovery, token or key endpoint could not be reached or answered with a
	// server error, or its discovery document cannot be used (another issuer, no S256, no client-secret
	// authentication: the detail says which, for the operator). Trying again later may work.
	ErrUnavailable = errors.New("oidc login: identity provider unavailable")
)

// IdPError is the IdP's error response to the authorization request (RFC 6749 section 4.1.2.1). It
// matches ErrIdP under errors.Is.
type IdPError struct {
	// Code is the error parameter, e.g. access_denied, login_required, temporarily_unavailable.
	Code string
	// Description is error_description, cleaned and cut short: the IdP's text, not ours, so show it
	// only as a detail.
	Description string
}

func (e *IdPError) Error() string {
	if e.Description == "" {
		return fmt.Sprintf("oidc login: identity provider refused: %s", e.Code)
	}
	return fmt.Sprintf("oidc login: identity provider refused: %s (%s)", e.Code, e.Description)
}

// Is makes errors.Is(err, ErrIdP) true.
func (e *IdPError) Is(target error) bool { return target == ErrIdP }

// serverError is what the hub's transport makes of a 5xx from the IdP, so that a failing IdP is told
// apart from one that refuses us.
type serverError struct {
	status int
}

func (e *serverError) Error() string { return fmt.Sprintf("server error %d", e.status) }

// unreachable says whether err means the IdP could not be asked (network, timeout, 5xx) rather than
// that it said no.
func unreachable(err error) bool {
	var se *serverError
	var ne net.Error
	return errors.As(err, &se) || errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded)
}
