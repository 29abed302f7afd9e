// Package dirsync keeps the connector's copy of the hub's signed directory: it long-polls the hub for
// changes, verifies and stores each new version on disk, serves from the stored copy while the hub is away,
// and answers whether a peer is an active connector of the federation.
package dirsync

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/mydatafed/mydata/pkg/directory"
	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/pemfile"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Config configures the sync.
type Config struct {
	TD            spiffeid.TrustDomain
	Path          string
	Hub           *hubapi.Client
	Bundles       x509bundle.Source
	SyncInterval  time.Duration
	MaxBackoff    time.Duration
	Refresh       time.Duration
	ExpiryWarning time.Duration
	Log           *slog.Logger
	Registerer    prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Sync is the connector's directory copy.
type Sync struct {
	cfg Config
	now func() time.Time

	mu        sync.RWMutex
	doc       *directory.Document
	fetched   time.Time // when the hub last sent or confirmed this version
	full      time.Time // when the hub last sent the whole directory
	reachable bool
	listeners []func(*directory.Document)

	syncs *prometheus.CounterVec
}

// New loads the stored copy, if any and if it verifies; an expired copy is kept, so that status can say so,
// but authorises nobody.
func New(cfg Config) (*Sync, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Sync{cfg: cfg, now: cfg.Now}
	s.syncs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mydata_connector_directory_syncs_total",
		Help: "Directory requests to the hub by result (updated, unchanged, error, rejected).",
	}, []string{"result"})
	if cfg.Registerer != nil {
		cs := []prometheus.Collector{s.syncs,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "mydata_connector_directory_age_seconds",
				Help: "Seconds since the hub last sent or confirmed the directory copy; -1 if there is none.",
			}, func() float64 {
				if age, ok := s.Age(); ok {
					return age.Seconds()
				}
				return -1
			}),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "mydata_connector_directory_expiry_seconds",
				Help: "Seconds until the directory copy expires; the connector refuses every peer after.",
			}, func() float64 {
				doc := s.Document()
				if doc == nil {
					return 0
				}
				return doc.ExpiresAt.Sub(s.now()).Seconds()
			}),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "mydata_connector_directory_version",
				Help: "Version of the directory copy.",
			}, func() float64 {
				if doc := s.Document(); doc != nil {
					return float64(doc.Version)
				}
				return 0
			}),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "mydata_connector_hub_reachable",
				Help: "1 if the last request to the hub got an answer.",
			}, func() float64 {
				if s.HubReachable() {
					return 1
				}
				return 0
			}),
		}
		for _, c := range cs {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	data, err := os.ReadFile(cfg.Path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	doc, err := s.verify(data)
	if err != nil && !errors.Is(err, directory.ErrExpired) {
		cfg.Log.Warn("ignoring the stored directory", "path", cfg.Path, "err", err)
		return s, nil
	}
	s.doc = doc
	if fi, err := os.Stat(cfg.Path); err == nil {
		s.fetched = fi.ModTime()
	}
	return s, nil
}

func (s *Sync) verify(data []byte) (*directory.Document, error) {
	signed, err := directory.Parse(data)
	if err != nil {
		return nil, err
	}
	return signed.Verify(s.cfg.Bundles, s.cfg.TD, s.now())
}

// OnChange registers fn to run after each new directory version (for example to drop connections of peers
// revoked in it).
func (s *Sync) OnChange(fn func(*directory.Document)) {
	s.mu.Lock()
	s.listeners = append(s.listeners, fn)
	s.mu.Unlock()
}

// Document is the current copy, nil if there is none.
func (s *Sync) Document() *directory.Document {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.doc
}

// Age is the time since the hub last sent or confirmed the copy.
func (s *Sync) Age() (time.Duration, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.doc == nil {
		return 0, false
	}
	return s.now().Sub(s.fetched), true
}

// HubReachable says whether the last request to the hub got an answer.
func (s *Sync) HubReachable() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.reachable
}

// Ready says why the connector cannot authorise peers, or nil.
func (s *Sync) Ready() error {
	doc := s.Document()
	if doc == nil {
		return errors.New("no directory from the hub yet")
	}
	if !s.now().Before(doc.ExpiresAt) {
		return fmt.Errorf("directory expired at %s", doc.ExpiresAt.Format(time.RFC3339))
	}
	return nil
}

// Authorize accepts an active connector of the directory, or a hub node the directory lists (the hub
// relays citizens' downloads; the provider lets it present download tickets only), and refuses everything
// else.
func (s *Sync) Authorize(id spiffeid.ID) error {
	if err := s.Ready(); err != nil {
		return err
	}
	if p, err := fedid.Parse(id); err == nil && p.Kind == fedid.KindHub {
		for _, k := range s.Document().HubKeys {
			if k.Node == p.Name {
				return nil
			}
		}
		return fmt.Errorf("%s is not a hub node of the federation directory", id)
	}
	c, ok := s.Document().Lookup(id)
	if !ok {
		return fmt.Errorf("%s is not a connector of the federation directory", id)
	}
	if c.Status != hubapi.StatusActive {
		return fmt.Errorf("%s is %s", id, c.Status)
	}
	return nil
}

// TicketKey implements ticket.KeySet from the directory's hub keys, so that tickets verify offline.
func (s *Sync) TicketKey(kid string) (*ecdsa.PublicKey, bool) {
	doc := s.Document()
	if doc == nil {
		return nil, false
	}
	return hubapi.TicketKey(doc.HubKeys, kid)
}

