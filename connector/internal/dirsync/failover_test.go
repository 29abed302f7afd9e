package dirsync

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/directory"
	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/hubapi/hubapitest"
	"github.com/mydatafed/mydata/pkg/spiffetest"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// dirHub is the directory as a hub cluster's nodes share it: each node answers from it, and a long-poll
// is woken when it changes.
type dirHub struct {
	t    *testing.T
	ca   *spiffetest.CA
	svid *x509svid.SVID

	mu      sync.Mutex
	version uint64
	body    []byte
	changed chan struct{}
	polls   map[string]int // long-polls each node has taken, by URL
}

func newDirHub(t *testing.T, ca *spiffetest.CA) *dirHub {
	h := &dirHub{t: t, ca: ca, svid: ca.SVID(t, "spiffe://mydata.test/hub/hub-1", time.Hour), changed: make(chan struct{}), polls: map[string]int{}}
	h.publish(1, hubapi.StatusActive)
	return h
}

// publish signs a new version in which moi/dp2 has the given status, and wakes the long-polls.
func (h *dirHub) publish(version uint64, dp2 string) {
	now := time.Now()
	doc := &directory.Document{Version: version, TrustDomain: h.ca.TD.Name(), IssuedAt: now, ExpiresAt: now.Add(72 * time.Hour),
		Bundle: [][]byte{h.ca.Root.Raw}, Connectors: []hubapi.Connector{
			{Org: "moi", Name: "dp1", Status: hubapi.StatusActive},
			{Org: "moi", Name: "dp2", Status: dp2},
		}}
	signed, err := directory.Sign(doc, h.svid)
	if err != nil {
		h.t.Fatal(err)
	}
	body, err := json.Marshal(signed)
	if err != nil {
		h.t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.version, h.body = version, body
	close(h.changed)
	h.changed = make(chan struct{})
}

func (h *dirHub) pollsAt(url string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.polls[url]
}

// node starts a hub node that answers GET /v1/directory as the hub does. A stalling node takes long-polls
// and never answers them: its process hangs with the connection open.
func (h *dirHub) node(stall bool) *httptest.Server {
	var srv *httptest.Server
	srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != hubapi.PathDirectory || len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, `{"error":"no"}`, http.StatusBadRequest)
			return
		}
		q := r.URL.Query()
		h.mu.Lock()
		version, body, changed := h.version, h.body, h.changed
		if q.Has("after") {
			h.polls[srv.URL]++
		}
		h.mu.Unlock()
		if q.Has("after") {
			after, _ := strconv.ParseUint(q.Get("after"), 10, 64)
			wait, _ := time.ParseDuration(q.Get("wait"))
			if stall {
				<-r.Context().Done()
				return
			}
			if version <= after {
				select {
				case <-r.Context().Done():
					return
				case <-time.After(wait):
					w.WriteHeader(http.StatusNotModified)
					return
				case <-changed:
				}
				h.mu.Lock()
				body = h.body
				h.mu.Unlock()
			}
		}
		w.Write(body)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{spiffetest.TLSCertificate(h.svid)}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS13}
	srv.StartTLS()
	h.t.Cleanup(srv.Close)
	return srv
}

// TestSyncFailsOver runs the directory sync against three hub nodes, one of which is down in some way, and
// checks that the first copy arrives within the client's timeouts and that a revocation reaches the
// connector within 10 s.
func TestSyncFailsOver(t *testing.T) {
	const (
		firstWithin  = 6 * time.Second  // a dial or handshake timeout, and then some
		revokeWithin = 10 * time.Second // what the federation promises with one node of three down
	)
	tests := []struct {
		name string
		// nodes makes the URLs of the three nodes, in hub.url's order; kill, if not nil, takes the node the
		// connector polls down once it polls there.
		nodes func(t *testing.T, h *dirHub) (urls []string, kill func())
		wait  time.Duration // directory.sync_interval, the long-poll's wait
	}{
		{name: "first node hangs (accepts TCP, never answers)", wait: 10 * time.Second, nodes: func(t *testing.T, h *dirHub) ([]string, func()) {
			return []string{hubapitest.HungURL(t), h.node(false).URL, h.node(false).URL}, nil
		}},
		{name: "first node down", wait: 10 * time.Second, nodes: func(t *testing.T, h *dirHub) ([]string, func()) {
			return []string{hubapitest.DeadURL(t), h.node(false).URL, h.node(false).URL}, nil
		}},
		{name: "node stops during the long-poll", wait: 10 * time.Second, nodes: func(t *testing.T, h *dirHub) ([]string, func()) {
			a := h.node(false)
			return []string{a.URL, h.node(false).URL, h.node(false).URL}, func() {
				a.CloseClientConnections()
				a.Close()
			}
		}},
		{name: "node hangs during the long-poll", wait: 2 * time.Second, nodes: func(t *testing.T, h *dirHub) ([]string, func()) {
			return []string{h.node(true).URL, h.node(false).URL, h.node(false).URL}, func() {}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ca := spiffetest.New(t, "mydata.test")
			h := newDirHub(t, ca)
			urls, kill := tt.nodes(t, h)
			src := ca.NewSource(ca.SVID(t, "spiffe://mydata.test/org/moi/connector/dp1", time.Hour))
			conf := tlsconfig.MTLSClientConfig(src, src, fedid.Authorizer(ca.TD, fedid.KindHub, nil))
			client, err := hubapi.NewClientMulti(hubapi.ClientConfig{URLs: urls, TLS: conf})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(client.CloseIdle)
			s, err := New(Config{TD: ca.TD, Path: filepath.Join(t.TempDir(), "directory.json"), Hub: client, Bundles: src,
				SyncInterval: tt.wait, MaxBackoff: time.Second, Refresh: time.Hour, Log: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			dp2 := spiffeid.RequireFromString("spiffe://mydata.test/org/moi/connector/dp2")
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
			}()

			start := time.Now()
			waitFor(t, firstWithin, "the first directory copy", func() bool { return s.Authorize(dp2) == nil })
			if kill != nil {
				// Once the connector's long-poll waits at the first node, that node goes away.
				waitFor(t, time.Second, "a long-poll at the first node", func() bool { return h.pollsAt(urls[0]) > 0 })
				kill()
			} else if took := time.Since(start); took > firstWithin {
				t.Errorf("the first copy took %s", took)
			}
			start = time.Now()
			h.publish(2, hubapi.StatusRevoked)
			waitFor(t, revokeWithin, "the revocation", func() bool { return s.Authorize(dp2) != nil })
			t.Logf("revocation reached the connector in %s, through %s", time.Since(start).Round(time.Millisecond), client.Current())
			if client.Current() == urls[0] {
				t.Errorf("the client still starts at the failed node %s", urls[0])
			}
		})
	}
}

func waitFor(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not come within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
