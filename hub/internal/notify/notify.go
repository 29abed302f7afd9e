// Package notify sends messages to citizens by e-mail and SMS: one-time login codes, and the notices the
// platform owes a citizen each time their data is used or a download is ready. It holds the senders (an
// SMTP submission client and an SMS gateway webhook) and the message templates, in Traditional Chinese and
// English, with an operator's override directory.
//
// Errors are classified for an outbox that retries: IsPermanent says that sending the same message again
// cannot succeed (a bad address, a recipient the mail server refuses, a request the gateway rejects); any
// other error is temporary. A fault in the hub's own set-up (the SMTP server refuses our login, lacks
// STARTTLS, the gateway refuses our token) is temporary on purpose: the message is fine, and an operator
// fixing the set-up should not find the notices owed to citizens dropped meanwhile.
//
// The hub's configuration is expected to hold the senders' settings as
//
//	notify:
//	  mail: {host: ..., port: 587, from: ..., username: ..., password_file: ..., start_tls: required,
//	         server_name: ..., ca_file: ..., timeout: 30s}
//	  sms: {url: https://..., token_file: ..., timeout: 10s}
//	  templates: /etc/mydata/notify   # optional override directory, see LoadTemplates
package notify

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Message is one message to one citizen, as Render makes it.
type Message struct {
	// ID identifies the message across retries: it is the SMS gateway's idempotency key and the local part
	// of the e-mail's Message-ID, so a retried send is recognised as the same message. An outbox sets it
	// once per message; empty means a fresh random id for each send. Letters, digits, '.', '_' and '-',
	// at most 64.
	ID      string
	Subject string
	// Body is the e-mail's plain-text body.
	Body string
	// SMS is the text sent by SMS; empty means Body.
	SMS string
}

// Channel names, as Error.Channel and in metrics.
const (
	ChannelMail = "mail"
	ChannelSMS  = "sms"
)

// Sentinel errors, wrapped in an *Error.
var (
	// ErrNotConfigured: the channel has no configuration on this hub. Permanent.
	ErrNotConfigured = errors.New("channel not configured")
	// ErrInvalidAddress: the e-mail address or phone number cannot be sent to. Permanent.
	ErrInvalidAddress = errors.New("invalid address")
	// ErrInvalidMessage: the message cannot be sent as it is (CR or LF in a header value, a bad ID, no
	// text). Permanent.
	ErrInvalidMessage = errors.New("invalid message")
)

// Error is a failed send.
type Error struct {
	// Channel is ChannelMail or ChannelSMS.
	Channel string
	// Op is the step that failed: "address", "message", "dial", "starttls", "auth", "mail from",
	// "rcpt to", "data", "post".
	Op string
	// Code is the SMTP reply code or HTTP status, 0 if there was none.
	Code int
	// Permanent: retrying the same message cannot succeed.
	Permanent bool
	// RetryAfter is the SMS gateway's Retry-After, if it gave one.
	RetryAfter time.Duration
	Err        error
}

func (e *Error) Error() string {
	kind := "temporary"
	if e.Permanent {
		kind = "permanent"
	}
	return fmt.Sprintf("notify %s: %s (%s): %v", e.Channel, e.Op, kind, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// IsPermanent reports whether err says that sending the same message again cannot succeed. Any error that
// is not an *Error (a cancelled context, say) is temporary.
func IsPermanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Permanent
}

// Config wires the Sender. A channel whose configuration is zero (no host, no URL) is off, and sending
// through it fails with ErrNotConfigured.
type Config struct {
	Mail       MailConfig            `yaml:"mail"`
	SMS        SMSConfig             `yaml:"sms"`
	Registerer prometheus.Registerer `yaml:"-"`
	// Now stamps the Date header; defaults to time.Now.
	Now func() time.Time `yaml:"-"`
}

// Sender sends messages. It is safe for concurrent use; each send opens its own connection.
type Sender struct {
	mail    *mailer
	sms     *smsSender
	now     func() time.Time
	metrics *metrics
}

// New validates cfg, reads the secret files it names, and makes a Sender.
func New(cfg Config) (*Sender, error) {
	s := &Sender{now: cfg.Now}
	if s.now == nil {
		s.now = time.Now
	}
	var err error
	if !cfg.Mail.IsZero() {
		if s.mail, err = newMailer(cfg.Mail); err != nil {
			return nil, fmt.Errorf("notify: mail.%w", err)
		}
	}
	if !cfg.SMS.IsZero() {
		if s.sms, err = newSMSSender(cfg.SMS); err != nil {
			return nil, fmt.Errorf("notify: sms.%w", err)
		}
	}
	if s.metrics, err = newMetrics(cfg.Registerer); err != nil {
		return nil, fmt.Errorf("notify: metrics: %w", err)
	}
	return s, nil
}

// messageID returns msg.ID if it is valid, a random one if it is empty.
func messageID(msg Message) (string, error) {
	if msg.ID == "" {
		return strings.ToLower(rand.Text()), nil
	}
	if len(msg.ID) > 64 {
		return "", fmt.Errorf("%w: ID longer than 64", ErrInvalidMessage)
	}
	for _, r := range msg.ID {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return "", fmt.Errorf("%w: ID has %q", ErrInvalidMessage, r)
		}
	}
	return msg.ID, nil
}

func (s *Sender) observe(channel string, err error) error {
	result := "ok"
	switch {
	case err == nil:
	case IsPermanent(err):
		result = "permanent"
	default:
		result = "temporary"
	}
	s.metrics.sends.WithLabelValues(channel, result).Inc()
	return err
}