// Withdrawn is the status of a service or dataset ("service" or "dataset") the directory lists as
// suspended or terminated; "" if it may be served.
func (s *Sync) Withdrawn(on, id string) string {
	doc := s.Document()
	if doc == nil {
		return ""
	}
	return doc.WithdrawnStatus(on, id)
}

// Lookup finds a connector by organisation and name.
func (s *Sync) Lookup(org, name string) (hubapi.Connector, bool) {
	doc := s.Document()
	if doc == nil {
		return hubapi.Connector{}, false
	}
	id, err := fedid.Connector(s.cfg.TD, org, name)
	if err != nil {
		return hubapi.Connector{}, false
	}
	return doc.Lookup(id)
}

// Run keeps the copy in sync until ctx ends. It never gives up: after any outage it retries with backoff
// (1s doubling up to MaxBackoff, with jitter) and resumes the long-poll.
func (s *Sync) Run(ctx context.Context) error {
	backoff := time.Second
	lastWarn := time.Time{}
	for ctx.Err() == nil {
		err := s.SyncOnce(ctx)
		s.warnExpiry(&lastWarn)
		if err == nil {
			backoff = time.Second
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		s.cfg.Log.Warn("directory sync failed", "err", err, "retry_in_at_most", backoff)
		sleep := backoff/2 + rand.N(backoff/2+1)
		backoff = min(backoff*2, s.cfg.MaxBackoff)
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	return nil
}

func (s *Sync) warnExpiry(last *time.Time) {
	doc := s.Document()
	if doc == nil || s.now().Sub(*last) < time.Hour {
		return
	}
	if left := doc.ExpiresAt.Sub(s.now()); left < s.cfg.ExpiryWarning {
		*last = s.now()
		s.cfg.Log.Warn("directory copy expires soon; is the hub reachable?", "expires_in", left.Round(time.Second))
	}
}

// stale says whether the copy should be fetched whole even if its version is current: the last full fetch
// is more than Refresh ago, or the copy has used up half its life. It counts from our last full fetch, not
// from the copy's issue time, because the hub serves one signed copy for a while: asking again at once would
// get the same copy back. The hub re-signs at a quarter of the TTL, so a copy it serves always has more than
// half its life left.
func (s *Sync) stale(doc *directory.Document) bool {
	now := s.now()
	s.mu.RLock()
	full := s.full
	s.mu.RUnlock()
	return now.Sub(full) >= s.cfg.Refresh || doc.ExpiresAt.Sub(now) < doc.ExpiresAt.Sub(doc.IssuedAt)/2
}

// answerMargin is how long after a long-poll's wait (or at once, for a full fetch) a hub node has to begin
// its answer before the request goes to the next node.
const answerMargin = 5 * time.Second

// SyncOnce makes one request: a long-poll for a version newer than ours, or a full fetch when the copy is
// missing or older than Refresh.
func (s *Sync) SyncOnce(ctx context.Context) error {
	q := url.Values{}
	var wait time.Duration
	if doc := s.Document(); doc != nil && !s.stale(doc) {
		wait = s.cfg.SyncInterval
		q.Set("after", fmt.Sprint(doc.Version))
		q.Set("wait", wait.String())
	}
	rctx, cancel := context.WithTimeout(ctx, s.cfg.SyncInterval+15*time.Second)
	defer cancel()
	var raw json.RawMessage
	// A node that has not answered soon after the wait is over is hung, or went away under the connection:
	// the client tries the next node with the time left. (A node that is down, or hangs before it answers
	// the TLS handshake, the client leaves after its dial or handshake timeout, a few seconds.)
	err := s.cfg.Hub.Do(rctx, http.MethodGet, hubapi.PathDirectory+"?"+q.Encode(), nil, &raw, hubapi.AnswerWithin(wait+answerMargin))
	var he *hubapi.Error
	switch {
	case errors.As(err, &he) && he.Status == http.StatusNotModified:
		s.mu.Lock()
		s.fetched, s.reachable = s.now(), true
		s.mu.Unlock()
		s.syncs.WithLabelValues("unchanged").Inc()
		return nil
	case err != nil:
		s.mu.Lock()
		s.reachable = errors.As(err, &he)
		s.mu.Unlock()
		s.syncs.WithLabelValues("error").Inc()
		return err
	}
	doc, err := s.verify(raw)
	if err != nil {
		s.syncs.WithLabelValues("rejected").Inc()
		return fmt.Errorf("directory from hub: %w", err)
	}
	if cur := s.Document(); cur != nil && doc.Version < cur.Version {
		s.syncs.WithLabelValues("rejected").Inc()
		return fmt.Errorf("hub sent directory version %d, older than our %d", doc.Version, cur.Version)
	}
	if err := pemfile.WriteAtomic(s.cfg.Path, raw, 0o644); err != nil {
		return fmt.Errorf("store directory: %w", err)
	}
	s.mu.Lock()
	changed := s.doc == nil || s.doc.Version != doc.Version
	if s.doc != nil && !changed && !doc.IssuedAt.After(s.doc.IssuedAt) {
		doc = s.doc // a replayed copy of the same version must not reset the expiry backwards
	}
	s.doc, s.fetched, s.full, s.reachable = doc, s.now(), s.now(), true
	listeners := append([]func(*directory.Document){}, s.listeners...)
	s.mu.Unlock()
	s.syncs.WithLabelValues("updated").Inc()
	if changed {
		s.cfg.Log.Info("directory updated", "version", doc.Version, "connectors", len(doc.Connectors))
		for _, fn := range listeners {
			fn(doc)
		}
	}
	return nil
}
