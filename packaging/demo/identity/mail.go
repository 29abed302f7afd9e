package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

const (
	maxMessageBytes = 1 << 20
	// maxKept bounds the messages the web page lists; the files stay.
	maxKept = 200
)

// codePattern finds a one-time code: six digits standing alone.
var codePattern = regexp.MustCompile(`(?:^|\D)(\d{6})(?:\D|$)`)

func runMail(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("mail", stderr)
	listen := fs.String("listen", "127.0.0.1:2525", "loopback address of the SMTP server (plain SMTP, no TLS: notify.mail.start_tls none)")
	dir := fs.String("dir", "", "directory to write each message into, as <time>-<n>.eml")
	httpAddr := fs.String("http", "", "loopback address of a web page listing the messages, newest first; empty: none")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("--dir: required")
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	log := newLogger(stderr, "mail")
	sk := &sink{dir: *dir, out: stdout, log: log, now: time.Now}
	srv := sk.server()
	ln, err := listenLoopback("listen", *listen)
	if err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()

	smtpErr := make(chan error, 1)
	go func() { smtpErr <- srv.Serve(ln) }()
	log.Info("serving SMTP", "addr", ln.Addr().String(), "dir", *dir)
	httpErr := make(chan error, 1)
	if *httpAddr != "" {
		hln, err := listenLoopback("http", *httpAddr)
		if err != nil {
			srv.Close()
			return err
		}
		log.Info("serving the list of messages", "url", "http://"+hln.Addr().String()+"/")
		go func() { httpErr <- serveHTTP(ctx, log, hln, sk) }()
	}
	select {
	case err := <-smtpErr:
		return fmt.Errorf("smtp: %w", err)
	case err := <-httpErr:
		srv.Close()
		return fmt.Errorf("http: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
		return err
	}
	if *httpAddr != "" {
		if err := <-httpErr; err != nil {
			return err
		}
	}
	log.Info("stopped")
	return nil
}

// sink accepts every message, writes it to dir, prints the code in it and keeps the latest for the page.
type sink struct {
	dir string
	out io.Writer
	log *slog.Logger
	now func() time.Time

	mu   sync.Mutex
	seq  int
	kept []*received // oldest first
}

// received is one message as the page shows it.
type received struct {
	At      time.Time
	From    string
	To      []string
	Subject string
	Body    string
	Code    string
	File    string
}

func (s *sink) server() *smtp.Server {
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{sink: s}, nil }))
	srv.Domain = "localhost"
	srv.MaxMessageBytes = maxMessageBytes
	srv.MaxRecipients = 20
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	srv.ErrorLog = slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	return srv
}

type session struct {
	sink *sink
	from string
	to   []string
}

func (ss *session) Reset()        { ss.from, ss.to = "", nil }
func (ss *session) Logout() error { return nil }
func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	ss.from = from
	return nil
}
func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.to = append(ss.to, to)
	return nil
}
func (ss *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	return ss.sink.deliver(ss.from, ss.to, data)
}

// deliver writes the message to a file, then prints one line per recipient: the code, if the message
// has one, else its subject.
func (s *sink) deliver(from string, to []string, data []byte) error {
	now := s.now()
	s.mu.Lock()
	s.seq++
	name := fmt.Sprintf("%s-%d.eml", now.Format("20060102-150405.000"), s.seq)
	s.mu.Unlock()
	path := filepath.Join(s.dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		s.log.Error("write a message", "err", err)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "cannot store the message"}
	}
	m := &received{At: now, From: from, To: to, File: path}
	subject, body, err := decodeMessage(data)
	if err != nil {
		// Kept anyway: the file is there to read.
		s.log.Warn("decode a message", "file", path, "err", err)
	}
	m.Subject, m.Body = subject, body
	if c := codePattern.FindStringSubmatch(body); c != nil {
		m.Code = c[1]
	}
	for _, rcpt := range to {
		if m.Code != "" {
			fmt.Fprintf(s.out, "code for %s: %s   (%q, %s)\n", rcpt, m.Code, subject, path)
		} else {
			fmt.Fprintf(s.out, "mail for %s: %q (%s)\n", rcpt, subject, path)
		}
	}
	s.mu.Lock()
	s.kept = append(s.kept, m)
	if len(s.kept) > maxKept {
		s.kept = slices.Delete(s.kept, 0, len(s.kept)-maxKept)
	}
	s.mu.Unlock()
	return nil
}

