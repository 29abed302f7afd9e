package hubapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/hubapi/hubapitest"
)

// testNode is a hub node for the client's tests: a real TLS server whose answer can be changed, or an
// address where nothing listens, or one that accepts TCP and never says a word.
type testNode struct {
	url  string
	hits atomic.Int64
	// kind is what the node does now: ok, dead, hung, stall (TLS, then no answer), or an HTTP status.
	kind       atomic.Value
	retryAfter string
}

// nodeKinds a test may use.
const (
	kindOK    = "ok"
	kindDead  = "dead"
	kindHung  = "hung"
	kindStall = "stall"
)

type echo struct {
	N    int    `json:"n"`
	Node string `json:"node,omitempty"`
}

func startNode(t *testing.T, kind string) *testNode {
	t.Helper()
	n := &testNode{}
	n.kind.Store(kind)
	switch kind {
	case kindDead:
		n.url = hubapitest.DeadURL(t)
		return n
	case kindHung:
		n.url = hubapitest.HungURL(t)
		return n
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.hits.Add(1)
		var in echo
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.N != 7 {
			http.Error(w, `{"error":"body did not arrive whole"}`, http.StatusBadRequest)
			return
		}
		switch k := n.kind.Load().(string); k {
		case kindOK:
			json.NewEncoder(w).Encode(echo{N: in.N, Node: n.url})
		case kindStall:
			<-r.Context().Done()
		default:
			if n.retryAfter != "" {
				w.Header().Set("Retry-After", n.retryAfter)
			}
			w.WriteHeader(atoi(t, k))
			io.WriteString(w, `{"error":"answer `+k+`"}`)
		}
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	n.url = srv.URL
	return n
}

func atoi(t *testing.T, s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Errorf("node kind %q", s)
	}
	return n
}

