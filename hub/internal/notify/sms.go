package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// SMSConfig is the SMS gateway's webhook. Each message is POSTed as JSON
// {"to": "+886912345678", "text": "...", "id": "<message id>"} with the id also in an Idempotency-Key
// header; a 2xx answer means accepted.
type SMSConfig struct {
	// URL is https, or http to a loopback host.
	URL string `yaml:"url"`
	// TokenFile holds the bearer token sent as Authorization (a trailing newline is ignored).
	TokenFile string `yaml:"token_file"`
	// Timeout bounds one request; defaults to 10s.
	Timeout time.Duration `yaml:"timeout"`
}

// IsZero reports whether SMS is off (no URL).
func (c SMSConfig) IsZero() bool { return c.URL == "" }

func (c SMSConfig) withDefaults() SMSConfig {
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	return c
}

// Validate checks the configuration after defaults; errors name the key.
func (c SMSConfig) Validate() error {
	c = c.withDefaults()
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		return errors.New("url: required")
	case err != nil:
		return fmt.Errorf("url: %w", err)
	case u.Host == "" || u.User != nil:
		return fmt.Errorf("url: %q needs a host and no user info", c.URL)
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		return fmt.Errorf("url: http is allowed only to a loopback host; the token would cross in clear text")
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("url: scheme %q is not https", u.Scheme)
	case c.TokenFile == "":
		return errors.New("token_file: required")
	case c.Timeout < 0:
		return fmt.Errorf("timeout: %v is negative", c.Timeout)
	}
	return nil
}

type smsSender struct {
	cfg    SMSConfig
	token  string
	client *http.Client
}

func newSMSSender(cfg SMSConfig) (*smsSender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	b, err := os.ReadFile(cfg.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("token_file: %w", err)
	}
	token := strings.TrimRight(string(b), "\r\n")
	if token == "" || strings.ContainsAny(token, "\r\n") {
		return nil, fmt.Errorf("token_file: %s must hold one non-empty line", cfg.TokenFile)
	}
	return &smsSender{
		cfg:   cfg,
		token: token,
		client: &http.Client{
			// A redirect would carry the token and the message somewhere the operator did not name.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// ParsePhone reads a mobile number as E.164 ("+886912345678"). It accepts "+" and 8 to 15 digits, or a
// Taiwanese mobile number written nationally ("0912-345-678"); spaces and hyphens are ignored.
func ParsePhone(s string) (string, error) {
	s = strings.NewReplacer(" ", "", "-", "").Replace(strings.TrimSpace(s))
	digits := func(d string) bool { return d != "" && strings.Trim(d, "0123456789") == "" }
	switch {
	case len(s) == 10 && strings.HasPrefix(s, "09") && digits(s):
		return "+886" + s[1:], nil
	case len(s) >= 9 && len(s) <= 16 && s[0] == '+' && s[1] != '0' && digits(s[1:]):
		return s, nil
	}
	return "", fmt.Errorf("%w: not a mobile number", ErrInvalidAddress)
}

// SendSMS sends msg's SMS text (or, if empty, its body) to the mobile number to.
func (s *Sender) SendSMS(ctx context.Context, to string, msg Message) error {
	return s.observe(ChannelSMS, s.sendSMS(ctx, to, msg))
}

func (s *Sender) sendSMS(ctx context.Context, to string, msg Message) error {
	fail := func(op string, permanent bool, err error) error {
		return &Error{Channel: ChannelSMS, Op: op, Permanent: permanent, Err: err}
	}
	if s.sms == nil {
		return fail("config", true, ErrNotConfigured)
	}
	phone, err := ParsePhone(to)
	if err != nil {
		return fail("address", true, err)
	}
	id, err := messageID(msg)
	if err != nil {
		return fail("message", true, err)
	}
	text := strings.TrimSpace(msg.SMS)
	if text == "" {
		text = strings.TrimSpace(msg.Body)
	}
	if text == "" {
		return fail("message", true, fmt.Errorf("%w: no text", ErrInvalidMessage))
	}
	body, err := json.Marshal(struct {
		To   string `json:"to"`
		Text string `json:"text"`
		ID   string `json:"id"`
	}{phone, text, id})
	if err != nil {
		return fail("message", true, err)
	}
	return s.sms.post(ctx, id, body)
}

func (g *smsSender) post(ctx context.Context, id string, body []byte) error {
	e := &Error{Channel: ChannelSMS, Op: "post"}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.cfg.URL, bytes.NewReader(body))
	if err != nil {
		e.Permanent, e.Err = true, err
		return e
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+g.token)
	req.Header.Set("Idempotency-Key", id)
	req.Header.Set("User-Agent", "mydata-hub")
	resp, err := g.client.Do(req)
	if err != nil {
		// Refused, reset or timed out: the gateway may or may not have the message; the idempotency
		// key makes a retry safe either way.
		e.Err = err
		return e
	}
	defer resp.Body.Close()
	// Read a little so the connection can be reused; the gateway's text goes into the error, cut short.
	text, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	e.Code = resp.StatusCode
	e.Err = fmt.Errorf("gateway answered %s: %s", resp.Status, strings.TrimSpace(string(bytes.ToValidUTF8(text, nil))))
	switch resp.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden:
		// Our token, not the message: temporary (see the package comment).
	case http.StatusRequestTimeout, http.StatusTooManyRequests:
		// Try again later, by definition.
	default:
		e.Permanent = resp.StatusCode >= 400 && resp.StatusCode < 500
	}
	e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), time.Now())
	return e
}

// retryAfter reads Retry-After as seconds or an HTTP date; 0 if absent or unreadable.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
