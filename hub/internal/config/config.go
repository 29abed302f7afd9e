// Package config is the hub's configuration: defaults, the YAML file and flags, decoded into a typed Config
// and validated before anything starts.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"time"

	"github.com/mydatafed/mydata/hub/internal/identity"
	"github.com/mydatafed/mydata/hub/internal/identity/certlogin"
	"github.com/mydatafed/mydata/hub/internal/identity/oidclogin"
	"github.com/mydatafed/mydata/hub/internal/identity/passkey"
	"github.com/mydatafed/mydata/hub/internal/identity/twodocs"
	"github.com/mydatafed/mydata/hub/internal/notify"
	"github.com/mydatafed/mydata/pkg/configfile"
	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/telemetry"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Config is the hub's configuration. conf/hub.yaml documents every key.
type Config struct {
	TrustDomain string `yaml:"trust_domain"`
	NodeID      string `yaml:"node_id"`
	DataDir     string `yaml:"data_dir"`

	API struct {
		Listen    string `yaml:"listen"`
		PublicURL string `yaml:"public_url"`
	} `yaml:"api"`

	Raft struct {
		Listen    string        `yaml:"listen"`
		Advertise string        `yaml:"advertise"`
		Bootstrap bool          `yaml:"bootstrap"`
		Snapshot  time.Duration `yaml:"snapshot_interval"`
		Threshold uint64        `yaml:"snapshot_threshold"`
		// HoldTimeout bounds how long a write waits for a leader during an election.
		HoldTimeout time.Duration `yaml:"hold_timeout"`
		// DeadServerThreshold: a voter unreachable this long is removed, if MinVoters remain; 0 is off.
		DeadServerThreshold time.Duration `yaml:"dead_server_threshold"`
		MinVoters           int           `yaml:"min_voters"`
		// ReadyLag is how many entries behind its commit index a node may be and still be ready.
		ReadyLag uint64 `yaml:"ready_lag"`
		// Join lists members' API URLs a new node joins through, with JoinToken; --join and --token set them.
		Join      []string `yaml:"join"`
		JoinToken string   `yaml:"join_token"`
	} `yaml:"raft"`

	CA struct {
		RootTTL     time.Duration `yaml:"root_ttl"`
		SVIDTTL     time.Duration `yaml:"svid_ttl"`
		OperatorTTL time.Duration `yaml:"operator_ttl"`
	} `yaml:"ca"`

	Tokens struct {
		DefaultTTL time.Duration `yaml:"default_ttl"`
		MaxTTL     time.Duration `yaml:"max_ttl"`
	} `yaml:"tokens"`

	Directory struct {
		TTL         time.Duration `yaml:"ttl"`
		MaxLongPoll time.Duration `yaml:"max_long_poll"`
		DownAfter   time.Duration `yaml:"down_after"`
	} `yaml:"directory"`

	Portal struct {
		Listen    string `yaml:"listen"`
		PublicURL string `yaml:"public_url"`
		TLSCert   string `yaml:"tls_cert"`
		TLSKey    string `yaml:"tls_key"`
		// TimeZone is the zone the pages write times in.
		TimeZone string `yaml:"time_zone"`
	} `yaml:"portal"`

	Identity struct {
		DevLogin bool `yaml:"dev_login"`
		// SessionTTL ends a session however busy; IdleTimeout ends one left alone.
		SessionTTL  time.Duration   `yaml:"session_ttl"`
		IdleTimeout time.Duration   `yaml:"idle_timeout"`
		Levels      identity.Levels `yaml:"levels"`
		// Lockout bounds failed logins per citizen and per client address.
		Lockout struct {
			MaxFailures int           `yaml:"max_failures"`
			Window      time.Duration `yaml:"window"`
			Duration    time.Duration `yaml:"duration"`
		} `yaml:"lockout"`
		OTP          OTPMethod     `yaml:"otp"`
		Passkey      PasskeyMethod `yaml:"passkey"`
		Certificates []CertMethod  `yaml:"certificates"`
		TwoDocs      TwoDocsMethod `yaml:"two_docs"`
		OIDC         []OIDCMethod  `yaml:"oidc"`
	} `yaml:"identity"`

	// Notify sends citizens one-time codes and notices of each use of their data.
	Notify struct {
		Mail notify.MailConfig `yaml:"mail"`
		SMS  notify.SMSConfig  `yaml:"sms"`
		// Templates is a directory of files overriding the built-in message texts.
		Templates string `yaml:"templates"`
	} `yaml:"notify"`

	Consent struct {
		PendingTTL time.Duration `yaml:"pending_ttl"`
		CodeTTL    time.Duration `yaml:"code_ttl"`
		// CounterTTL is how long a counter code may wait to be presented at the counter.
		CounterTTL time.Duration `yaml:"counter_ttl"`
	} `yaml:"consent"`

	Telemetry struct {
		Listen string `yaml:"listen"`
	} `yaml:"telemetry"`

	Log telemetry.LogConfig `yaml:"log"`
}

