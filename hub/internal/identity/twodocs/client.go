package twodocs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/mydatafed/mydata/pkg/docregistry"
	"github.com/mydatafed/mydata/pkg/nationalid"
	"github.com/mydatafed/mydata/pkg/strictjson"
)

// What Check returns besides a FieldError. The portal counts only ErrMismatch as a failed try.
var (
	// ErrMismatch: the registry says the documents do not belong to that national ID (or it does not know
	// the ID: it does not say which).
	ErrMismatch = errors.New("the documents do not match the registry")
	// ErrUnavailable: no answer — network, timeout, the registry's 5xx or 429, or it refused the hub's
	// credentials. Not the citizen's fault.
	ErrUnavailable = errors.New("the document registry is unavailable")
	// ErrProtocol: an answer the protocol does not allow — a garbled or oversized body, a redirect, a 4xx
	// other than the above.
	ErrProtocol = errors.New("the document registry answered outside the protocol")
)

const (
	// DefaultID is the method id the portal knows the method by.
	DefaultID = "two-docs"
	// DefaultTimeout bounds one Check, from dialling to the last byte of the answer.
	DefaultTimeout = 5 * time.Second
	// MaxTimeout is the most Config.Timeout may be: a citizen is waiting at the form.
	MaxTimeout = time.Minute
	// MaxResponse is the largest answer read from the registry; {"match":false} is 15 bytes.
	MaxResponse = 4 << 10
)

