package notify

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

const (
	testUser     = "hub@mydata.example"
	testPassword = "correct horse battery staple"
)

// smtpServer is a real SMTP server from go-smtp, on a loopback port, that records what it receives.
type smtpServer struct {
	host, port string
	caFile     string // the CA of its certificate, when it offers STARTTLS

	mu       sync.Mutex
	received []received
	authTry  int
	rcptErr  error
	dataErr  error
	noAuth   bool
}

type received struct {
	from, to string
	data     []byte
	tls      bool
	user     string
}

type serverOpts struct {
	noTLS   bool
	noAuth  bool // MAIL without a login is fine
	rcptErr error
	dataErr error
}

func startSMTP(t *testing.T, o serverOpts) *smtpServer {
	t.Helper()
	ts := &smtpServer{rcptErr: o.rcptErr, dataErr: o.dataErr, noAuth: o.noAuth}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{srv: ts, conn: c}, nil
	}))
	srv.Domain = "localhost"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	if !o.noTLS {
		cert, caFile := testCert(t)
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		ts.caFile = caFile
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	ts.host, ts.port, _ = net.SplitHostPort(ln.Addr().String())
	return ts
}

func (ts *smtpServer) messages() []received {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]received(nil), ts.received...)
}

func (ts *smtpServer) config(t *testing.T) MailConfig {
	port, _ := strconv.Atoi(ts.port)
	pw := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pw, []byte(testPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return MailConfig{
		Host:         ts.host,
		Port:         port,
		From:         "MyData 平臺 <noreply@mydata.example>",
		Username:     testUser,
		PasswordFile: pw,
		CAFile:       ts.caFile,
		Timeout:      5 * time.Second,
	}
}

type session struct {
	srv      *smtpServer
	conn     *smtp.Conn
	user     string
	from, to string
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *session) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		s.srv.mu.Lock()
		s.srv.authTry++
		s.srv.mu.Unlock()
		if user != testUser || pass != testPassword {
			return smtp.ErrAuthFailed
		}
		s.user = user
		return nil
	}), nil
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if s.user == "" && !s.srv.noAuth {
		return smtp.ErrAuthRequired
	}
	s.from = from
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.srv.rcptErr != nil {
		return s.srv.rcptErr
	}
	s.to = to
	return nil
}

func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if s.srv.dataErr != nil {
		return s.srv.dataErr
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	s.srv.received = append(s.srv.received, received{from: s.from, to: s.to, data: b, tls: isTLS, user: s.user})
	return nil
}

func (s *session) Reset()        {}
func (s *session) Logout() error { return nil }

// testCert makes a self-signed certificate for 127.0.0.1 and localhost, and writes it as a CA file.
func testCert(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test smtp"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, caFile
}