// decodeMessage returns the decoded subject and the text of an RFC 5322 message: a text/plain body, or
// the first text/plain part of a multipart one, with its transfer encoding undone.
func decodeMessage(data []byte) (subject, body string, err error) {
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return "", "", err
	}
	dec := new(mime.WordDecoder)
	subject = msg.Header.Get("Subject")
	if s, err := dec.DecodeHeader(subject); err == nil {
		subject = s
	}
	text, err := decodePart(msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"), msg.Body)
	return subject, text, err
}

func decodePart(contentType, encoding string, r io.Reader) (string, error) {
	mediaType, params := "text/plain", map[string]string{}
	if contentType != "" {
		var err error
		if mediaType, params, err = mime.ParseMediaType(contentType); err != nil {
			return "", fmt.Errorf("Content-Type: %w", err)
		}
	}
	if strings.HasPrefix(mediaType, "multipart/") {
		mr := multipart.NewReader(r, params["boundary"])
		for {
			p, err := mr.NextPart()
			if err != nil {
				return "", fmt.Errorf("no text/plain part: %w", err)
			}
			// NextPart undoes quoted-printable itself and drops the header.
			enc := p.Header.Get("Content-Transfer-Encoding")
			if t, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type")); t == "text/plain" || p.Header.Get("Content-Type") == "" {
				return decodePart("text/plain", enc, p)
			}
		}
	}
	if mediaType != "text/plain" {
		return "", fmt.Errorf("a %s body is not shown", mediaType)
	}
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "quoted-printable":
		r = quotedprintable.NewReader(r)
	case "base64":
		// The decoder skips the line breaks.
		r = base64.NewDecoder(base64.StdEncoding, r)
	case "", "7bit", "8bit", "binary":
	default:
		return "", fmt.Errorf("Content-Transfer-Encoding %q", encoding)
	}
	b, err := io.ReadAll(io.LimitReader(r, maxMessageBytes))
	if err != nil {
		return "", err
	}
	if cs := strings.ToLower(params["charset"]); cs != "" && cs != "utf-8" && cs != "us-ascii" {
		return string(b), fmt.Errorf("charset %q shown as it is", cs)
	}
	return strings.ReplaceAll(string(b), "\r\n", "\n"), nil
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Demo mail</title>
<style>body{font-family:sans-serif;margin:2em;max-width:60em}li{margin:1em 0}.code{font-size:1.6em;font-weight:bold;font-family:monospace}pre{white-space:pre-wrap;background:#f4f4f4;padding:.5em}</style></head>
<body><h1>Demo mail: what the hub sent</h1>
<p>Every message the hub's notify.mail sent to this machine's SMTP sink, newest first. Reload for new ones.</p>
{{if not .}}<p id="none">No mail yet.</p>{{end}}
<ol reversed>{{range .}}<li><div>{{.At.Format "15:04:05"}} to <b>{{range $i, $t := .To}}{{if $i}}, {{end}}{{$t}}{{end}}</b>: {{.Subject}}</div>
{{if .Code}}<div>code <span class="code">{{.Code}}</span></div>{{end}}
<details><summary>message</summary><pre>{{.Body}}</pre><p>{{.File}}</p></details></li>
{{end}}</ol></body></html>
`))

// ServeHTTP is the page: GET / lists the messages, GET /latest?to=ADDRESS is the newest code sent there
// as plain text (404 when none), for scripts.
func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	msgs := slices.Clone(s.kept)
	s.mu.Unlock()
	slices.Reverse(msgs)
	w.Header().Set("Cache-Control", "no-store")
	switch {
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		http.Error(w, "GET only", http.StatusMethodNotAllowed)
	case r.URL.Path == "/":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := pageTmpl.Execute(w, msgs); err != nil {
			s.log.Warn("render the page", "err", err)
		}
	case r.URL.Path == "/latest":
		to := strings.ToLower(r.URL.Query().Get("to"))
		for _, m := range msgs {
			if m.Code != "" && slices.ContainsFunc(m.To, func(t string) bool { return strings.ToLower(t) == to }) {
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				fmt.Fprintln(w, m.Code)
				return
			}
		}
		http.Error(w, "no code sent to "+to, http.StatusNotFound)
	default:
		http.NotFound(w, r)
	}
}
