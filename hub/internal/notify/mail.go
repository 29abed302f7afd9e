package notify

// The SMTP client is github.com/emersion/go-smtp rather than net/smtp: net/smtp is frozen, has no
// per-command timeouts, and reports replies as bare textproto errors; go-smtp gives each command a
// deadline, returns replies as *smtp.SMTPError with the enhanced status code, and its server package is
// what the tests run against, so client and test server come from one maintained code base.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// StartTLS modes.
const (
	StartTLSRequired = "required"
	// StartTLSNone sends in clear text; allowed only to a loopback host (a local relay).
	StartTLSNone = "none"
)

// MailConfig is the SMTP submission server the hub sends through.
type MailConfig struct {
	Host string `yaml:"host"`
	// Port defaults to 587 (submission).
	Port int `yaml:"port"`
	// From is the sender, with an optional display name: "MyData <noreply@mydata.example>".
	From     string `yaml:"from"`
	Username string `yaml:"username"`
	// PasswordFile holds the password (a trailing newline is ignored); required with Username.
	PasswordFile string `yaml:"password_file"`
	// StartTLS is "required" (default) or "none", which only a loopback Host may use.
	StartTLS string `yaml:"start_tls"`
	// ServerName is the name the server's certificate must carry; defaults to Host.
	ServerName string `yaml:"server_name"`
	// CAFile holds PEM certificates trusted for the server, besides the system's roots.
	CAFile string `yaml:"ca_file"`
	// Timeout bounds one whole send, connection to QUIT; defaults to 30s.
	Timeout time.Duration `yaml:"timeout"`
}

// IsZero reports whether mail is off (no host).
func (c MailConfig) IsZero() bool { return c.Host == "" }

func (c MailConfig) withDefaults() MailConfig {
	if c.Port == 0 {
		c.Port = 587
	}
	if c.StartTLS == "" {
		c.StartTLS = StartTLSRequired
	}
	if c.ServerName == "" {
		c.ServerName = c.Host
	}
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Second
	}
	return c
}

// Validate checks the configuration after defaults; errors name the key.
func (c MailConfig) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Host == "":
		return errors.New("host: required")
	case strings.ContainsAny(c.Host, " /:\r\n") && net.ParseIP(c.Host) == nil:
		return fmt.Errorf("host: %q is not a host name or address", c.Host)
	case c.Port < 1 || c.Port > 65535:
		return fmt.Errorf("port: %d is not a port", c.Port)
	case c.Timeout < 0:
		return fmt.Errorf("timeout: %v is negative", c.Timeout)
	}
	if _, err := parseFrom(c.From); err != nil {
		return fmt.Errorf("from: %w", err)
	}
	switch c.StartTLS {
	case StartTLSRequired:
	case StartTLSNone:
		if !isLoopback(c.Host) {
			return fmt.Errorf("start_tls: %q is allowed only for a loopback host, not %q", StartTLSNone, c.Host)
		}
		if c.Username != "" {
			return fmt.Errorf("start_tls: %q with username: the password would cross in clear text", StartTLSNone)
		}
	default:
		return fmt.Errorf("start_tls: %q is not %q or %q", c.StartTLS, StartTLSRequired, StartTLSNone)
	}
	if c.Username != "" && c.PasswordFile == "" {
		return errors.New("password_file: required with username")
	}
	if c.Username == "" && c.PasswordFile != "" {
		return errors.New("username: required with password_file")
	}
	return nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func parseFrom(s string) (*mail.Address, error) {
	if s == "" {
		return nil, errors.New("required")
	}
	if strings.ContainsAny(s, "\r\n") {
		return nil, errors.New("contains CR or LF")
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return nil, err
	}
	if !isASCII(a.Address) || !strings.Contains(a.Address, "@") {
		return nil, fmt.Errorf("%q: need an ASCII address with a domain", a.Address)
	}
	return a, nil
}

type mailer struct {
	cfg      MailConfig
	addr     string
	from     *mail.Address
	domain   string
	password string
	tls      *tls.Config
	helo     string
}

