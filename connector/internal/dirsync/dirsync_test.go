package dirsync

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/directory"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestAuthorize(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("mydata.test")
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	clock := now
	s := &Sync{cfg: Config{TD: td, Refresh: time.Hour, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, now: func() time.Time { return clock }}
	id := func(org, name string) spiffeid.ID {
		return spiffeid.RequireFromString("spiffe://mydata.test/org/" + org + "/connector/" + name)
	}
	if err := s.Authorize(id("moi", "dp1")); err == nil || !strings.Contains(err.Error(), "no directory") {
		t.Fatalf("without a directory: %v", err)
	}
	s.doc = &directory.Document{Version: 1, IssuedAt: now, ExpiresAt: now.Add(72 * time.Hour), Connectors: []hubapi.Connector{
		{Org: "moi", Name: "dp1", Status: hubapi.StatusActive},
		{Org: "moi", Name: "dp2", Status: hubapi.StatusSuspended},
		{Org: "moi", Name: "dp3", Status: hubapi.StatusRevoked},
	}, HubKeys: []hubapi.HubKey{{KID: "k", Node: "h2", Kind: hubapi.HubKeyTicket}}}
	tests := []struct {
		id   spiffeid.ID
		want string
	}{
		{id("moi", "dp1"), ""},
		{id("moi", "dp2"), "is suspended"},
		{id("moi", "dp3"), "is revoked"},
		{id("moi", "dp4"), "not a connector of the federation directory"},
		// Hub nodes relay downloads: those the directory lists are let in (the provider lets them present
		// download tickets only); a node it does not list, one removed from the cluster say, is not.
		{spiffeid.RequireFromString("spiffe://mydata.test/hub/h1"), "not a hub node of the federation directory"},
		{spiffeid.RequireFromString("spiffe://mydata.test/hub/h2"), ""},
		{spiffeid.RequireFromString("spiffe://mydata.test/operator/o1"), "not a connector"},
	}
	for _, tt := range tests {
		err := s.Authorize(tt.id)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: %v, want %q", tt.id, err, tt.want)
		}
	}
	s.full = now
	if s.stale(s.doc) {
		t.Fatal("a new copy is stale")
	}
	clock = now.Add(61 * time.Minute)
	if !s.stale(s.doc) {
		t.Fatal("a copy not fetched whole for more than refresh is not stale")
	}
	s.full = clock
	clock = now.Add(37 * time.Hour)
	if !s.stale(s.doc) {
		t.Fatal("a copy past half its life is not stale")
	}
	if err := s.Authorize(id("moi", "dp1")); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	clock = now.Add(72 * time.Hour)
	if err := s.Authorize(id("moi", "dp1")); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("after expiry: %v", err)
	}
	if err := s.Ready(); err == nil {
		t.Fatal("ready with an expired directory")
	}
}
