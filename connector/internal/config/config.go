// Package config is the connector's configuration: defaults, the YAML file and flags, decoded into a typed
// Config and validated before anything starts.
package config

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/mydatafed/mydata/connector/internal/backend"
	"github.com/mydatafed/mydata/pkg/audit"
	"github.com/mydatafed/mydata/pkg/configfile"
	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/telemetry"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"gopkg.in/yaml.v3"
)

// Identity sources.
const (
	SourceLocal = "local"
	SourceSPIRE = "spire"
)

// Config is the connector's configuration. conf/connector.yaml documents every key.
type Config struct {
	TrustDomain string `yaml:"trust_domain"`
	Org         string `yaml:"org"`
	Name        string `yaml:"name"`
	DataDir     string `yaml:"data_dir"`

	Hub struct {
		// URLs are the hub nodes' API URLs: hub.url is one URL or a list of them.
		URLs          HubURLs `yaml:"url"`
		CAFingerprint string  `yaml:"ca_fingerprint"`
	} `yaml:"hub"`

	Identity struct {
		Source      string `yaml:"source"`
		SPIRESocket string `yaml:"spire_socket"`
	} `yaml:"identity"`

	QUIC struct {
		Enabled     bool          `yaml:"enabled"`
		Listen      string        `yaml:"listen"`
		IdleTimeout time.Duration `yaml:"idle_timeout"`
	} `yaml:"quic"`

	// TCP is the fallback transport, TLS 1.3 over TCP, for peers whose UDP is blocked.
	TCP struct {
		Enabled bool   `yaml:"enabled"`
		Listen  string `yaml:"listen"`
	} `yaml:"tcp"`

	Directory struct {
		SyncInterval  time.Duration `yaml:"sync_interval"`
		MaxBackoff    time.Duration `yaml:"max_backoff"`
		Refresh       time.Duration `yaml:"refresh"`
		ExpiryWarning time.Duration `yaml:"expiry_warning"`
	} `yaml:"directory"`

	// Datasets this connector serves as a data provider, by dataset id.
	Datasets map[string]Dataset `yaml:"datasets"`

	Exchange struct {
		Listen          string        `yaml:"listen"`
		BearerTokenFile string        `yaml:"bearer_token_file"`
		MaxBytes        int64         `yaml:"max_bytes"`
		Keep            time.Duration `yaml:"keep"`
		SpillThreshold  int64         `yaml:"spill_threshold"`
	} `yaml:"exchange"`

	// Counter is the counter page for the SP's staff (counter verification); off unless Listen is set.
	Counter struct {
		Listen       string        `yaml:"listen"`
		TLSCert      string        `yaml:"tls_cert"`
		TLSKey       string        `yaml:"tls_key"`
		StaffFile    string        `yaml:"staff_file"`
		TTL          time.Duration `yaml:"ttl"`
		IdleTimeout  time.Duration `yaml:"idle_timeout"`
		LockoutAfter int           `yaml:"lockout_after"`
		LockoutFor   time.Duration `yaml:"lockout_for"`
		TimeZone     string        `yaml:"time_zone"`
	} `yaml:"counter"`

	Audit struct {
		Retention time.Duration `yaml:"retention"`
	} `yaml:"audit"`

	Telemetry struct {
		Listen string `yaml:"listen"`
	} `yaml:"telemetry"`

	Log telemetry.LogConfig `yaml:"log"`
}

// Default is the embedded default.
func Default() Config {
	var c Config
	c.TrustDomain = "mydata.example"
	c.DataDir = "/var/lib/mydata/connector"
	c.Hub.URLs = HubURLs{"https://127.0.0.1:8443"}
	c.Identity.Source = SourceLocal
	c.Identity.SPIRESocket = "unix:///run/spire/agent/public/api.sock"
	c.QUIC.Enabled = true
	c.QUIC.Listen = "0.0.0.0:7443"
	c.TCP.Enabled = true
	c.TCP.Listen = "0.0.0.0:7443"
	// A peer gone without a word (killed, unplugged) is noticed after this much silence (up to a fifth more:
	// peer's keep-alives, every fifth of it, keep a live but quiet connection open). 10 s lets the SP report
	// a transfer from a killed DP failed within 12 s, under the 15 s asked, and still rides out a few lost
	// keep-alives or a long pause on a loaded host.
	c.QUIC.IdleTimeout = 10 * time.Second
	c.Directory.SyncInterval = 10 * time.Second
	c.Directory.MaxBackoff = 10 * time.Second
	c.Directory.Refresh = time.Hour
	c.Directory.ExpiryWarning = 24 * time.Hour
	c.Telemetry.Listen = "127.0.0.1:9444"
	c.Exchange.MaxBytes = 1 << 30
	c.Exchange.Keep = 10 * time.Minute
	c.Exchange.SpillThreshold = 1 << 20
	c.Counter.TTL = 30 * time.Minute
	c.Counter.IdleTimeout = 15 * time.Minute
	c.Counter.LockoutAfter = 5
	c.Counter.LockoutFor = 15 * time.Minute
	c.Counter.TimeZone = "Asia/Taipei"
	c.Audit.Retention = audit.MinRetention
	c.Log = telemetry.LogConfig{Format: "text", Level: "info"}
	return c
}

