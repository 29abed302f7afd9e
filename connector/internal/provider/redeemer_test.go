package provider

import (
	"testing"

	"github.com/mydatafed/mydata/pkg/ticket"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestRedeemerMayPresent(t *testing.T) {
	sp := "spiffe://mydata.test/org/bank/connector/sp"
	hub1, hub2 := "spiffe://mydata.test/hub/h1", "spiffe://mydata.test/hub/h2"
	for _, tc := range []struct {
		name, mode, redeemer, peer string
		ok                         bool
	}{
		{"connector, its own ticket", "", sp, sp, true},
		{"connector, another's ticket", "", sp, "spiffe://mydata.test/org/bank/connector/other", false},
		{"connector, a download ticket naming it", ticket.ModeDownload, sp, sp, false},
		{"hub, a download ticket", ticket.ModeDownload, hub1, hub1, true},
		{"hub, a download ticket issued by another node", ticket.ModeDownload, hub1, hub2, true},
		{"hub, an SP's ticket", "", sp, hub1, false},
		{"hub, an online ticket naming the hub", "", hub1, hub1, false},
		{"hub, a download ticket naming a connector", ticket.ModeDownload, sp, hub1, false},
		{"hub, a download ticket of another trust domain", ticket.ModeDownload, "spiffe://other.test/hub/h1", hub1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := redeemerMayPresent(&ticket.Claims{Mode: tc.mode, Redeemer: tc.redeemer}, spiffeid.RequireFromString(tc.peer))
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok %v", err, tc.ok)
			}
		})
	}
}
