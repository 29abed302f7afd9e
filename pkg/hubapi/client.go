package hubapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// MaxResponse bounds what a client reads from the hub.
const MaxResponse = 4 << 20

// Defaults of ClientConfig. A node that is down or black-holed must be left within a few seconds: a
// revocation has to reach every connector within 10 s while one hub node of three is down.
const (
	DefaultDialTimeout      = 3 * time.Second
	DefaultHandshakeTimeout = 3 * time.Second
	DefaultRounds           = 4
	DefaultBackoff          = 250 * time.Millisecond
	DefaultMaxBackoff       = 5 * time.Second
	DefaultMaxRetryAfter    = 5 * time.Second
)

// TCP keep-alive probes find a peer host that went away under an established connection (a long-poll
// waiting on HTTP/1.1, where no ping exists) in about idle + interval*count.
const (
	keepAliveIdle     = 2 * time.Second
	keepAliveInterval = time.Second
	keepAliveCount    = 3
	// HTTP/2 pings do the same above TCP when the hub speaks HTTP/2.
	pingAfter   = 3 * time.Second
	pingTimeout = 2 * time.Second
)

// ClientConfig configures a Client of one or more hub nodes. Zero values take the defaults above.
type ClientConfig struct {
	// URLs are the base URLs (https://host:port) of the hub's nodes, each of which serves every request.
	URLs []string
	TLS  *tls.Config
	// DialTimeout bounds connecting to a node, HandshakeTimeout the TLS handshake after that.
	DialTimeout, HandshakeTimeout time.Duration
	// Rounds bounds how many times a request goes through every URL before it fails.
	Rounds int
	// Backoff is the wait after the first round in which every URL failed; it doubles each round, with
	// jitter, up to MaxBackoff. A node's Retry-After lengthens it, up to MaxRetryAfter.
	Backoff, MaxBackoff, MaxRetryAfter time.Duration
	// OnFailover, if not nil, is called whenever the URL requests start at changes; why is what the request
	// that moved saw at from (nil if it saw nothing there).
	OnFailover func(from, to string, why error)
}

// Client calls the hub's API. It sends each request to the node that answered last, and on a transport
// failure or a 502, 503 or 504 moves on to the next node and sends it again; once every node failed it backs
// off and goes round again, until its rounds or the caller's context run out.
type Client struct {
	urls []string
	cfg  ClientConfig
	http *http.Client
	// cur is the index of the URL requests start at: the one that answered last.
	cur atomic.Int64
}

// NewClient makes a client for the single hub node at baseURL with the given TLS configuration. It tries
// once: the operator's command line reports a failure at once rather than retrying.
func NewClient(baseURL string, tlsConf *tls.Config) *Client {
	return newClient(ClientConfig{URLs: []string{baseURL}, TLS: tlsConf, Rounds: 1})
}

// NewClientMulti makes a client for the hub nodes at cfg.URLs, which must be distinct https:// URLs.
func NewClientMulti(cfg ClientConfig) (*Client, error) {
	if len(cfg.URLs) == 0 {
		return nil, errors.New("hub client: no URL")
	}
	seen := map[string]int{}
	for i, u := range cfg.URLs {
		if err := ValidBaseURL(u); err != nil {
			return nil, fmt.Errorf("hub client: URL %d: %w", i, err)
		}
		u = strings.TrimRight(u, "/")
		if j, ok := seen[u]; ok {
			return nil, fmt.Errorf("hub client: URL %d repeats URL %d, %q", i, j, u)
		}
		seen[u] = i
	}
	return newClient(cfg), nil
}

// ValidBaseURL checks that u is an https:// URL with a host.
func ValidBaseURL(u string) error {
	p, err := url.Parse(u)
	if err != nil || p.Scheme != "https" || p.Host == "" {
		return fmt.Errorf("%q is not an https:// URL", u)
	}
	return nil
}

func newClient(cfg ClientConfig) *Client {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.DialTimeout, DefaultDialTimeout)
	def(&cfg.HandshakeTimeout, DefaultHandshakeTimeout)
	def(&cfg.Backoff, DefaultBackoff)
	def(&cfg.MaxBackoff, DefaultMaxBackoff)
	def(&cfg.MaxRetryAfter, DefaultMaxRetryAfter)
	if cfg.Rounds <= 0 {
		cfg.Rounds = DefaultRounds
	}
	dialer := &net.Dialer{
		Timeout:         cfg.DialTimeout,
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: keepAliveIdle, Interval: keepAliveInterval, Count: keepAliveCount},
	}
	tr := &http.Transport{
		DialContext:       dialer.DialContext,
		TLSClientConfig:   cfg.TLS,
		ForceAttemptHTTP2: true,
		HTTP2:             &http.HTTP2Config{SendPingTimeout: pingAfter, PingTimeout: pingTimeout},
		// An SP connector redeems many codes at once; every connection beyond the idle pool would pay a
		// fresh mutual-TLS handshake (measured: 15 % of the SP's CPU with 4).
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: cfg.HandshakeTimeout,
	}
	c := &Client{cfg: cfg, http: &http.Client{Transport: tr}}
	for _, u := range cfg.URLs {
		c.urls = append(c.urls, strings.TrimRight(u, "/"))
	}
	return c
}

