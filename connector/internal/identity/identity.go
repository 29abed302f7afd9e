// Package identity gives the connector its X.509-SVID and trust bundle: either kept on local disk after
// enrolling with a join token and renewed at half-life over mTLS, or taken from a SPIRE agent's Workload API.
package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"

	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/pemfile"
	"github.com/mydatafed/mydata/pkg/telemetry"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Source is what the rest of the connector needs of an identity.
type Source interface {
	x509svid.Source
	x509bundle.Source
	// Run keeps the SVID fresh until ctx ends.
	Run(ctx context.Context) error
	// Close releases the source.
	Close() error
}

// Files kept under the identity directory: the SVID as one file of key and chain (mode 0600), replaced
// atomically on renewal, and the trust bundle.
const (
	svidFile   = "svid.pem"
	bundleFile = "bundle.crt"
)

// Paths of the local identity files.
func Paths(dir string) (svid, bundle string) {
	return filepath.Join(dir, svidFile), filepath.Join(dir, bundleFile)
}

// HubClient is a client of the hub's API at urls, one per hub node, that presents src's SVID, taken per
// handshake so a renewal needs no restart, and accepts only a hub node of td. It fails over between the
// nodes, logging each move to log and counting it in reg (either may be nil).
func HubClient(urls []string, src Source, td spiffeid.TrustDomain, log *slog.Logger, reg prometheus.Registerer) (*hubapi.Client, error) {
	conf := tlsconfig.MTLSClientConfig(src, src, fedid.Authorizer(td, fedid.KindHub, nil))
	conf.MinVersion = tls.VersionTLS13
	return newHubClient(urls, conf, log, reg)
}

// newHubClient is the hub client of every connector subsystem and of enrollment.
func newHubClient(urls []string, conf *tls.Config, log *slog.Logger, reg prometheus.Registerer) (*hubapi.Client, error) {
	m, err := newHubMetrics(reg)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return hubapi.NewClientMulti(hubapi.ClientConfig{URLs: urls, TLS: conf, OnFailover: func(from, to string, why error) {
		m.failovers.Inc()
		log.Warn("hub node changed", "from", from, "to", to, telemetry.KeyError, why)
	}})
}

// newCSR makes a key and a CSR for id. The key stays in this process until it is written to disk.
func newCSR(id spiffeid.ID) (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, key)
	if err != nil {
		return nil, nil, err
	}
	return key, der, nil
}

// checkResponse checks an SVID the hub sent back for our key and ID, and returns it with the bundle.
func checkResponse(resp *hubapi.SVIDResponse, key *ecdsa.PrivateKey, id spiffeid.ID) (*x509svid.SVID, []*x509.Certificate, error) {
	if len(resp.Chain) == 0 || len(resp.Bundle) == 0 {
		return nil, nil, errors.New("hub answer lacks the SVID or the bundle")
	}
	var chain, roots []*x509.Certificate
	for _, der := range resp.Chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, fmt.Errorf("SVID from hub: %w", err)
		}
		chain = append(chain, c)
	}
	for _, der := range resp.Bundle {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, fmt.Errorf("bundle from hub: %w", err)
		}
		roots = append(roots, c)
	}
	if !key.PublicKey.Equal(chain[0].PublicKey) {
		return nil, nil, errors.New("hub issued an SVID for another key")
	}
	got, _, err := x509svid.Verify(chain, x509bundle.FromX509Authorities(id.TrustDomain(), roots))
	if err != nil {
		return nil, nil, fmt.Errorf("SVID from hub does not verify: %w", err)
	}
	if got != id {
		return nil, nil, fmt.Errorf("hub issued %s, want %s", got, id)
	}
	return &x509svid.SVID{ID: id, Certificates: chain, PrivateKey: key}, roots, nil
}

// save writes the bundle, then the SVID.
func save(dir string, svid *x509svid.SVID, roots []*x509.Certificate) error {
	svidPath, bundlePath := Paths(dir)
	if err := pemfile.WriteAtomic(bundlePath, pemfile.EncodeCertificates(roots), 0o644); err != nil {
		return err
	}
	return pemfile.WriteSVID(svidPath, svid)
}

// IsRefusal reports whether err is the hub refusing (4xx) rather than failing to answer.
func IsRefusal(err error) bool {
	var he *hubapi.Error
	return errors.As(err, &he) && he.Status >= 400 && he.Status < 500 && he.Status != http.StatusTooManyRequests
}
