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
	"net/http"
	"strings"
	"time"

	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// MaxResponse bounds what a client reads from the hub.
const MaxResponse = 4 << 20

// Client calls the hub's API.
type Client struct {
	base string
	http *http.Client
}

// NewClient makes a client for the hub at baseURL (https://host:port) with the given TLS configuration.
func NewClient(baseURL string, tlsConf *tls.Config) *Client {
	tr := &http.Transport{
		TLSClientConfig:   tlsConf,
		ForceAttemptHTTP2: true,
		// An SP connector redeems many codes at once; every connection beyond the idle pool would pay a
		// fresh mutual-TLS handshake (measured: 15 % of the SP's CPU with 4).
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), http: &http.Client{Transport: tr}}
}

// CloseIdle drops pooled connections, so that the next call handshakes with the current certificate.
func (c *Client) CloseIdle() { c.http.CloseIdleConnections() }

// Do sends in (if not nil) as JSON and decodes a 2xx answer into out (if not nil). A non-2xx answer is an
// *Error.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse+1))
	if err != nil {
		return err
	}
	if len(data) > MaxResponse {
		return fmt.Errorf("hub answer larger than %d bytes", MaxResponse)
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(data, e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(data))
		}
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
func (c *Client) Download(ctx context.Context, path string, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, MaxResponse))
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(data, e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(data))
		}
		return e
	}
	_, err = io.Copy(w, resp.Body)
	return err
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