func newMailer(cfg MailConfig) (*mailer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	m := &mailer{cfg: cfg, addr: net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)), helo: "localhost"}
	m.from, _ = parseFrom(cfg.From)
	m.domain = m.from.Address[strings.LastIndexByte(m.from.Address, '@')+1:]
	if cfg.PasswordFile != "" {
		b, err := os.ReadFile(cfg.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("password_file: %w", err)
		}
		m.password = strings.TrimRight(string(b), "\r\n")
		if m.password == "" {
			return nil, fmt.Errorf("password_file: %s is empty", cfg.PasswordFile)
		}
	}
	if cfg.StartTLS == StartTLSRequired {
		roots, err := x509.SystemCertPool()
		if err != nil {
			roots = x509.NewCertPool()
		}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("ca_file: %w", err)
			}
			if !roots.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("ca_file: no PEM certificate in %s", cfg.CAFile)
			}
		}
		m.tls = &tls.Config{ServerName: cfg.ServerName, RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	if h, err := os.Hostname(); err == nil && strings.Contains(h, ".") && !strings.ContainsAny(h, " \r\n") {
		m.helo = h
	}
	return m, nil
}

// SendMail sends msg's subject and body to the e-mail address to.
func (s *Sender) SendMail(ctx context.Context, to string, msg Message) error {
	return s.observe(ChannelMail, s.sendMail(ctx, to, msg))
}

func (s *Sender) sendMail(ctx context.Context, to string, msg Message) error {
	fail := func(op string, permanent bool, err error) error {
		return &Error{Channel: ChannelMail, Op: op, Permanent: permanent, Err: err}
	}
	if s.mail == nil {
		return fail("config", true, ErrNotConfigured)
	}
	rcpt, err := parseRecipient(to)
	if err != nil {
		return fail("address", true, err)
	}
	data, err := s.mail.build(rcpt, msg, s.now())
	if err != nil {
		return fail("message", true, err)
	}
	return s.mail.deliver(ctx, rcpt.Address, data)
}

func parseRecipient(to string) (*mail.Address, error) {
	if strings.ContainsAny(to, "\r\n") {
		return nil, fmt.Errorf("%w: contains CR or LF", ErrInvalidAddress)
	}
	a, err := mail.ParseAddress(to)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidAddress, err)
	}
	// SMTPUTF8 is not supported: an internationalised address would need a server that offers it.
	at := strings.LastIndexByte(a.Address, '@')
	if !isASCII(a.Address) || at < 1 || !strings.Contains(a.Address[at:], ".") {
		return nil, fmt.Errorf("%w: need an ASCII address with a domain", ErrInvalidAddress)
	}
	return a, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// build makes the RFC 5322 message: UTF-8 text, the subject as encoded words, the body quoted-printable
// when it is mostly ASCII (readable in the raw) and base64 when it is mostly Chinese (a third the size).
func (m *mailer) build(to *mail.Address, msg Message, now time.Time) ([]byte, error) {
	id, err := messageID(msg)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(msg.Subject) == "" {
		return nil, fmt.Errorf("%w: no subject", ErrInvalidMessage)
	}
	// Checked before encoding: B-encoding would hide a line break, and a subject with one in it is a
	// template or caller bug to refuse, not to smuggle through.
	if strings.ContainsAny(msg.Subject, "\r\n") {
		return nil, fmt.Errorf("%w: CR or LF in the Subject header", ErrInvalidMessage)
	}
	headers := []struct{ name, value string }{
		{"From", m.from.String()},
		{"To", to.String()},
		{"Subject", encodeSubject(msg.Subject)},
		{"Date", now.Format(time.RFC1123Z)},
		{"Message-ID", "<" + id + "@" + m.domain + ">"},
		{"MIME-Version", "1.0"},
		{"Content-Type", "text/plain; charset=utf-8"},
		{"Content-Transfer-Encoding", ""},
		// Keeps out-of-office replies away from the sending address (RFC 3834).
		{"Auto-Submitted", "auto-generated"},
	}
	body := strings.ReplaceAll(msg.Body, "\r\n", "\n")
	useQP := nonASCIIShare(body) < 0.2
	if useQP {
		headers[7].value = "quoted-printable"
	} else {
		headers[7].value = "base64"
	}
	var b bytes.Buffer
	for _, h := range headers {
		// The folded subject is the one value with line breaks of our own making.
		if h.name != "Subject" && strings.ContainsAny(h.value, "\r\n") {
			return nil, fmt.Errorf("%w: CR or LF in the %s header", ErrInvalidMessage, h.name)
		}
		b.WriteString(h.name)
		b.WriteString(": ")
		b.WriteString(h.value)
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	if useQP {
		w := quotedprintable.NewWriter(&b)
		if _, err := w.Write([]byte(body)); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
		b.WriteString("\r\n")
	} else {
		enc := base64.StdEncoding.EncodeToString([]byte(strings.ReplaceAll(body, "\n", "\r\n")))
		for len(enc) > 76 {
			b.WriteString(enc[:76])
			b.WriteString("\r\n")
			enc = enc[76:]
		}
		b.WriteString(enc)
		b.WriteString("\r\n")
	}
	return b.Bytes(), nil
}

// encodeSubject writes a subject that is not plain ASCII as RFC 2047 B-encoded words, each on its own
// header line and short enough that "Subject: " and the word stay within 78 characters. (mime's encoder
// makes words of up to 75 characters and separates them with a space, so its first line runs over.)
// Every piece is encoded, ASCII ones too, so the spaces between words decode exactly as they were.
func encodeSubject(s string) string {
	if isASCII(s) && !strings.Contains(s, "=?") && mime.BEncoding.Encode("utf-8", s) == s {
		return s
	}
	const maxChunk = 39 // bytes: 52 base64 characters, a 64-character word
	var words []string
	for len(s) > 0 {
		n := 0
		for n < len(s) {
			_, size := utf8.DecodeRuneInString(s[n:])
			if n+size > maxChunk {
				break
			}
			n += size
		}
		words = append(words, "=?utf-8?b?"+base64.StdEncoding.EncodeToString([]byte(s[:n]))+"?=")
		s = s[n:]
	}
	return strings.Join(words, "\r\n ")
}

func nonASCIIShare(s string) float64 {
	if s == "" {
		return 0
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			n++
		}
	}
	return float64(n) / float64(len(s))
}