// URLs are the hub nodes' base URLs, in the configured order.
func (c *Client) URLs() []string { return append([]string(nil), c.urls...) }

// Current is the URL the next request starts at: the node that answered last.
func (c *Client) Current() string { return c.urls[c.cur.Load()] }

// CloseIdle drops pooled connections, so that the next call handshakes with the current certificate.
func (c *Client) CloseIdle() { c.http.CloseIdleConnections() }

// CallOption adjusts one call.
type CallOption func(*callOptions)

type callOptions struct {
	answerWithin time.Duration
}

// AnswerWithin gives up on a node that has not begun to answer d after the request was sent, and tries the
// next: a long-poll passes its wait plus a margin, so that a node that hangs, or that went away under an
// established connection, is left soon after the answer was due.
func AnswerWithin(d time.Duration) CallOption {
	return func(o *callOptions) { o.answerWithin = d }
}

// Do sends in (if not nil) as JSON and decodes a 2xx answer into out (if not nil). A non-2xx answer is an
// *Error; when no node gave an answer the error is an *UnreachableError, which wraps the last failure.
func (c *Client) Do(ctx context.Context, method, path string, in, out any, opts ...CallOption) error {
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = b
	}
	resp, err := c.send(ctx, method, path, body, opts)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse+1))
	if err != nil {
		return fmt.Errorf("read hub answer: %w", err)
	}
	if len(data) > MaxResponse {
		return fmt.Errorf("hub answer larger than %d bytes", MaxResponse)
	}
	if resp.StatusCode/100 != 2 {
		e := answerError(resp.StatusCode, data)
		e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"))
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode hub answer: %w", err)
	}
	return nil
}

// Download GETs path and copies a 2xx body to w; a non-2xx answer is an *Error.
func (c *Client) Download(ctx context.Context, path string, w io.Writer, opts ...CallOption) error {
	resp, err := c.send(ctx, http.MethodGet, path, nil, opts)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, MaxResponse))
		return answerError(resp.StatusCode, data)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

func answerError(status int, data []byte) *Error {
	e := &Error{Status: status}
	if json.Unmarshal(data, e) != nil || e.Message == "" {
		e.Message = strings.TrimSpace(string(data))
	}
	return e
}

// retryable are the answers of a node that did not handle the request: a proxy in front of it that could
// not reach it, or the node saying it cannot serve now (no raft leader, shutting down).
func retryable(status int) bool {
	return status == http.StatusBadGateway || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout
}

// send returns the first answer other than 502, 503 or 504, trying the nodes in turn from the current one.
// A node's answer is never sent again elsewhere: the request may have taken effect there.
func (c *Client) send(ctx context.Context, method, path string, body []byte, opts []CallOption) (*http.Response, error) {
	var o callOptions
	for _, opt := range opts {
		opt(&o)
	}
	n := len(c.urls)
	failed := make([]error, n) // the last failure at each URL
	order := make([]int, 0, n) // the URLs in the order first tried
	var last error
	unreachable := func(rounds int, cause error) error {
		e := &UnreachableError{Method: method, Path: path, Rounds: rounds, Last: last, Cause: cause}
		for _, i := range order {
			e.Tried = append(e.Tried, Attempt{URL: c.urls[i], Err: failed[i]})
		}
		return e
	}
	backoff := c.cfg.Backoff
	for round := 1; ; round++ {
		start := int(c.cur.Load())
		var retryAfter time.Duration
		for k := range n {
			i := (start + k) % n
			if round == 1 {
				order = append(order, i)
			}
			resp, ra, err := c.attempt(ctx, c.urls[i], method, path, body, o)
			if err == nil {
				if from := int(c.cur.Swap(int64(i))); from != i {
					c.moved(from, i, failed[from])
				}
				return resp, nil
			}
			failed[i], last = err, err
			retryAfter = max(retryAfter, ra)
			if ctx.Err() != nil {
				// A node that let the caller's deadline pass is as good as down: the next request starts
				// at the next one.
				if errors.Is(ctx.Err(), context.DeadlineExceeded) && n > 1 && c.cur.CompareAndSwap(int64(i), int64((i+1)%n)) {
					c.moved(i, (i+1)%n, err)
				}
				return nil, unreachable(round, ctx.Err())
			}
		}
		if round >= c.cfg.Rounds {
			return nil, unreachable(round, nil)
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		wait = max(wait, min(retryAfter, c.cfg.MaxRetryAfter))
		backoff = min(backoff*2, c.cfg.MaxBackoff)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return nil, unreachable(round, nil) // waiting would only end in the caller's deadline
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, unreachable(round, ctx.Err())
		case <-t.C:
		}
	}
}

