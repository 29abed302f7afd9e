package identity

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/pemfile"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// ErrNotEnrolled is returned when the data directory holds no SVID.
var ErrNotEnrolled = errors.New("this connector is not enrolled: run mydata-connector enroll")

// Local is the SVID kept in the data directory, renewed with the hub at half its lifetime.
type Local struct {
	dir string
	id  spiffeid.ID
	log *slog.Logger
	hub *hubapi.Client

	mu     sync.RWMutex
	svid   *x509svid.SVID
	bundle *x509bundle.Bundle

	renewals *prometheus.CounterVec
}

// LoadLocal reads the SVID, key and bundle from dir. The SVID must be for id.
func LoadLocal(dir string, id spiffeid.ID, log *slog.Logger) (*Local, error) {
	svidPath, bundlePath := Paths(dir)
	svid, err := pemfile.ReadSVID(svidPath)
	if err != nil {
		if _, serr := os.Stat(svidPath); errors.Is(serr, os.ErrNotExist) {
			return nil, ErrNotEnrolled
		}
		return nil, fmt.Errorf("load SVID: %w", err)
	}
	if svid.ID != id {
		return nil, fmt.Errorf("the SVID in %s is for %s, but the config names %s", dir, svid.ID, id)
	}
	roots, err := pemfile.ReadCertificates(bundlePath)
	if err != nil {
		return nil, fmt.Errorf("load bundle: %w", err)
	}
	return &Local{dir: dir, id: id, log: log, svid: svid, bundle: x509bundle.FromX509Authorities(id.TrustDomain(), roots)}, nil
}

// SetHub gives the source its hub client for renewal, and the registry for its metrics.
func (l *Local) SetHub(hub *hubapi.Client, reg prometheus.Registerer) error {
	l.hub = hub
	l.renewals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mydata_connector_svid_renewals_total",
		Help: "SVID renewals with the hub by outcome (ok, refused, error).",
	}, []string{"outcome"})
	if reg == nil {
		return nil
	}
	return reg.Register(l.renewals)
}

// GetX509SVID implements x509svid.Source.
func (l *Local) GetX509SVID() (*x509svid.SVID, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.svid, nil
}

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (l *Local) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if td != l.bundle.TrustDomain() {
		return nil, fmt.Errorf("no bundle for trust domain %q", td)
	}
	return l.bundle, nil
}

// Leaf is the current SVID's certificate.
func (l *Local) Leaf() *x509.Certificate {
	s, _ := l.GetX509SVID()
	return s.Certificates[0]
}

// Close implements Source.
func (l *Local) Close() error { return nil }

// renewAt is half-way through the SVID's life.
func renewAt(c *x509.Certificate) time.Time {
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) / 2)
}

// Run renews the SVID at half its lifetime until ctx ends, retrying with backoff while the hub is away. A
// suspended or revoked connector is refused by the hub; it keeps trying, more slowly, so that it recovers
// on its own if reactivated.
func (l *Local) Run(ctx context.Context) error {
	backoff := time.Second
	for {
		// At least a second between renewals, whatever the certificate says, so that no clock or lifetime
		// oddity can turn this into a loop hammering the hub.
		wait := max(time.Until(renewAt(l.Leaf())), time.Second)
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
		err := l.Renew(ctx)
		if err == nil {
			backoff = time.Second
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		outcome := "error"
		if IsRefusal(err) {
			outcome = "refused"
		}
		l.renewals.WithLabelValues(outcome).Inc()
		left := time.Until(l.Leaf().NotAfter)
		l.log.Warn("SVID renewal failed", "err", err, "expires_in", left.Round(time.Second))
		// Never wait more than a tenth of what is left, so that a short outage near expiry still leaves retries.
		maxWait := max(time.Second, min(time.Minute, left/10))
		if outcome == "refused" {
			maxWait = max(maxWait, time.Minute)
		}
		sleep := min(backoff, maxWait)
		sleep = sleep/2 + rand.N(sleep/2+1)
		backoff = min(backoff*2, maxWait)
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// Renew gets a fresh SVID for a fresh key from the hub now.
func (l *Local) Renew(ctx context.Context) error {
	if l.hub == nil {
		return errors.New("no hub client for renewal")
	}
	key, csr, err := newCSR(l.id)
	if err != nil {
		return err
	}
	var resp hubapi.SVIDResponse
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := l.hub.Do(rctx, http.MethodPost, hubapi.PathRenew, hubapi.RenewRequest{CSR: csr}, &resp); err != nil {
		return err
	}
	svid, roots, err := checkResponse(&resp, key, l.id)
	if err != nil {
		return err
	}
	if err := save(l.dir, svid, roots); err != nil {
		return err
	}
	l.mu.Lock()
	l.svid = svid
	l.bundle = x509bundle.FromX509Authorities(l.id.TrustDomain(), roots)
	l.mu.Unlock()
	l.renewals.WithLabelValues("ok").Inc()
	l.log.Info("SVID renewed", "not_after", svid.Certificates[0].NotAfter)
	return nil
}