// Load reads the file at path over the defaults and validates the result.
func Load(path string) (Config, error) {
	c := Default()
	if err := configfile.Load(path, &c); err != nil {
		return c, err
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Validate reports the first bad value with its key.
func (c *Config) Validate() error {
	if _, err := spiffeid.TrustDomainFromString(c.TrustDomain); err != nil {
		return fmt.Errorf("trust_domain: %w", err)
	}
	if err := fedid.ValidName(c.Org); err != nil {
		return fmt.Errorf("org: %w", err)
	}
	if err := fedid.ValidName(c.Name); err != nil {
		return fmt.Errorf("name: %w", err)
	}
	if c.DataDir == "" {
		return errors.New("data_dir: required")
	}
	if abs, err := filepath.Abs(c.DataDir); err == nil {
		c.DataDir = abs
	}
	if err := CheckHubURLs("hub.url", c.Hub.URLs); err != nil {
		return err
	}
	switch c.Identity.Source {
	case SourceLocal:
	case SourceSPIRE:
		if !strings.HasPrefix(c.Identity.SPIRESocket, "unix://") && !strings.HasPrefix(c.Identity.SPIRESocket, "tcp://") {
			return fmt.Errorf("identity.spire_socket: %q must start with unix:// or tcp://", c.Identity.SPIRESocket)
		}
	default:
		return fmt.Errorf("identity.source: %q is neither local nor spire", c.Identity.Source)
	}
	if !c.QUIC.Enabled && !c.TCP.Enabled {
		return errors.New("quic.enabled, tcp.enabled: both are false, so no peer could reach this connector: turn one on")
	}
	if c.QUIC.Enabled {
		if err := configfile.CheckListen("quic.listen", c.QUIC.Listen); err != nil {
			return err
		}
	}
	if c.TCP.Enabled {
		if err := configfile.CheckListen("tcp.listen", c.TCP.Listen); err != nil {
			return err
		}
	}
	if err := configfile.CheckListen("telemetry.listen", c.Telemetry.Listen); err != nil {
		return err
	}
	if err := configfile.CheckMinimums([]configfile.Min{
		{Key: "quic.idle_timeout", Value: c.QUIC.IdleTimeout, Least: time.Second},
		{Key: "directory.sync_interval", Value: c.Directory.SyncInterval, Least: 100 * time.Millisecond},
		{Key: "directory.max_backoff", Value: c.Directory.MaxBackoff, Least: 100 * time.Millisecond},
		{Key: "directory.refresh", Value: c.Directory.Refresh, Least: time.Second},
		{Key: "directory.expiry_warning", Value: c.Directory.ExpiryWarning, Least: 0},
	}); err != nil {
		return err
	}
	if c.Exchange.Listen != "" {
		if err := configfile.CheckListen("exchange.listen", c.Exchange.Listen); err != nil {
			return err
		}
		host, _, _ := net.SplitHostPort(c.Exchange.Listen)
		ip := net.ParseIP(host)
		loopback := host == "localhost" || ip != nil && ip.IsLoopback()
		if !loopback && c.Exchange.BearerTokenFile == "" {
			return fmt.Errorf("exchange.listen: %q is not loopback, so exchange.bearer_token_file is required: the API hands out personal data", c.Exchange.Listen)
		}
	}
	if c.Exchange.MaxBytes < 1<<20 {
		return fmt.Errorf("exchange.max_bytes: %d is less than 1 MiB", c.Exchange.MaxBytes)
	}
	if c.Exchange.Keep < time.Second {
		return fmt.Errorf("exchange.keep: %s is shorter than 1s", c.Exchange.Keep)
	}
	if c.Exchange.SpillThreshold < 0 {
		return fmt.Errorf("exchange.spill_threshold: %d is negative", c.Exchange.SpillThreshold)
	}
	if err := c.validateCounter(); err != nil {
		return err
	}
	if c.Audit.Retention < audit.MinRetention {
		return fmt.Errorf("audit.retention: %s is shorter than the 2 years the platform's rules require", c.Audit.Retention)
	}
	for id, d := range c.Datasets {
		if err := hubapi.ValidDatasetID(id); err != nil {
			return fmt.Errorf("datasets: %w", err)
		}
		if d.MaxBytes == 0 {
			d.MaxBytes = c.Exchange.MaxBytes
			c.Datasets[id] = d
		}
		if d.MaxBytes < 0 {
			return fmt.Errorf("datasets.%s.max_bytes: must be positive", id)
		}
		if err := d.Backend.Validate(); err != nil {
			return fmt.Errorf("datasets.%s.backend.%w", id, err)
		}
		if d.Sandbox != nil {
			if err := d.Sandbox.Validate(); err != nil {
				return fmt.Errorf("datasets.%s.sandbox.%w", id, err)
			}
			if reflect.DeepEqual(*d.Sandbox, d.Backend) {
				return fmt.Errorf("datasets.%s.sandbox: the same backend as datasets.%s.backend; a sandbox answers from synthetic data only", id, id)
			}
		}
	}
	backends := map[string]backend.Config{}
	for id, d := range c.Datasets {
		backends[id] = d.Backend
	}
	if err := backend.CheckMyDataSet(backends); err != nil {
		return err
	}
	return c.Log.Validate()
}

// validateCounter checks the counter section; its values matter only with counter.listen set.
func (c *Config) validateCounter() error {
	k := &c.Counter
	if k.Listen == "" {
		return nil
	}
	if err := configfile.CheckListen("counter.listen", k.Listen); err != nil {
		return err
	}
	if (k.TLSCert == "") != (k.TLSKey == "") {
		return errors.New("counter.tls_cert and counter.tls_key: give both or neither")
	}
	host, _, _ := net.SplitHostPort(k.Listen)
	if ip := net.ParseIP(host); k.TLSCert == "" && host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("counter.listen: %q is not loopback, so counter.tls_cert and counter.tls_key are required: staff passwords and personal data cross it (plain HTTP is for loopback only)", k.Listen)
	}
	if k.StaffFile == "" {
		return errors.New("counter.staff_file: required with counter.listen (make lines with `mydata-connector counter passwd NAME`)")
	}
	if err := configfile.CheckMinimums([]configfile.Min{
		{Key: "counter.ttl", Value: k.TTL, Least: 10 * time.Second},
		{Key: "counter.idle_timeout", Value: k.IdleTimeout, Least: 10 * time.Second},
		{Key: "counter.lockout_for", Value: k.LockoutFor, Least: time.Second},
	}); err != nil {
		return err
	}
	if k.LockoutAfter < 1 {
		return fmt.Errorf("counter.lockout_after: %d is less than 1", k.LockoutAfter)
	}
	if _, err := time.LoadLocation(k.TimeZone); err != nil {
		return fmt.Errorf("counter.time_zone: %w", err)
	}
	return nil
}

// HubURLs is hub.url: the API URL of every hub node, written as one URL or as a YAML list of them. Every
// node serves every request; the connector fails over between them in this order.
type HubURLs []string

// UnmarshalYAML takes a single URL or a list.
func (h *HubURLs) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		var u string
		if err := n.Decode(&u); err != nil {
			return err
		}
		*h = HubURLs{u}
	case yaml.SequenceNode:
		var us []string
		if err := n.Decode(&us); err != nil {
			return err
		}
		*h = us
	default:
		return fmt.Errorf("line %d: hub.url: give one URL or a list of URLs", n.Line)
	}
	return nil
}