func newSender(t *testing.T, cfg Config) *Sender {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// decodeBody undoes the message's Content-Transfer-Encoding.
func decodeBody(t *testing.T, m *mail.Message) string {
	t.Helper()
	var r io.Reader
	switch cte := m.Header.Get("Content-Transfer-Encoding"); cte {
	case "quoted-printable":
		r = quotedprintable.NewReader(m.Body)
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, m.Body)
	default:
		t.Fatalf("Content-Transfer-Encoding %q", cte)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(string(b), "\r\n", "\n")
}

func TestSendMail(t *testing.T) {
	ts := startSMTP(t, serverOpts{})
	reg := prometheus.NewRegistry()
	now := time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)
	s := newSender(t, Config{Mail: ts.config(t), Registerer: reg, Now: func() time.Time { return now }})
	tmpl, err := LoadTemplates("")
	if err != nil {
		t.Fatal(err)
	}
	for _, lang := range []string{LangZhTW, LangEn} {
		t.Run(lang, func(t *testing.T) {
			before := len(ts.messages())
			msg, err := tmpl.Render(KindUse, lang, Use{
				Mode:       UseService,
				Datasets:   []string{"戶籍資料（內政部）", "財產資料（財政部財政資訊中心）"},
				Recipient:  "範例銀行 房屋貸款線上申請",
				At:         now,
				HistoryURL: "https://mydata.example/history",
			})
			if err != nil {
				t.Fatal(err)
			}
			msg.ID = "use-" + lang
			if err := s.SendMail(t.Context(), "陳小明 <ming@example.tw>", msg); err != nil {
				t.Fatalf("SendMail: %v", err)
			}
			got := ts.messages()
			if len(got) != before+1 {
				t.Fatalf("%d messages received, want 1", len(got)-before)
			}
			r := got[len(got)-1]
			if !r.tls || r.user != testUser || r.from != "noreply@mydata.example" || r.to != "ming@example.tw" {
				t.Fatalf("received tls=%v user=%q from=%q to=%q", r.tls, r.user, r.from, r.to)
			}
			m, err := mail.ReadMessage(strings.NewReader(string(r.data)))
			if err != nil {
				t.Fatal(err)
			}
			dec := new(mime.WordDecoder)
			subject, err := dec.DecodeHeader(m.Header.Get("Subject"))
			if err != nil {
				t.Fatal(err)
			}
			if subject != msg.Subject {
				t.Errorf("subject %q, want %q", subject, msg.Subject)
			}
			if body := decodeBody(t, m); body != msg.Body {
				t.Errorf("body\n%s\nwant\n%s", body, msg.Body)
			}
			if ct := m.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			if id := m.Header.Get("Message-ID"); id != "<use-"+lang+"@mydata.example>" {
				t.Errorf("Message-ID %q", id)
			}
			if d, err := m.Header.Date(); err != nil || !d.Equal(now) {
				t.Errorf("Date %v, %v", d, err)
			}
			from, err := m.Header.AddressList("From")
			if err != nil || len(from) != 1 || from[0].Name != "MyData 平臺" || from[0].Address != "noreply@mydata.example" {
				t.Errorf("From %v, %v", from, err)
			}
			to, err := m.Header.AddressList("To")
			if err != nil || len(to) != 1 || to[0].Name != "陳小明" || to[0].Address != "ming@example.tw" {
				t.Errorf("To %v, %v", to, err)
			}
			for _, line := range strings.Split(string(r.data), "\r\n") {
				if len(line) > 78 {
					t.Errorf("line longer than 78: %q", line)
				}
			}
		})
	}
	if n := counterValue(t, s, ChannelMail, "ok"); n != 2 {
		t.Errorf("ok sends metric = %v, want 2", n)
	}
}

func TestSendMailRefused(t *testing.T) {
	msg := Message{Subject: "s", Body: "b"}
	tests := []struct {
		name      string
		opts      serverOpts
		cfg       func(*MailConfig)
		op        string
		code      int
		permanent bool
		authTries int
	}{
		{
			name: "STARTTLS required, server lacks it",
			opts: serverOpts{noTLS: true},
			op:   "starttls",
		},
		{
			name: "certificate not trusted",
			cfg:  func(c *MailConfig) { c.CAFile = "" },
			op:   "starttls",
		},
		{
			name: "certificate for another name",
			cfg:  func(c *MailConfig) { c.ServerName = "smtp.example.com" },
			op:   "starttls",
		},
		{
			name:      "wrong password",
			cfg:       func(c *MailConfig) { os.WriteFile(c.PasswordFile, []byte("nope"), 0o600) },
			op:        "auth",
			code:      535,
			authTries: 1,
		},
		{
			name:      "550 recipient",
			opts:      serverOpts{rcptErr: &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}},
			op:        "rcpt to",
			code:      550,
			permanent: true,
			authTries: 1,
		},
		{
			name:      "451 recipient",
			opts:      serverOpts{rcptErr: &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}},
			op:        "rcpt to",
			code:      451,
			authTries: 1,
		},
		{
			name:      "552 data",
			opts:      serverOpts{dataErr: &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "too big"}},
			op:        "data",
			code:      552,
			permanent: true,
			authTries: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startSMTP(t, tt.opts)
			cfg := ts.config(t)
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			s := newSender(t, Config{Mail: cfg})
			err := s.SendMail(t.Context(), "ming@example.tw", msg)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("SendMail = %v, want an *Error", err)
			}
			if e.Op != tt.op || e.Code != tt.code || IsPermanent(err) != tt.permanent || e.Channel != ChannelMail {
				t.Fatalf("SendMail = %v (op %q code %d permanent %v), want op %q code %d permanent %v",
					err, e.Op, e.Code, IsPermanent(err), tt.op, tt.code, tt.permanent)
			}
			if n := len(ts.messages()); n != 0 {
				t.Fatalf("%d messages delivered", n)
			}
			ts.mu.Lock()
			defer ts.mu.Unlock()
			if ts.authTry != tt.authTries {
				// Above all: no password is sent before TLS is up and verified.
				t.Fatalf("%d AUTH attempts, want %d", ts.authTry, tt.authTries)
			}
		})
	}
}

func TestSendMailServerDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s := newSender(t, Config{Mail: MailConfig{Host: "127.0.0.1", Port: port, From: "noreply@mydata.example"}})
	err = s.SendMail(t.Context(), "ming@example.tw", Message{Subject: "s", Body: "b"})
	var e *Error
	if !errors.As(err, &e) || e.Op != "dial" || IsPermanent(err) {
		t.Fatalf("SendMail = %v, want a temporary dial error", err)
	}
}

// A server that accepts the connection and never greets: the timeout ends the send, as a temporary error.
func TestSendMailTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	s := newSender(t, Config{Mail: MailConfig{Host: "127.0.0.1", Port: port, From: "noreply@mydata.example", Timeout: 200 * time.Millisecond}})
	start := time.Now()
	err = s.SendMail(t.Context(), "ming@example.tw", Message{Subject: "s", Body: "b"})
	if IsPermanent(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("SendMail = %v, want a temporary deadline error", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("SendMail took %v", d)
	}
}

// start_tls: none to a loopback relay that offers no TLS and wants no login.
func TestSendMailLoopbackClear(t *testing.T) {
	ts := startSMTP(t, serverOpts{noTLS: true, noAuth: true})
	port, _ := strconv.Atoi(ts.port)
	s := newSender(t, Config{Mail: MailConfig{Host: ts.host, Port: port, From: "noreply@mydata.example", StartTLS: StartTLSNone}})
	if err := s.SendMail(t.Context(), "ming@example.tw", Message{Subject: "驗證碼", Body: "123456"}); err != nil {
		t.Fatalf("SendMail = %v", err)
	}
	if got := ts.messages(); len(got) != 1 || got[0].tls || got[0].user != "" {
		t.Fatalf("received %+v", got)
	}
}

func TestSendMailInvalid(t *testing.T) {
	ts := startSMTP(t, serverOpts{})
	s := newSender(t, Config{Mail: ts.config(t)})
	ok := Message{Subject: "s", Body: "b"}
	tests := []struct {
		name string
		to   string
		msg  Message
		want error
	}{
		{"CRLF in subject", "ming@example.tw", Message{Subject: "hi\r\nBcc: evil@example.com", Body: "b"}, ErrInvalidMessage},
		{"LF in subject", "ming@example.tw", Message{Subject: "hi\nX: y", Body: "b"}, ErrInvalidMessage},
		{"CRLF in recipient", "ming@example.tw\r\nBcc: evil@example.com", ok, ErrInvalidAddress},
		{"CRLF in recipient name", "\"a\r\nBcc: evil@example.com\" <ming@example.tw>", ok, ErrInvalidAddress},
		{"bad ID", "ming@example.tw", Message{ID: "a>\r\nBcc: x", Subject: "s", Body: "b"}, ErrInvalidMessage},
		{"no subject", "ming@example.tw", Message{Body: "b"}, ErrInvalidMessage},
		{"not an address", "ming", ok, ErrInvalidAddress},
		{"no domain dot", "ming@localhost", ok, ErrInvalidAddress},
		{"two addresses", "a@example.tw, b@example.tw", ok, ErrInvalidAddress},
		{"non-ASCII address", "小明@example.tw", ok, ErrInvalidAddress},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.SendMail(t.Context(), tt.to, tt.msg)
			if !errors.Is(err, tt.want) || !IsPermanent(err) {
				t.Fatalf("SendMail = %v, want permanent %v", err, tt.want)
			}
		})
	}
	if n := len(ts.messages()); n != 0 {
		t.Fatalf("%d messages delivered", n)
	}
	off := newSender(t, Config{})
	if err := off.SendMail(t.Context(), "ming@example.tw", ok); !errors.Is(err, ErrNotConfigured) || !IsPermanent(err) {
		t.Fatalf("SendMail without mail configured = %v", err)
	}
}

