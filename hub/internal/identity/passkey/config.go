package passkey

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
)

// Config is the passkey method's part of the hub configuration.
type Config struct {
	// ID is the method id the portal and the dataset requirements use.
	ID string `yaml:"id"`
	// RPID is the WebAuthn relying party id: the portal's host name, or a parent domain of it. Credentials are
	// bound to it for good, so changing it later orphans every registered passkey.
	RPID string `yaml:"rp_id"`
	// RPDisplayName is the name authenticators show next to the credential.
	RPDisplayName string `yaml:"rp_display_name"`
	// Origins are the portal's public URLs (scheme, host, port) that may run a ceremony.
	Origins []string `yaml:"origins"`
	// UserVerification is "required" (the default: a PIN or biometric on the authenticator, which makes the
	// passkey two factors), "preferred" or "discouraged".
	UserVerification string `yaml:"user_verification"`
	// Timeout is how long the browser waits for the authenticator and how long a session blob stays valid.
	Timeout time.Duration `yaml:"timeout"`
}

const (
	defaultID          = "passkey"
	defaultDisplayName = "MyData"
	defaultTimeout     = 5 * time.Minute
	minTimeout         = 30 * time.Second
	maxTimeout         = 10 * time.Minute
)

// DefaultConfig is the configuration before the file is read. RPID and Origins have no sensible default.
func DefaultConfig() Config {
	return Config{
		ID:               defaultID,
		RPDisplayName:    defaultDisplayName,
		UserVerification: string(protocol.VerificationRequired),
		Timeout:          defaultTimeout,
	}
}

// withDefaults fills what was left empty, so that a Config built in code needs only RPID and Origins.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.ID == "" {
		c.ID = d.ID
	}
	if c.RPDisplayName == "" {
		c.RPDisplayName = d.RPDisplayName
	}
	if c.UserVerification == "" {
		c.UserVerification = d.UserVerification
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	c.Origins = append([]string(nil), c.Origins...)
	for i, o := range c.Origins {
		c.Origins[i] = strings.TrimSuffix(o, "/")
	}
	return c
}

// Validate reports the first bad value with its key and why.
func (c Config) Validate() error {
	if c.ID == "" {
		return fmt.Errorf("id: must not be empty")
	}
	if c.RPID == "" {
		return fmt.Errorf("rp_id: must be set to the portal's host name")
	}
	if err := protocol.ValidateRPID(c.RPID); err != nil || strings.ContainsAny(c.RPID, ":/") {
		return fmt.Errorf("rp_id: %q is not a domain name", c.RPID)
	}
	if c.RPDisplayName == "" {
		return fmt.Errorf("rp_display_name: must not be empty")
	}
	if len(c.Origins) == 0 {
		return fmt.Errorf("origins: must list the portal's public URL")
	}
	for i, o := range c.Origins {
		if err := checkOrigin(o, c.RPID); err != nil {
			return fmt.Errorf("origins[%d]: %q: %w", i, o, err)
		}
	}
	switch protocol.UserVerificationRequirement(c.UserVerification) {
	case protocol.VerificationRequired, protocol.VerificationPreferred, protocol.VerificationDiscouraged:
	default:
		return fmt.Errorf("user_verification: %q is not one of required, preferred, discouraged", c.UserVerification)
	}
	if c.Timeout < minTimeout || c.Timeout > maxTimeout {
		return fmt.Errorf("timeout: %s is outside %s..%s", c.Timeout, minTimeout, maxTimeout)
	}
	return nil
}

// checkOrigin accepts an origin whose host is the RP id or under it, as browsers require. Plain http is allowed
// only for localhost, the one insecure origin browsers let run WebAuthn (the embedded demo).
func checkOrigin(o, rpID string) error {
	u, err := url.Parse(o)
	if err != nil {
		return fmt.Errorf("not a URL")
	}
	if u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("must be scheme://host[:port] only")
	}
	host := u.Hostname()
	switch u.Scheme {
	case "https":
	case "http":
		if host != "localhost" && !strings.HasSuffix(host, ".localhost") {
			return fmt.Errorf("plain http is only allowed for localhost")
		}
	default:
		return fmt.Errorf("scheme must be https")
	}
	if net.ParseIP(host) != nil {
		return fmt.Errorf("WebAuthn does not work on an IP address; use a host name")
	}
	if host != rpID && !strings.HasSuffix(host, "."+rpID) {
		return fmt.Errorf("host %q is not %q or under it", host, rpID)
	}
	return nil
}