// OTPMethod is the one-time code login, sent to a contact the citizen verified.
type OTPMethod struct {
	Enabled bool `yaml:"enabled"`
	Level   int  `yaml:"level"`
}

// PasskeyMethod is FIDO2 / passkeys.
type PasskeyMethod struct {
	Enabled bool `yaml:"enabled"`
	Level   int  `yaml:"level"`
	// RegisterLevel is the session level needed to register a passkey.
	RegisterLevel  int `yaml:"register_level"`
	passkey.Config `yaml:",inline"`
}

// CertMethod is a smart-card certificate type (natural-person, business, health-professional).
type CertMethod struct {
	NameZh string `yaml:"name_zh"`
	NameEn string `yaml:"name_en"`
	Level  int    `yaml:"level"`
	// SignerURL is the signing component's endpoint on the citizen's computer.
	SignerURL        string `yaml:"signer_url"`
	certlogin.Config `yaml:",inline"`
}

// TwoDocsMethod is the two-documents login against a registry.
type TwoDocsMethod struct {
	Enabled        bool `yaml:"enabled"`
	Level          int  `yaml:"level"`
	twodocs.Config `yaml:",inline"`
}

// OIDCMethod is an external OpenID provider; Level is the highest its acr/amr map to.
type OIDCMethod struct {
	NameZh           string `yaml:"name_zh"`
	NameEn           string `yaml:"name_en"`
	oidclogin.Config `yaml:",inline"`
}