// CheckHubURLs checks the hub nodes' URLs given under key (hub.url, or a flag): at least one, each https://
// with a host, none twice. A bad entry of a list is named by its index.
func CheckHubURLs(key string, urls []string) error {
	if len(urls) == 0 {
		return fmt.Errorf("%s: give at least one URL", key)
	}
	name := func(i int) string {
		if len(urls) == 1 {
			return key
		}
		return fmt.Sprintf("%s[%d]", key, i)
	}
	seen := map[string]int{}
	for i, u := range urls {
		if err := hubapi.ValidBaseURL(u); err != nil {
			return fmt.Errorf("%s: %w", name(i), err)
		}
		norm := strings.TrimRight(u, "/")
		if j, ok := seen[norm]; ok {
			return fmt.Errorf("%s: %q repeats %s", name(i), u, name(j))
		}
		seen[norm] = i
	}
	return nil
}

// Dataset maps one dataset to the agency system that holds it.
type Dataset struct {
	// MaxBytes bounds one delivery; default exchange.max_bytes.
	MaxBytes int64          `yaml:"max_bytes"`
	Backend  backend.Config `yaml:"backend"`
	// Sandbox is the synthetic backend that answers the dataset's sandbox tickets (a service or dataset
	// in its sandbox stage); without one they are refused. It is never the real backend.
	Sandbox *backend.Config `yaml:"sandbox"`
}

// TD is the parsed trust domain; call after Validate.
func (c *Config) TD() spiffeid.TrustDomain {
	return spiffeid.RequireTrustDomainFromString(c.TrustDomain)
}

// ID is this connector's SPIFFE ID; call after Validate.
func (c *Config) ID() spiffeid.ID {
	id, _ := fedid.Connector(c.TD(), c.Org, c.Name)
	return id
}

// DirectoryPath is where the copy of the hub's directory is kept.
func (c *Config) DirectoryPath() string { return filepath.Join(c.DataDir, "directory.json") }

// IdentityDir is where the local SVID, key and bundle are kept.
func (c *Config) IdentityDir() string { return filepath.Join(c.DataDir, "identity") }
