package provider_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mydatafed/mydata/connector/internal/provider"
	"github.com/mydatafed/mydata/pkg/ticket"
	"github.com/mydatafed/mydata/pkg/transfer"
)

// hubCalls records the claims a provider makes at the hub, and what the stream held at each release.
type hubCalls struct {
	mu       sync.Mutex
	claimErr error
	st       *stream
	calls    []string
}

func (h *hubCalls) Claim(_ context.Context, token string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, "claim")
	return h.claimErr
}

func (h *hubCalls) Release(_ context.Context, token string, spent bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, fmt.Sprintf("release spent=%v answered=%v", spent, h.st.Len() > 0))
	return nil
}

// TestServeSharedTicket: a ticket that names several connectors is served by this one when it is among
// them, after the hub grants the claim; the claim is released before the answer when nothing was sent,
// also when the claim's outcome is unknown (the hub failed to answer it).
func TestServeSharedTicket(t *testing.T) {
	f := newFixture(t)
	good := map[string][]byte{dataKey: household}
	for _, tc := range []struct {
		name     string
		files    map[string][]byte
		dps      []string // the ticket's connectors, in order
		hub      error    // the hub's answer to the claim
		noHub    bool
		status   transfer.Status
		msg      string
		calls    []string
		receipts int
	}{
		{name: "an alternate serves", files: good, dps: []string{otherID, dpID}, status: transfer.OK,
			calls: []string{"claim", "release spent=true answered=true"}, receipts: 1},
		{name: "the first serves", files: good, dps: []string{dpID, otherID}, status: transfer.OK,
			calls: []string{"claim", "release spent=true answered=true"}, receipts: 1},
		{name: "another connector has it", files: good, dps: []string{otherID, dpID}, hub: fmt.Errorf("%w: being served", provider.ErrTaken),
			status: transfer.Refused, msg: "another connector serves or served this ticket", calls: []string{"claim"}},
		{name: "the hub cannot be reached", files: good, dps: []string{otherID, dpID}, hub: errors.New("dial tcp: connection refused"),
			status: transfer.Failed, msg: "cannot serve right now", calls: []string{"claim", "release spent=false answered=false"}, receipts: 1},
		{name: "the agency fails: released before the answer", files: map[string][]byte{dataKey + "/": nil}, dps: []string{dpID, otherID},
			status: transfer.Failed, msg: "could not produce the data", calls: []string{"claim", "release spent=false answered=false"}, receipts: 1},
		{name: "larger than max_bytes: released before the answer", files: map[string][]byte{dataKey: make([]byte, 2<<20)}, dps: []string{dpID, otherID},
			status: transfer.Failed, msg: "larger than this provider delivers", calls: []string{"claim", "release spent=false answered=false"}, receipts: 1},
		{name: "the agency is not ready: released before the answer", files: map[string][]byte{dataKey + ".retry": []byte("30")}, dps: []string{dpID, otherID},
			status: transfer.NotReady, calls: []string{"claim", "release spent=false answered=false"}, receipts: 1},
		{name: "no record is an answer", files: map[string][]byte{}, dps: []string{dpID, otherID},
			status: transfer.NoRecord, calls: []string{"claim", "release spent=true answered=true"}, receipts: 1},
		{name: "no hub configured", files: good, dps: []string{otherID, dpID}, noHub: true,
			status: transfer.Failed, msg: "cannot serve this ticket", receipts: 1},
		{name: "not among them", files: good, dps: []string{otherID, "spiffe://mydata.test/org/fia/connector/fia-dp2"},
			status: transfer.Refused, msg: "for " + otherID + " or spiffe://mydata.test/org/fia/connector/fia-dp2", receipts: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &stream{}
			hub := &hubCalls{claimErr: tc.hub, st: st}
			e := newEnvWith(t, f, 1<<20, func(cfg *provider.Config) {
				if !tc.noHub {
					cfg.HubClaims = hub
				}
			})
			e.write(t, tc.files)
			c := f.claims()
			c.DP = tc.dps[0]
			for _, dp := range tc.dps[1:] {
				c.Alternates = append(c.Alternates, ticket.Alternate{DP: dp, SealedSubject: sealSubject(t, f.dpKey.PublicKey(), c.ID, subject)})
			}
			c.SealedSubject = sealSubject(t, f.dpKey.PublicKey(), c.ID, subject)
			tok := f.sign(t, c)
			e.now = t0.Add(time.Second)
			a := e.present(t, st, tok, spID, c)
			if a.res == nil {
				t.Fatalf("answer: %v", a.err)
			}
			if h := a.res.Header; h.Status != tc.status || !strings.Contains(h.Message, tc.msg) {
				t.Fatalf("answer: %+v %v, want %s with %q", h, a.err, tc.status, tc.msg)
			}
			if strings.Join(hub.calls, "; ") != strings.Join(tc.calls, "; ") {
				t.Fatalf("hub calls: %q, want %q", hub.calls, tc.calls)
			}
			if got := e.pending(t); got != tc.receipts {
				t.Fatalf("receipts queued: %d, want %d", got, tc.receipts)
			}
		})
	}
}
