package backend

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// defaultRetryAfter is used when the agency answers 202 Accepted without saying when to come back.
const defaultRetryAfter = 30 * time.Second

type httpBackend struct {
	url       string // template
	host      string // for the log: the URL itself carries the subject
	client    *http.Client
	transport *http.Transport
	timeout   time.Duration
	tokenFile string
	maxBytes  int64
	now       func() time.Time // for Retry-After dates; tests set it
}

func (c Config) validateHTTP() error {
	h := c.HTTP
	if h.URL == "" {
		return errors.New("http.url: required")
	}
	if !strings.Contains(h.URL, SubjectPlaceholder) {
		return fmt.Errorf("http.url: %q does not contain %s", h.URL, SubjectPlaceholder)
	}
	u, err := url.Parse(strings.ReplaceAll(h.URL, SubjectPlaceholder, "s1"))
	if err != nil {
		return fmt.Errorf("http.url: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("http.url: %q is not an http:// or https:// URL", h.URL)
	}
	if u.User != nil {
		// Credentials in the URL end up in logs and proxies; the token file keeps them apart.
		return errors.New("http.url: holds credentials; use http.bearer_token_file or a client certificate")
	}
	if u2, _ := url.Parse(strings.ReplaceAll(h.URL, SubjectPlaceholder, "s2")); u2 == nil || u2.Host != u.Host {
		return fmt.Errorf("http.url: %s must be in the path or query, not the host", SubjectPlaceholder)
	}
	if (h.ClientCert == "") != (h.ClientKey == "") {
		return errors.New("http.client_key: http.client_cert and http.client_key go together")
	}
	if u.Scheme != "https" {
		switch {
		case h.ClientCert != "":
			return errors.New("http.client_cert: needs an https:// url")
		case h.CAFile != "":
			return errors.New("http.ca_file: needs an https:// url")
		}
	}
	if err := nonNegative("http.timeout", h.Timeout); err != nil {
		return err
	}
	return nonNegative("http.max_bytes", h.MaxBytes)
}

func newHTTP(c Config) (*httpBackend, error) {
	h := c.HTTP
	b := &httpBackend{url: h.URL, timeout: h.Timeout, tokenFile: h.BearerTokenFile, maxBytes: h.MaxBytes, now: time.Now}
	if u, err := url.Parse(strings.ReplaceAll(h.URL, SubjectPlaceholder, "s")); err == nil {
		b.host = u.Host
	}
	if b.timeout == 0 {
		b.timeout = DefaultHTTPTimeout
	}
	if b.maxBytes == 0 {
		b.maxBytes = DefaultHTTPMaxBytes
	}
	if b.tokenFile != "" {
		if _, err := b.token(); err != nil {
			return nil, err
		}
	}
	var err error
	if b.transport, err = agencyTransport("http", b.timeout, h.CAFile, h.ClientCert, h.ClientKey); err != nil {
		return nil, err
	}
	b.client = &http.Client{
		Transport: b.transport,
		// No Timeout: it would cut long bodies; the watchdog in Fetch bounds each wait instead.
		// No redirects: the subject must not travel to a host the agency's config did not name.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return b, nil
}

// agencyTransport is the transport to an agency's API: TLS 1.2 or later, the agency's CA only if caFile is
// set, a client certificate reloaded when its files change, and each step bounded by timeout. key names the
// config section in errors.
func agencyTransport(key string, timeout time.Duration, caFile, clientCert, clientKey string) (*http.Transport, error) {
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("%w: %s.ca_file: %w", ErrBackend, key, err)
		}
		// Only the agency's CA, not the system roots: the agency's server is the only peer we expect.
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: %s.ca_file: no PEM certificate in %s", ErrBackend, key, caFile)
		}
		tlsConf.RootCAs = pool
	}
	if clientCert != "" {
		kp := &keyPair{certFile: clientCert, keyFile: clientKey}
		if _, err := kp.get(nil); err != nil {
			return nil, fmt.Errorf("%w: %s.client_cert: %w", ErrBackend, key, err)
		}
		tlsConf.GetClientCertificate = kp.get
	}
	dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		ForceAttemptHTTP2:     true, // a custom TLS config turns it off otherwise
		MaxIdleConns:          16,
		IdleConnTimeout:       90 * time.Second,
	}, nil
}

func (b *httpBackend) Close() error {
	b.transport.CloseIdleConnections()
	return nil
}

// token is read on every fetch so the agency can rotate it without restarting the connector.
func (b *httpBackend) token() (string, error) {
	data, err := os.ReadFile(b.tokenFile)
	if err != nil {
		return "", fmt.Errorf("%w: http.bearer_token_file: %w", ErrBackend, err)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("%w: http.bearer_token_file: %s is empty", ErrBackend, b.tokenFile)
	}
	return tok, nil
}