// deliver runs one SMTP session. The context bounds it all: when it ends the connection is closed under
// whichever command is waiting.
func (m *mailer) deliver(ctx context.Context, rcpt string, data []byte) (err error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	op := "dial"
	defer func() {
		if err != nil {
			err = m.classify(ctx, op, rcpt, err)
		}
	}()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", m.addr)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	var c *smtp.Client
	if m.tls != nil {
		op = "starttls"
		// NewClientStartTLS greets the server and fails if it does not offer STARTTLS: there is no
		// falling back to clear text, so a man in the middle stripping STARTTLS gets nothing.
		if c, err = smtp.NewClientStartTLS(conn, m.tls); err != nil {
			conn.Close()
			return err
		}
	} else {
		op = "ehlo"
		c = smtp.NewClient(conn)
	}
	defer c.Close()
	c.CommandTimeout = m.cfg.Timeout
	c.SubmissionTimeout = m.cfg.Timeout
	// After STARTTLS this EHLO is the first thing sent over TLS, so it is also where a certificate the
	// server cannot prove shows up.
	if err = c.Hello(m.helo); err != nil {
		return err
	}
	if m.cfg.Username != "" {
		op = "auth"
		if _, ok := c.TLSConnectionState(); !ok {
			return errors.New("refusing AUTH PLAIN without TLS")
		}
		if !c.SupportsAuth(sasl.Plain) {
			return errors.New("server does not offer AUTH PLAIN")
		}
		if err = c.Auth(sasl.NewPlainClient("", m.cfg.Username, m.password)); err != nil {
			return err
		}
	}
	op = "mail from"
	if err = c.Mail(m.from.Address, nil); err != nil {
		return err
	}
	op = "rcpt to"
	if err = c.Rcpt(rcpt, nil); err != nil {
		return err
	}
	op = "data"
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err = w.Write(data); err != nil {
		return err
	}
	if err = w.Close(); err != nil {
		return err
	}
	// The message is accepted once DATA's reply is in; a failed QUIT changes nothing.
	_ = c.Quit()
	return nil
}

// classify turns a session error into an *Error. Only a 5xx reply to the transaction itself (MAIL, RCPT,
// DATA) is permanent; refusals during greeting, STARTTLS and AUTH are about the hub's set-up, not the
// message, and stay temporary (see the package comment). The recipient's address is cut out of the
// server's text so the error can be logged.
func (m *mailer) classify(ctx context.Context, op, rcpt string, err error) error {
	e := &Error{Channel: ChannelMail, Op: op, Err: err}
	var se *smtp.SMTPError
	switch {
	case errors.As(err, &se):
		e.Code = se.Code
		e.Permanent = se.Code >= 500 && (op == "mail from" || op == "rcpt to" || op == "data")
		red := *se
		red.Message = strings.ReplaceAll(se.Message, rcpt, "<recipient>")
		e.Err = &red
	case ctx.Err() != nil:
		// The connection was closed under a command because the time ran out.
		e.Err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return e
}