// Default is the embedded default: a one-node hub on loopback.
func Default() Config {
	var c Config
	c.TrustDomain = "mydata.example"
	c.NodeID = "hub-1"
	c.DataDir = "/var/lib/mydata/hub"
	c.API.Listen = "127.0.0.1:8443"
	c.Raft.Listen = "127.0.0.1:8300"
	c.Raft.Bootstrap = true
	c.Raft.Snapshot = 2 * time.Minute
	c.Raft.Threshold = 1024
	c.Raft.HoldTimeout = 5 * time.Second
	c.Raft.DeadServerThreshold = time.Hour
	c.Raft.MinVoters = 3
	c.Raft.ReadyLag = 100
	c.CA.RootTTL = 10 * 365 * 24 * time.Hour
	c.CA.SVIDTTL = 24 * time.Hour
	c.CA.OperatorTTL = 90 * 24 * time.Hour
	c.Tokens.DefaultTTL = time.Hour
	c.Tokens.MaxTTL = 7 * 24 * time.Hour
	c.Directory.TTL = 72 * time.Hour
	c.Directory.MaxLongPoll = 30 * time.Second
	c.Directory.DownAfter = 30 * time.Second
	c.Telemetry.Listen = "127.0.0.1:9443"
	c.Portal.Listen = "127.0.0.1:8080"
	c.Identity.SessionTTL = time.Hour
	c.Identity.IdleTimeout = 15 * time.Minute
	c.Identity.Levels = identity.DefaultLevels()
	c.Identity.Lockout.MaxFailures = 5
	c.Identity.Lockout.Window = 15 * time.Minute
	c.Identity.Lockout.Duration = 15 * time.Minute
	c.Identity.OTP.Level = 1
	c.Identity.Passkey.Config = passkey.DefaultConfig()
	c.Identity.Passkey.Level = 2
	c.Identity.Passkey.RegisterLevel = 2
	c.Identity.TwoDocs.Level = 2
	c.Identity.TwoDocs.Config = twodocs.Config{}.WithDefaults()
	// The senders' own defaults, stated here so that the example file and the defaults agree.
	c.Notify.Mail.Port = 587
	c.Notify.Mail.StartTLS = "required"
	c.Notify.Mail.Timeout = 30 * time.Second
	c.Notify.SMS.Timeout = 10 * time.Second
	c.Portal.TimeZone = "Asia/Taipei"
	c.Consent.PendingTTL = 10 * time.Minute
	c.Consent.CodeTTL = 60 * time.Second
	c.Consent.CounterTTL = 20 * time.Minute
	c.Log = telemetry.LogConfig{Format: "text", Level: "info"}
	return c
}

// Load reads the file at path over the defaults and validates the result.
func Load(path string) (Config, error) { return LoadWith(path, nil) }