func (c *Client) moved(from, to int, why error) {
	if c.cfg.OnFailover != nil {
		c.cfg.OnFailover(c.urls[from], c.urls[to], why)
	}
}

// errNoAnswer ends an attempt whose node did not begin to answer within AnswerWithin.
var errNoAnswer = errors.New("no answer in time")

// attempt sends the request to one node. It returns the response unless the node failed: a transport
// error, or a 502, 503 or 504 answer (then with the node's Retry-After, if any).
func (c *Client) attempt(ctx context.Context, base, method, path string, body []byte, o callOptions) (*http.Response, time.Duration, error) {
	actx, cancel := context.WithCancelCause(ctx)
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(actx, method, base+path, rd)
	if err != nil {
		cancel(nil)
		return nil, 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	var timer *time.Timer
	if o.answerWithin > 0 {
		timer = time.AfterFunc(o.answerWithin, func() { cancel(errNoAnswer) })
	}
	resp, err := c.http.Do(req)
	if timer != nil {
		timer.Stop()
	}
	if err != nil {
		cancel(nil)
		if ctx.Err() == nil && errors.Is(context.Cause(actx), errNoAnswer) {
			return nil, 0, fmt.Errorf("no answer within %s", o.answerWithin)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is named by whoever reports the failure
		}
		return nil, 0, err
	}
	if retryable(resp.StatusCode) {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, MaxResponse))
		resp.Body.Close()
		cancel(nil)
		return nil, retryAfter(resp.Header.Get("Retry-After")), answerError(resp.StatusCode, data)
	}
	// The attempt's context must live while the caller reads the body.
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: func() { cancel(nil) }}
	return resp, 0, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel func()
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		return max(time.Duration(s)*time.Second, 0)
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// Attempt is a URL a request was sent to and the last failure there.
type Attempt struct {
	URL string
	Err error
}

// UnreachableError is the error of a request that no hub node answered: each failed (a transport error, or
// 502, 503 or 504) in every round, or the caller's context ended first.
type UnreachableError struct {
	Method, Path string
	// Rounds is how many times every URL was tried.
	Rounds int
	// Tried holds every URL tried, in the order first tried, with the last failure there.
	Tried []Attempt
	// Last is the last failure; Cause is the caller's context error if that ended the request.
	Last, Cause error
}

func (e *UnreachableError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "hub: %s %s: ", e.Method, e.Path)
	if e.Cause != nil {
		fmt.Fprintf(&b, "%v before a node answered; ", e.Cause)
	} else {
		fmt.Fprintf(&b, "no node answered in %d round(s); ", e.Rounds)
	}
	b.WriteString("tried ")
	for i, a := range e.Tried {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s (%v)", a.URL, a.Err)
	}
	return b.String()
}

// Unwrap gives the last failure, so that errors.As finds an *Error, and the context's error.
func (e *UnreachableError) Unwrap() []error {
	var errs []error
	if e.Last != nil {
		errs = append(errs, e.Last)
	}
	if e.Cause != nil {
		errs = append(errs, e.Cause)
	}
	return errs
}

// PinnedTLSConfig trusts a hub whose chain contains the root with the given SHA-256 fingerprint and whose
// leaf is a hub SVID under that root. It is for first contact, before the connector holds the bundle.
func PinnedTLSConfig(fingerprint [32]byte) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The standard verification needs roots we do not have yet; VerifyPeerCertificate does the whole job.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			return verifyPinned(raw, fingerprint)
		},
	}
}

func verifyPinned(raw [][]byte, fingerprint [32]byte) error {
	if len(raw) == 0 {
		return errors.New("hub sent no certificate")
	}
	var root *x509.Certificate
	inter := x509.NewCertPool()
	certs := make([]*x509.Certificate, 0, len(raw))
	for _, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return fmt.Errorf("hub certificate: %w", err)
		}
		certs = append(certs, c)
		if sha256.Sum256(r) == fingerprint && c.IsCA {
			root = c
		} else {
			inter.AddCert(c)
		}
	}
	if root == nil {
		return errors.New("hub's certificate chain does not contain the pinned CA (check --hub-ca or the token)")
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	chains, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err != nil {
		return fmt.Errorf("hub certificate does not chain to the pinned CA: %w", err)
	}
	id, err := x509svid.IDFromCert(certs[0])
	if err != nil {
		return fmt.Errorf("hub certificate: %w", err)
	}
	if len(root.URIs) != 1 {
		return errors.New("pinned CA names no trust domain")
	}
	td, err := spiffeid.TrustDomainFromURI(root.URIs[0])
	if err != nil {
		return fmt.Errorf("pinned CA: %w", err)
	}
	return fedid.Authorizer(td, fedid.KindHub, nil)(id, chains)
}
