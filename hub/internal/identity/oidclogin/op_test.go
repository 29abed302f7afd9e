package oidclogin

import (
	"net"
	"testing"

	"github.com/mydatafed/mydata/pkg/federationtest/oidctest"
)

// The OpenID provider of these tests is zitadel's, run by oidctest (which the end-to-end tests use too):
// a configurable acr, amr, audience and claims, and a login page that authenticates the one user at once
// or answers access_denied.

const (
	testClientID     = "mydata-hub"
	testClientSecret = "s3cret-for-tests"
	testRedirectURL  = "https://portal.example/login/oidc/tw-wallet/callback"
	testUserID       = oidctest.UserID
	otherClientID    = "another-rp"
	otherSecret      = "another-secret"
	testNationalID   = "A123456789"
)

var (
	testClient = oidctest.Client{ID: testClientID, Secret: testClientSecret, RedirectURLs: []string{testRedirectURL}}
	// otherClient is another relying party of the same OP, whose tokens must not log anyone in at the hub.
	otherClient = oidctest.Client{ID: otherClientID, Secret: otherSecret, RedirectURLs: []string{testRedirectURL}}
)

// defaults puts the OP back to the settings startOP gives it.
func defaults(s *oidctest.Settings) {
	*s = oidctest.Settings{
		ACR:             "urn:mydata:loa:high",
		AMR:             []string{"pwd", "hwk"},
		NationalIDClaim: "national_id",
		NationalID:      testNationalID,
	}
}

// startOP runs the OP on ln (a fresh loopback port if nil) until the test ends.
func startOP(t *testing.T, ln net.Listener) *oidctest.OP {
	t.Helper()
	var set oidctest.Settings
	defaults(&set)
	return oidctest.Start(t, oidctest.Options{Listener: ln, Clients: []oidctest.Client{testClient, otherClient}, Settings: set})
}