func TestMailConfigValidate(t *testing.T) {
	good := MailConfig{Host: "smtp.example.com", From: "noreply@mydata.example", Username: "u", PasswordFile: "/p"}
	tests := []struct {
		name string
		mod  func(*MailConfig)
		want string // "" for valid
	}{
		{"good", func(*MailConfig) {}, ""},
		{"no host", func(c *MailConfig) { c.Host = "" }, "host:"},
		{"bad port", func(c *MailConfig) { c.Port = 70000 }, "port:"},
		{"no from", func(c *MailConfig) { c.From = "" }, "from:"},
		{"from with CRLF", func(c *MailConfig) { c.From = "a@b.example\r\nBcc: x@y" }, "from:"},
		{"bad start_tls", func(c *MailConfig) { c.StartTLS = "optional" }, "start_tls:"},
		{"none off loopback", func(c *MailConfig) { c.StartTLS = StartTLSNone; c.Username, c.PasswordFile = "", "" }, "start_tls:"},
		{"none on loopback", func(c *MailConfig) {
			c.StartTLS, c.Host, c.Username, c.PasswordFile = StartTLSNone, "127.0.0.1", "", ""
		}, ""},
		{"none on localhost", func(c *MailConfig) {
			c.StartTLS, c.Host, c.Username, c.PasswordFile = StartTLSNone, "localhost", "", ""
		}, ""},
		{"none with a password", func(c *MailConfig) { c.StartTLS, c.Host = StartTLSNone, "::1" }, "start_tls:"},
		{"username without password", func(c *MailConfig) { c.PasswordFile = "" }, "password_file"},
		{"negative timeout", func(c *MailConfig) { c.Timeout = -1 }, "timeout:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.mod(&c)
			err := c.Validate()
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.want)) {
				t.Fatalf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := New(Config{Mail: MailConfig{Host: "smtp.example.com", From: "a@b.example", CAFile: "/nonexistent"}}); err == nil || !strings.Contains(err.Error(), "mail.ca_file") {
		t.Fatalf("New with a missing CA file = %v", err)
	}
}

// Long Chinese subjects are folded into encoded words that net/mail reads back.
func TestBuildLongSubject(t *testing.T) {
	m := &mailer{from: &mail.Address{Address: "noreply@mydata.example"}, domain: "mydata.example"}
	subject := strings.Repeat("個人化資料使用通知", 8)
	b, err := m.build(&mail.Address{Address: "a@b.example"}, Message{Subject: subject, Body: "English body\n"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	msg, err := mail.ReadMessage(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil || got != subject {
		t.Fatalf("subject %q, %v", got, err)
	}
	if cte := msg.Header.Get("Content-Transfer-Encoding"); cte != "quoted-printable" {
		t.Fatalf("English body sent as %q", cte)
	}
	for _, line := range strings.Split(string(b), "\r\n") {
		if len(line) > 78 {
			t.Fatalf("line longer than 78: %q", line)
		}
	}
}

func counterValue(t *testing.T, s *Sender, channel, result string) float64 {
	t.Helper()
	var m dto.Metric
	if err := s.metrics.sends.WithLabelValues(channel, result).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