// LoadWith is Load with flags applied over the file before validation.
func LoadWith(path string, flags func(*Config)) (Config, error) {
	c := Default()
	if err := configfile.Load(path, &c); err != nil {
		return c, err
	}
	if flags != nil {
		flags(&c)
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
	if err := fedid.ValidName(c.NodeID); err != nil {
		return fmt.Errorf("node_id: %w", err)
	}
	if c.DataDir == "" {
		return errors.New("data_dir: required")
	}
	if !filepath.IsAbs(c.DataDir) {
		abs, err := filepath.Abs(c.DataDir)
		if err != nil {
			return fmt.Errorf("data_dir: %w", err)
		}
		c.DataDir = abs
	}
	if err := checkListens([]string{"api.listen", c.API.Listen, "raft.listen", c.Raft.Listen, "telemetry.listen", c.Telemetry.Listen, "portal.listen", c.Portal.Listen}); err != nil {
		return err
	}
	if c.Raft.Advertise == "" {
		c.Raft.Advertise = c.Raft.Listen
	}
	if host, _, err := net.SplitHostPort(c.Raft.Advertise); err != nil || host == "" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified() {
		return fmt.Errorf("raft.advertise: %q must be a host:port that other nodes can reach", c.Raft.Advertise)
	}
	if (c.Portal.TLSCert == "") != (c.Portal.TLSKey == "") {
		return errors.New("portal.tls_cert and portal.tls_key: give both or neither")
	}
	if host, _, _ := net.SplitHostPort(c.Portal.Listen); c.Portal.TLSCert == "" && !isLoopback(host) {
		return fmt.Errorf("portal.listen: %q is not loopback, so portal.tls_cert and portal.tls_key are required (plain HTTP is for loopback only)", c.Portal.Listen)
	}
	if c.Portal.PublicURL == "" {
		scheme := "http"
		if c.Portal.TLSCert != "" {
			scheme = "https"
		}
		c.Portal.PublicURL = scheme + "://" + c.Portal.Listen
	}
	if u, err := url.Parse(c.Portal.PublicURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("portal.public_url: %q is not an http(s) URL", c.Portal.PublicURL)
	}
	if c.API.PublicURL == "" {
		c.API.PublicURL = "https://" + c.API.Listen
	}
	if u, err := url.Parse(c.API.PublicURL); err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("api.public_url: %q is not an https:// URL", c.API.PublicURL)
	}
	if err := configfile.CheckMinimums([]configfile.Min{
		{Key: "ca.root_ttl", Value: c.CA.RootTTL, Least: 24 * time.Hour},
		{Key: "ca.svid_ttl", Value: c.CA.SVIDTTL, Least: 10 * time.Second},
		{Key: "ca.operator_ttl", Value: c.CA.OperatorTTL, Least: time.Hour},
		{Key: "tokens.default_ttl", Value: c.Tokens.DefaultTTL, Least: time.Second},
		{Key: "tokens.max_ttl", Value: c.Tokens.MaxTTL, Least: time.Second},
		{Key: "directory.ttl", Value: c.Directory.TTL, Least: time.Minute},
		{Key: "directory.max_long_poll", Value: c.Directory.MaxLongPoll, Least: time.Second},
		{Key: "raft.snapshot_interval", Value: c.Raft.Snapshot, Least: time.Second},
		{Key: "raft.hold_timeout", Value: c.Raft.HoldTimeout, Least: 100 * time.Millisecond},
		{Key: "identity.session_ttl", Value: c.Identity.SessionTTL, Least: time.Minute},
		{Key: "identity.idle_timeout", Value: c.Identity.IdleTimeout, Least: time.Minute},
		{Key: "consent.pending_ttl", Value: c.Consent.PendingTTL, Least: time.Minute},
		{Key: "consent.code_ttl", Value: c.Consent.CodeTTL, Least: 10 * time.Second},
		{Key: "consent.counter_ttl", Value: c.Consent.CounterTTL, Least: time.Minute},
	}); err != nil {
		return err
	}
	if c.Directory.DownAfter != 0 && c.Directory.DownAfter < 3*time.Second {
		return fmt.Errorf("directory.down_after: %s is shorter than 3s (0 turns connector liveness off)", c.Directory.DownAfter)
	}
	if c.Raft.DeadServerThreshold != 0 && c.Raft.DeadServerThreshold < 10*time.Second {
		return fmt.Errorf("raft.dead_server_threshold: %s is shorter than 10s (0 turns cleanup off)", c.Raft.DeadServerThreshold)
	}
	if c.Raft.MinVoters < 1 {
		return fmt.Errorf("raft.min_voters: %d, want at least 1", c.Raft.MinVoters)
	}
	for i, u := range c.Raft.Join {
		if pu, err := url.Parse(u); err != nil || pu.Scheme != "https" || pu.Host == "" {
			return fmt.Errorf("raft.join[%d]: %q is not an https:// URL", i, u)
		}
	}
	if len(c.Raft.Join) > 0 {
		if c.Raft.JoinToken == "" {
			return errors.New("raft.join_token: required with raft.join")
		}
		// A node that joins must not also make a cluster of its own.
		c.Raft.Bootstrap = false
	}
	if c.Identity.IdleTimeout > c.Identity.SessionTTL {
		return fmt.Errorf("identity.idle_timeout: %s is longer than identity.session_ttl %s", c.Identity.IdleTimeout, c.Identity.SessionTTL)
	}
	if err := c.Identity.Levels.Validate(); err != nil {
		return fmt.Errorf("identity.levels: %w", err)
	}
	if err := c.validateMethods(); err != nil {
		return err
	}
	if _, err := time.LoadLocation(c.Portal.TimeZone); err != nil {
		return fmt.Errorf("portal.time_zone: %w", err)
	}
	if c.CA.SVIDTTL > c.CA.RootTTL/2 {
		return fmt.Errorf("ca.svid_ttl: %s must be at most half of ca.root_ttl", c.CA.SVIDTTL)
	}
	if c.Tokens.DefaultTTL > c.Tokens.MaxTTL {
		return fmt.Errorf("tokens.default_ttl: %s is longer than tokens.max_ttl %s", c.Tokens.DefaultTTL, c.Tokens.MaxTTL)
	}
	return c.Log.Validate()
}