// Config is the method's configuration, under the portal's section for it.
type Config struct {
	// ID is the method id ("two-docs" by default).
	ID string `yaml:"id"`
	// URL is the registry's endpoint: https://, or http:// to a loopback address only (the demo).
	URL string `yaml:"url"`
	// TokenFile holds the bearer token the registry wants, re-read on every check so it can be rotated.
	TokenFile string `yaml:"token_file"`
	// CAFile holds PEM certificates trusted in addition to the system roots.
	CAFile string `yaml:"ca_file"`
	// ClientCert and ClientKey are a client certificate for registries that want mutual TLS; they are
	// reloaded when the files change.
	ClientCert string `yaml:"client_cert"`
	ClientKey  string `yaml:"client_key"`
	// Timeout bounds one check (DefaultTimeout when zero).
	Timeout time.Duration `yaml:"timeout"`
}

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// WithDefaults fills in what was left empty.
func (c Config) WithDefaults() Config {
	if c.ID == "" {
		c.ID = DefaultID
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	return c
}

// Validate checks the values without touching files or the network; errors name the key.
func (c Config) Validate() error {
	c = c.WithDefaults()
	if !idPattern.MatchString(c.ID) {
		return fmt.Errorf("id: %q is not lower-case letters, digits and hyphens (at most 32)", c.ID)
	}
	if c.URL == "" {
		return errors.New("url: required")
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return fmt.Errorf("url: %v", err)
	}
	if u.Host == "" || u.Scheme != "https" && u.Scheme != "http" {
		return fmt.Errorf("url: %q is not an https:// URL", c.URL)
	}
	if u.User != nil {
		return errors.New("url: holds credentials; use token_file or a client certificate")
	}
	if u.Scheme == "http" {
		if !loopback(u.Hostname()) {
			return fmt.Errorf("url: %q: the documents may travel unencrypted only to a loopback address; use https://", c.URL)
		}
		if c.CAFile != "" || c.ClientCert != "" {
			return errors.New("url: ca_file and client_cert need an https:// URL")
		}
	}
	if (c.ClientCert == "") != (c.ClientKey == "") {
		return errors.New("client_key: client_cert and client_key go together")
	}
	if c.Timeout < 0 || c.Timeout > MaxTimeout {
		return fmt.Errorf("timeout: %s is not between 0 and %s", c.Timeout, MaxTimeout)
	}
	return nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Client asks the registry. It is safe for concurrent use.
type Client struct {
	id        string
	url       string
	host      string // for errors
	tokenFile string
	timeout   time.Duration
	transport *http.Transport
	http      *http.Client
}

// New validates cfg, reads its files once to report a problem now rather than at a citizen's login, and
// builds the client.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	u, _ := url.Parse(cfg.URL)
	c := &Client{id: cfg.ID, url: cfg.URL, host: u.Host, tokenFile: cfg.TokenFile, timeout: cfg.Timeout}
	if c.tokenFile != "" {
		if _, err := c.token(); err != nil {
			return nil, err
		}
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file: no PEM certificate in %s", cfg.CAFile)
		}
		tlsConf.RootCAs = pool
	}
	if cfg.ClientCert != "" {
		kp := &keyPair{certFile: cfg.ClientCert, keyFile: cfg.ClientKey}
		if _, err := kp.get(nil); err != nil {
			return nil, fmt.Errorf("client_cert: %w", err)
		}
		tlsConf.GetClientCertificate = kp.get
	}
	c.transport = &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: c.timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsConf,
		TLSHandshakeTimeout: c.timeout,
		ForceAttemptHTTP2:   true, // a custom TLS config turns it off otherwise
		MaxIdleConns:        16,
		IdleConnTimeout:     90 * time.Second,
	}
	c.http = &http.Client{
		Transport: c.transport,
		// The documents must not travel to a host the configuration did not name.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

// ID is the configured method id.
func (c *Client) ID() string { return c.id }

// Close drops idle connections to the registry.
func (c *Client) Close() error {
	c.transport.CloseIdleConnections()
	return nil
}

// token is read on every check so the registry's operator can rotate it without a restart.
func (c *Client) token() (string, error) {
	data, err := os.ReadFile(c.tokenFile)
	if err != nil {
		return "", fmt.Errorf("token_file: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("token_file: %s is empty", c.tokenFile)
	}
	return tok, nil
}

// Check asks the registry whether docs belong to nationalID. It returns nil on a match; a *FieldError,
// before asking, when the ID or the documents are not in the form the parsers return; otherwise an error
// that wraps ErrMismatch, ErrUnavailable or ErrProtocol. A cancelled ctx gives ErrUnavailable wrapping
// ctx's error. Errors never hold the ID, the documents or the registry's body.
func (c *Client) Check(ctx context.Context, nationalID string, docs Documents) error {
	if nationalid.Valid(nationalID) != nil {
		return fieldErr(FieldNationalID, "not a valid national ID", "身分證字號格式錯誤")
	}
	if err := docs.validate(); err != nil {
		return err
	}
	req := docregistry.Request{NationalID: nationalID, NHICard: docs.NHICard, Household: docs.Household}
	if docs.Household == "" {
		req.IssueDate, req.IssueType = docs.IssueDate.Format(time.DateOnly), string(docs.IssueType)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("two-docs: encode request: %w", err)
	}

	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: request to %s: %v", ErrUnavailable, c.host, err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	hreq.Header.Set("User-Agent", "mydata-hub")
	if c.tokenFile != "" {
		tok, err := c.token()
		if err != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		hreq.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.http.Do(hreq)
	if err != nil {
		return c.unavailable(ctx, "POST", err)
	}
	defer func() {
		// A little of what is left lets the connection be reused; the deadline bounds a stalling body.
		io.Copy(io.Discard, io.LimitReader(resp.Body, MaxResponse))
		resp.Body.Close()
	}()
	switch code := resp.StatusCode; {
	case code == http.StatusOK:
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return fmt.Errorf("%w: %s refused the hub's credentials (HTTP %d): check token_file and client_cert", ErrUnavailable, c.host, code)
	case code == http.StatusTooManyRequests || code >= 500:
		return fmt.Errorf("%w: %s answered HTTP %d", ErrUnavailable, c.host, code)
	default:
		return fmt.Errorf("%w: %s answered HTTP %d", ErrProtocol, c.host, code)
	}
	if resp.ContentLength > MaxResponse {
		return fmt.Errorf("%w: %s announces %d bytes, more than %d", ErrProtocol, c.host, resp.ContentLength, MaxResponse)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse+1))
	if err != nil {
		return c.unavailable(ctx, "read answer from", err)
	}
	var ans docregistry.Response
	if err := strictjson.Unmarshal(data, MaxResponse, &ans); err != nil {
		// strictjson's message quotes at most a token of the body, never the request.
		return fmt.Errorf("%w: %s: %v", ErrProtocol, c.host, err)
	}
	if ans.Match == nil {
		return fmt.Errorf("%w: %s: no \"match\" in the answer", ErrProtocol, c.host)
	}
	if !*ans.Match {
		return ErrMismatch
	}
	return nil
}

func (c *Client) unavailable(ctx context.Context, step string, err error) error {
	if ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%w: %s %s: no answer within %s: %w", ErrUnavailable, step, c.host, c.timeout, ctx.Err())
		}
		return fmt.Errorf("%w: %s %s: %w", ErrUnavailable, step, c.host, ctx.Err())
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err // the URL is in c.host already
	}
	return fmt.Errorf("%w: %s %s: %v", ErrUnavailable, step, c.host, err)
}

// keyPair hands the TLS stack the client certificate, reloading it when its files change so a renewed
// certificate is used without a restart.
type keyPair struct {
	certFile, keyFile string

	mu              sync.Mutex
	cert            *tls.Certificate
	certMod, keyMod time.Time
}

func (k *keyPair) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	cs, cerr := os.Stat(k.certFile)
	ks, kerr := os.Stat(k.keyFile)
	k.mu.Lock()
	defer k.mu.Unlock()
	if cerr == nil && kerr == nil && k.cert != nil && cs.ModTime().Equal(k.certMod) && ks.ModTime().Equal(k.keyMod) {
		return k.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		if k.cert != nil {
			return k.cert, nil // keep the last good pair while a renewal is half written
		}
		return nil, err
	}
	k.cert = &cert
	if cerr == nil && kerr == nil {
		k.certMod, k.keyMod = cs.ModTime(), ks.ModTime()
	}
	return k.cert, nil
}