// testTLS trusts the httptest servers' certificate, which all of them share.
func testTLS(t *testing.T) *tls.Config {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.StartTLS()
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

func urls(nodes []*testNode) []string {
	var us []string
	for _, n := range nodes {
		us = append(us, n.url)
	}
	return us
}

func hits(nodes []*testNode) []int64 {
	var h []int64
	for _, n := range nodes {
		h = append(h, n.hits.Load())
	}
	return h
}

func newTestClient(t *testing.T, nodes []*testNode, cfg ClientConfig) *Client {
	t.Helper()
	cfg.URLs = urls(nodes)
	cfg.TLS = testTLS(t)
	if cfg.Backoff == 0 {
		cfg.Backoff = time.Millisecond
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = 300 * time.Millisecond
	}
	c, err := NewClientMulti(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdle)
	return c
}

func TestClientFailover(t *testing.T) {
	tests := []struct {
		name   string
		nodes  []string
		rounds int
		// want is the index of the node that answers, or -1.
		want       int
		wantStatus int // of the *Error, if want is -1
		wantErr    []string
		wantHits   []int64
	}{
		{name: "first answers", nodes: []string{kindOK, kindOK}, want: 0, wantHits: []int64{1, 0}},
		{name: "dead first node", nodes: []string{kindDead, kindOK}, want: 1, wantHits: []int64{0, 1}},
		{name: "hung first node", nodes: []string{kindHung, kindOK}, want: 1, wantHits: []int64{0, 1}},
		{name: "503 node", nodes: []string{"503", kindOK}, want: 1, wantHits: []int64{1, 1}},
		{name: "502 and 504 nodes", nodes: []string{"502", "504", kindOK}, want: 2, wantHits: []int64{1, 1, 1}},
		{name: "400 is not sent elsewhere", nodes: []string{"400", kindOK}, want: -1, wantStatus: 400, wantHits: []int64{1, 0}},
		{name: "409 is not sent elsewhere", nodes: []string{"409", kindOK}, want: -1, wantStatus: 409, wantHits: []int64{1, 0}},
		{name: "500 is not sent elsewhere", nodes: []string{"500", kindOK}, want: -1, wantStatus: 500, wantHits: []int64{1, 0}},
		{name: "every node 503", nodes: []string{"503", "503"}, rounds: 3, want: -1, wantStatus: 503,
			wantErr: []string{"no node answered in 3 round(s)", "answer 503"}, wantHits: []int64{3, 3}},
		{name: "every node dead", nodes: []string{kindDead, kindDead, kindHung}, rounds: 2, want: -1,
			wantErr: []string{"no node answered in 2 round(s)", "connection refused", "handshake timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var nodes []*testNode
			for _, k := range tt.nodes {
				nodes = append(nodes, startNode(t, k))
			}
			c := newTestClient(t, nodes, ClientConfig{Rounds: tt.rounds})
			var out echo
			err := c.Do(context.Background(), http.MethodPost, "/v1/test", echo{N: 7}, &out)
			if tt.want >= 0 {
				if err != nil {
					t.Fatal(err)
				}
				if out.Node != nodes[tt.want].url || c.Current() != nodes[tt.want].url {
					t.Errorf("answered by %s, current %s; want %s", out.Node, c.Current(), nodes[tt.want].url)
				}
			} else {
				if err == nil {
					t.Fatal("no error")
				}
				var he *Error
				if tt.wantStatus != 0 && (!errors.As(err, &he) || he.Status != tt.wantStatus) {
					t.Errorf("err = %v, want HTTP %d", err, tt.wantStatus)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("err = %v, want it to say %q", err, s)
					}
				}
				var ue *UnreachableError
				if errors.As(err, &ue) {
					// Whoever reads the error must learn every URL that was tried.
					for _, n := range nodes {
						if !strings.Contains(err.Error(), n.url) {
							t.Errorf("err = %v does not name %s", err, n.url)
						}
					}
				} else if len(tt.wantErr) > 0 {
					t.Errorf("err = %T, want *UnreachableError", err)
				}
			}
			if tt.wantHits != nil {
				if got := hits(nodes); !equal(got, tt.wantHits) {
					t.Errorf("hits = %v, want %v", got, tt.wantHits)
				}
			}
		})
	}
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestClientSticky checks that requests start at the node that answered last, and that every change of it
// is reported once.
func TestClientSticky(t *testing.T) {
	a, b := startNode(t, "503"), startNode(t, kindOK)
	nodes := []*testNode{a, b}
	var moves []string
	var mu sync.Mutex
	c := newTestClient(t, nodes, ClientConfig{OnFailover: func(from, to string, why error) {
		mu.Lock()
		defer mu.Unlock()
		if why == nil {
			t.Errorf("failover %s to %s without a reason", from, to)
		}
		moves = append(moves, from+">"+to)
	}})
	steps := []struct {
		name     string
		setA     string
		setB     string
		want     *testNode
		wantHits []int64
	}{
		{name: "a fails, b answers", want: b, wantHits: []int64{1, 1}},
		{name: "b again, a not asked though it is back", setA: kindOK, want: b, wantHits: []int64{1, 2}},
		{name: "b fails, a answers", setB: "503", want: a, wantHits: []int64{2, 3}},
		{name: "a again", setB: kindOK, want: a, wantHits: []int64{3, 3}},
	}
	for _, st := range steps {
		if st.setA != "" {
			a.kind.Store(st.setA)
		}
		if st.setB != "" {
			b.kind.Store(st.setB)
		}
		var out echo
		if err := c.Do(context.Background(), http.MethodPost, "/v1/test", echo{N: 7}, &out); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if out.Node != st.want.url || c.Current() != st.want.url {
			t.Errorf("%s: answered by %s, current %s, want %s", st.name, out.Node, c.Current(), st.want.url)
		}
		if got := hits(nodes); !equal(got, st.wantHits) {
			t.Errorf("%s: hits = %v, want %v", st.name, got, st.wantHits)
		}
	}
	want := []string{a.url + ">" + b.url, b.url + ">" + a.url}
	if strings.Join(moves, " ") != strings.Join(want, " ") {
		t.Errorf("failovers %v, want %v", moves, want)
	}
}

func TestClientRetryAfter(t *testing.T) {
	tests := []struct {
		name        string
		retryAfter  string
		maxRA       time.Duration
		least, most time.Duration
	}{
		{name: "honoured", retryAfter: "1", least: 900 * time.Millisecond, most: 3 * time.Second},
		{name: "bounded", retryAfter: "3600", maxRA: 200 * time.Millisecond, least: 150 * time.Millisecond, most: 2 * time.Second},
		{name: "HTTP date", retryAfter: time.Now().Add(time.Hour).UTC().Format(http.TimeFormat), maxRA: 300 * time.Millisecond,
			least: 250 * time.Millisecond, most: 2 * time.Second},
		{name: "garbage ignored", retryAfter: "soon", least: 0, most: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := startNode(t, "503")
			n.retryAfter = tt.retryAfter
			c := newTestClient(t, []*testNode{n}, ClientConfig{Rounds: 2, MaxRetryAfter: tt.maxRA})
			start := time.Now()
			err := c.Do(context.Background(), http.MethodPost, "/v1/test", echo{N: 7}, nil)
			took := time.Since(start)
			var he *Error
			if !errors.As(err, &he) || he.Status != 503 {
				t.Fatalf("err = %v", err)
			}
			if took < tt.least || took > tt.most {
				t.Errorf("took %s, want between %s and %s", took, tt.least, tt.most)
			}
			if n.hits.Load() != 2 {
				t.Errorf("hits = %d, want 2", n.hits.Load())
			}
		})
	}
}