// checkListens checks listen addresses given as key, address pairs, in that order, so that the first bad one
// is always the one reported.
func checkListens(pairs []string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if err := configfile.CheckListen(pairs[i], pairs[i+1]); err != nil {
			return err
		}
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// TD is the parsed trust domain; call after Validate.
func (c *Config) TD() spiffeid.TrustDomain {
	return spiffeid.RequireTrustDomainFromString(c.TrustDomain)
}

// Paths under the data directory.
func (c *Config) CADir() string       { return filepath.Join(c.DataDir, "ca") }
func (c *Config) StatePath() string   { return filepath.Join(c.DataDir, "state.db") }
func (c *Config) RaftDir() string     { return filepath.Join(c.DataDir, "raft") }
func (c *Config) OperatorDir() string { return filepath.Join(c.DataDir, "operator") }
func (c *Config) KeysDir() string     { return filepath.Join(c.DataDir, "keys") }

// KEKPath is the cluster key-encryption key, the same file on every node.
func (c *Config) KEKPath() string { return filepath.Join(c.KeysDir(), "cluster.kek") }

// validateMethods checks the login methods' levels and what each method's package can check without I/O.
func (c *Config) validateMethods() error {
	id := &c.Identity
	if id.Lockout.MaxFailures < 1 || id.Lockout.Window <= 0 || id.Lockout.Duration <= 0 {
		return errors.New("identity.lockout: max_failures, window and duration must be positive")
	}
	level := func(key string, l int) error {
		if _, ok := id.Levels.Find(l); !ok {
			return fmt.Errorf("%s: %d is not one of identity.levels", key, l)
		}
		return nil
	}
	if id.OTP.Enabled {
		if err := level("identity.otp.level", id.OTP.Level); err != nil {
			return err
		}
		if c.Notify.Mail.IsZero() && c.Notify.SMS.IsZero() {
			return errors.New("identity.otp: needs notify.mail or notify.sms to send codes")
		}
	}
	if id.Passkey.Enabled {
		if err := level("identity.passkey.level", id.Passkey.Level); err != nil {
			return err
		}
		if err := level("identity.passkey.register_level", id.Passkey.RegisterLevel); err != nil {
			return err
		}
		if err := id.Passkey.Config.Validate(); err != nil {
			return fmt.Errorf("identity.passkey.%w", err)
		}
	}
	seen := map[string]bool{}
	for i, m := range id.Certificates {
		key := fmt.Sprintf("identity.certificates[%d]", i)
		if m.ID == "" || seen[m.ID] || m.NameZh == "" || m.NameEn == "" {
			return fmt.Errorf("%s: id (unique), name_zh and name_en are required", key)
		}
		seen[m.ID] = true
		if err := level(key+".level", m.Level); err != nil {
			return err
		}
		if u, err := url.Parse(m.SignerURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%s.signer_url: %q is not an http(s) URL", key, m.SignerURL)
		}
	}
	if id.TwoDocs.Enabled {
		if err := level("identity.two_docs.level", id.TwoDocs.Level); err != nil {
			return err
		}
	}
	for i, m := range id.OIDC {
		key := fmt.Sprintf("identity.oidc[%d]", i)
		if m.NameZh == "" || m.NameEn == "" || seen[m.ID] {
			return fmt.Errorf("%s: name_zh and name_en are required, and id must differ from the other methods'", key)
		}
		seen[m.ID] = true
		if err := m.Config.Validate(); err != nil {
			return fmt.Errorf("%s.%w", key, err)
		}
	}
	if !c.Notify.Mail.IsZero() {
		if err := c.Notify.Mail.Validate(); err != nil {
			return fmt.Errorf("notify.mail: %w", err)
		}
	}
	if !c.Notify.SMS.IsZero() {
		if err := c.Notify.SMS.Validate(); err != nil {
			return fmt.Errorf("notify.sms: %w", err)
		}
	}
	return nil
}