func (b *httpBackend) Fetch(ctx context.Context, subject string) (*Result, error) {
	if err := checkSubject(subject); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.ReplaceAll(b.url, SubjectPlaceholder, url.PathEscape(subject)), nil)
	if err != nil {
		cancel()
		return nil, failf("http: request to %s: %v", b.host, stripURL(err))
	}
	req.Header.Set("User-Agent", "mydata-connector")
	if b.tokenFile != "" {
		tok, err := b.token()
		if err != nil {
			cancel()
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	// The watchdog bounds connecting and the headers together; the transport's own timeouts bound
	// each step, but a slow dial plus a slow handshake plus slow headers could otherwise add up.
	wd := newWatchdog(b.timeout, cancel)
	resp, err := b.client.Do(req)
	wd.disarm()
	if err != nil {
		cancel()
		if wd.expired() {
			return nil, failf("http: GET %s: no answer within %s: %w", b.host, b.timeout, context.DeadlineExceeded)
		}
		return nil, failf("http: GET %s: %w", b.host, stripURL(err))
	}
	done := func() {
		// Reading a little of what is left lets the connection be reused; the watchdog keeps an agency
		// that stalls mid-body from holding the fetch.
		wd.arm()
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		wd.disarm()
		resp.Body.Close()
		cancel()
	}
	switch resp.StatusCode {
	case http.StatusOK:
		if resp.ContentLength > b.maxBytes {
			resp.Body.Close()
			cancel()
			return nil, failf("http: %s announces %d bytes, more than http.max_bytes (%d)", b.host, resp.ContentLength, b.maxBytes)
		}
		ct := resp.Header.Get("Content-Type")
		if ct == "" {
			ct = "application/octet-stream"
		}
		body := &httpBody{rc: resp.Body, max: b.maxBytes, wd: wd, cancel: cancel, host: b.host, key: TypeHTTP, timeout: b.timeout}
		return &Result{Status: Found, ContentType: ct, Size: resp.ContentLength, Body: body}, nil
	case http.StatusNotFound:
		done()
		return &Result{Status: NoRecord, Size: -1}, nil
	case http.StatusAccepted, http.StatusServiceUnavailable:
		done()
		wait, ok := parseRetryAfter(resp.Header.Get("Retry-After"), b.now())
		switch {
		case ok:
			return &Result{Status: NotReady, RetryAfter: wait, Size: -1}, nil
		case resp.StatusCode == http.StatusAccepted:
			return &Result{Status: NotReady, RetryAfter: defaultRetryAfter, Size: -1}, nil
		}
		// 503 without a time to come back is an outage, not an answer about this subject.
	default:
		done()
	}
	return nil, failf("http: %s answered %d %s", b.host, resp.StatusCode, http.StatusText(resp.StatusCode))
}

// parseRetryAfter reads a Retry-After header: a number of seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		return time.Duration(min(secs, 1<<31)) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// stripURL drops the URL from a client error, since it holds the subject's id.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// httpBody enforces http.max_bytes while the caller reads, and bounds each wait for the agency's next
// bytes by the timeout, so a stalled agency is cut but a slow reader is not.
type httpBody struct {
	rc      io.ReadCloser
	n, max  int64
	wd      *watchdog
	cancel  context.CancelFunc
	host    string
	key     string // config section, for errors: http or mydata
	timeout time.Duration
	err     error
}

func (b *httpBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	// Ask for at most one byte past the limit: enough to tell "exactly max" from "longer".
	if room := b.max - b.n + 1; int64(len(p)) > room {
		p = p[:room]
	}
	b.wd.arm()
	n, err := b.rc.Read(p)
	b.wd.disarm()
	b.n += int64(n)
	if b.n > b.max {
		n -= int(b.n - b.max)
		b.n = b.max
		b.err = failf("%s: %s sent more than %s.max_bytes (%d)", b.key, b.host, b.key, b.max)
		return n, b.err
	}
	switch {
	case err == nil, err == io.EOF:
		return n, err
	case b.wd.expired():
		b.err = failf("%s: %s sent nothing for %s: %w", b.key, b.host, b.timeout, context.DeadlineExceeded)
	default:
		b.err = failf("%s: read body from %s: %w", b.key, b.host, stripURL(err))
	}
	return n, b.err
}

func (b *httpBody) Close() error {
	err := b.rc.Close()
	b.cancel()
	return err
}

// keyPair hands the TLS stack the client certificate, reloading it when its files change so a renewed
// certificate is used without a restart.
type keyPair struct {
	certFile, keyFile string

	mu                sync.Mutex
	cert              *tls.Certificate
	certMod, keyMod   time.Time
	certSize, keySize int64
}

func (k *keyPair) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	cs, cerr := os.Stat(k.certFile)
	ks, kerr := os.Stat(k.keyFile)
	k.mu.Lock()
	defer k.mu.Unlock()
	if cerr == nil && kerr == nil && k.cert != nil &&
		cs.ModTime().Equal(k.certMod) && ks.ModTime().Equal(k.keyMod) && cs.Size() == k.certSize && ks.Size() == k.keySize {
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
		k.certMod, k.keyMod, k.certSize, k.keySize = cs.ModTime(), ks.ModTime(), cs.Size(), ks.Size()
	}
	return k.cert, nil
}
