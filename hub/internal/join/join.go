// Package join brings a new hub node into a cluster: with an operator's single-use node join token it gets
// a hub SVID from a member (pinning the federation root by the token's fingerprint, as connectors do at
// enrollment), then, over mutual TLS with that SVID, the federation root and the cluster key, and, once its
// raft listener is up, a place in raft as a non-voter.
package join

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
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mydatafed/mydata/hub/internal/api"
	"github.com/mydatafed/mydata/hub/internal/config"
	"github.com/mydatafed/mydata/hub/internal/keyring"
	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/jointoken"
	"github.com/mydatafed/mydata/pkg/pemfile"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Secrets asks the cluster at one of urls to admit this node with token, and writes what it receives (the
// root CA certificate and key, the cluster key) into the node's data directory. Each URL is tried in turn.
func Secrets(ctx context.Context, cfg config.Config, urls []string, token string, log *slog.Logger) error {
	tok, err := jointoken.Parse(token)
	if err != nil {
		return fmt.Errorf("join token: %w", err)
	}
	td := cfg.TD()
	id, err := fedid.Hub(td, cfg.NodeID)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, key)
	if err != nil {
		return err
	}
	req := api.JoinRequest{Token: token, Node: cfg.NodeID, RaftAddress: cfg.Raft.Advertise, APIURL: cfg.API.PublicURL, CSR: csr}
	var errs []error
	for _, u := range urls {
		err := secretsFrom(ctx, cfg, u, tok.CAFingerprint, req, key)
		if err == nil {
			log.Info("joined the cluster: received the federation root and the cluster key", "via", u, "node", cfg.NodeID)
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", u, err))
		var he *hubapi.Error
		if errors.As(err, &he) && he.Status/100 == 4 {
			break // the token or the request is refused: another node would refuse it too
		}
	}
	return fmt.Errorf("join the cluster: %w", errors.Join(errs...))
}

func secretsFrom(ctx context.Context, cfg config.Config, hubURL string, fp [32]byte, req api.JoinRequest, key *ecdsa.PrivateKey) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var svid hubapi.SVIDResponse
	if err := hubapi.NewClient(hubURL, hubapi.PinnedTLSConfig(fp)).Do(ctx, http.MethodPost, api.PathClusterJoin, req, &svid); err != nil {
		return err
	}
	chain, err := parseCerts(svid.Chain)
	if err != nil {
		return err
	}
	roots, err := parseCerts(svid.Bundle)
	if err != nil || len(roots) == 0 {
		return fmt.Errorf("the hub's answer holds no bundle: %v", err)
	}
	td := cfg.TD()
	id, err := fedid.Hub(td, req.Node)
	if err != nil {
		return err
	}
	src := &x509svid.SVID{ID: id, Certificates: chain, PrivateKey: key}
	bundle := x509bundle.FromX509Authorities(td, roots)
	tlsConf := tlsconfig.MTLSClientConfig(staticSource{src}, bundle, fedid.Authorizer(td, fedid.KindHub, nil))
	var sec api.Secrets
	if err := hubapi.NewClient(hubURL, tlsConf).Do(ctx, http.MethodGet, api.PathClusterSecrets, nil, &sec); err != nil {
		return err
	}
	rootCerts, err := pemfile.ParseCertificates(sec.RootCert)
	if err != nil || len(rootCerts) == 0 || !rootCerts[0].Equal(roots[0]) {
		return errors.New("the root the cluster sent is not the one its bundle names")
	}
	if err := os.MkdirAll(cfg.CADir(), 0o700); err != nil {
		return err
	}
	// The key first, the certificate last, as the CA writes them (ca.LoadOrCreate); both private to the hub.
	if err := pemfile.WriteAtomic(filepath.Join(cfg.CADir(), "root.key"), sec.RootKey, 0o600); err != nil {
		return err
	}
	if err := pemfile.WriteAtomic(filepath.Join(cfg.CADir(), "root.crt"), sec.RootCert, 0o600); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(cfg.KEKPath()), 0o700); err != nil {
		return err
	}
	return keyring.WriteKEK(cfg.KEKPath(), sec.KEK)
}

// Member asks the cluster to add this node to raft, retrying until it is done or ctx ends: the node's raft
// listener must be up first, since the leader starts replicating to it at once.
func Member(ctx context.Context, cfg config.Config, urls []string, tlsConf *tls.Config, log *slog.Logger) error {
	delay := 200 * time.Millisecond
	for {
		for _, u := range urls {
			cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			err := hubapi.NewClient(u, tlsConf).Do(cctx, http.MethodPost, api.PathClusterMembers, api.MemberRequest{RaftAddress: cfg.Raft.Advertise}, nil)
			cancel()
			if err == nil {
				log.Info("added to the raft cluster as a non-voter; the leader promotes this node once it has caught up", "via", u)
				return nil
			}
			log.Warn("ask to be added to the raft cluster", "via", u, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

func parseCerts(ders [][]byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for _, d := range ders {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

type staticSource struct{ svid *x509svid.SVID }

func (s staticSource) GetX509SVID() (*x509svid.SVID, error) { return s.svid, nil }

// URLs splits a --join value: one URL or several, comma-separated.
func URLs(s string) []string {
	var out []string
	for _, u := range strings.Split(s, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}