// TestClientContext checks that the caller's context ends the backoff at once, and that a deadline too near
// for the next round ends it without waiting for the deadline.
func TestClientContext(t *testing.T) {
	tests := []struct {
		name    string
		ctx     func() (context.Context, context.CancelFunc)
		cancel  time.Duration
		wantIs  error
		wantErr string
	}{
		{name: "cancelled during backoff", ctx: func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
			cancel: 200 * time.Millisecond, wantIs: context.Canceled, wantErr: "context canceled before a node answered"},
		{name: "deadline before next round", ctx: func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 5*time.Second)
		}, wantErr: "no node answered in 1 round(s)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nodes := []*testNode{startNode(t, kindDead), startNode(t, kindDead)}
			c := newTestClient(t, nodes, ClientConfig{Rounds: 1000, Backoff: time.Minute, MaxBackoff: time.Minute})
			ctx, cancel := tt.ctx()
			defer cancel()
			if tt.cancel > 0 {
				time.AfterFunc(tt.cancel, cancel)
			}
			start := time.Now()
			err := c.Do(ctx, http.MethodGet, PathHealth, nil, nil)
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("took %s", took)
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("err = %v, want it to be %v", err, tt.wantIs)
			}
			for _, n := range nodes {
				if !strings.Contains(err.Error(), n.url) {
					t.Errorf("err = %v does not name %s", err, n.url)
				}
			}
		})
	}
}

// TestClientAnswerWithin checks that a node which took the request but does not answer is left for the
// next one once the answer is overdue, and that the next request starts at the node that answered.
func TestClientAnswerWithin(t *testing.T) {
	stall, ok := startNode(t, kindStall), startNode(t, kindOK)
	c := newTestClient(t, []*testNode{stall, ok}, ClientConfig{})
	start := time.Now()
	var out echo
	if err := c.Do(context.Background(), http.MethodPost, "/v1/test", echo{N: 7}, &out, AnswerWithin(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second || out.Node != ok.url || c.Current() != ok.url {
		t.Fatalf("answered by %s after %s, current %s", out.Node, took, c.Current())
	}
}

// TestClientDeadlineMoves checks that a node which let the caller's deadline pass is not where the next
// request starts.
func TestClientDeadlineMoves(t *testing.T) {
	stall, ok := startNode(t, kindStall), startNode(t, kindOK)
	var moved atomic.Int64
	c := newTestClient(t, []*testNode{stall, ok}, ClientConfig{OnFailover: func(string, string, error) { moved.Add(1) }})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := c.Do(ctx, http.MethodPost, "/v1/test", echo{N: 7}, nil)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), stall.url) {
		t.Fatalf("err = %v", err)
	}
	if c.Current() != ok.url || moved.Load() != 1 {
		t.Fatalf("current %s after %d failovers, want %s after 1", c.Current(), moved.Load(), ok.url)
	}
}

func TestNewClientMulti(t *testing.T) {
	tests := []struct {
		name    string
		urls    []string
		wantErr string
	}{
		{name: "one", urls: []string{"https://hub:8443"}},
		{name: "three", urls: []string{"https://h1:8443", "https://h2:8443/", "https://h3:8443"}},
		{name: "none", wantErr: "no URL"},
		{name: "http", urls: []string{"https://h1:8443", "http://h2:8443"}, wantErr: `URL 1: "http://h2:8443" is not an https:// URL`},
		{name: "no host", urls: []string{"https://"}, wantErr: "URL 0"},
		{name: "repeated", urls: []string{"https://h1:8443", "https://h1:8443/"}, wantErr: "URL 1 repeats URL 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewClientMulti(ClientConfig{URLs: tt.urls})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Current() != strings.TrimRight(tt.urls[0], "/") || len(c.URLs()) != len(tt.urls) {
				t.Fatalf("current %s, urls %v", c.Current(), c.URLs())
			}
		})
	}
}

// TestNewClientTriesOnce keeps the single-URL client of the operator's command line as it was: one try, and
// the error says where.
func TestNewClientTriesOnce(t *testing.T) {
	n := startNode(t, "503")
	c := NewClient(n.url, testTLS(t))
	defer c.CloseIdle()
	err := c.Do(context.Background(), http.MethodPost, "/v1/test", echo{N: 7}, nil)
	var he *Error
	if !errors.As(err, &he) || he.Status != 503 || !strings.Contains(err.Error(), n.url) || n.hits.Load() != 1 {
		t.Fatalf("err = %v after %d requests", err, n.hits.Load())
	}
}
