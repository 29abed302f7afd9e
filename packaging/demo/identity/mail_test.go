package main

import (
	"bytes"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// lockedBuffer is the sink's output, written by the server's goroutines and read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startSink(t *testing.T) (*sink, string, *lockedBuffer) {
	t.Helper()
	out := &lockedBuffer{}
	sk := &sink{dir: t.TempDir(), out: out, log: slog.New(slog.NewTextHandler(io.Discard, nil)), now: time.Now}
	srv := sk.server()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sk, ln.Addr().String(), out
}

// Messages as the hub's notify package builds them: UTF-8 text, the subject in encoded words, the body
// quoted-printable when mostly ASCII and base64 when mostly Chinese.
const qpMessage = "From: MyData <no-reply@mydata.example>\r\n" +
	"To: a123456789@example.com\r\n" +
	"Subject: Your MyData login code\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"Hello,\r\n\r\nYour one-time code for the MyData personal data platform is:\r\n\r\n    482913\r\n\r\n" +
	"It is valid for 5 minutes and can be used only once. Do not share it with anyone: MyData staff will n=\r\n" +
	"ever ask you for it.\r\n"

func base64Message(to, subject, body string) string {
	enc := base64.StdEncoding.EncodeToString([]byte(body))
	var wrapped strings.Builder
	for len(enc) > 76 {
		wrapped.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	wrapped.WriteString(enc + "\r\n")
	return "From: MyData <no-reply@mydata.example>\r\n" +
		"To: " + to + "\r\n" +
		"Subject: =?utf-8?b?" + base64.StdEncoding.EncodeToString([]byte(subject)) + "?=\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"\r\n" + wrapped.String()
}

func TestMailSink(t *testing.T) {
	sk, addr, out := startSink(t)
	zh := base64Message("b220713459@example.com", "MyData 登入驗證碼",
		"您好：\n\n您在 MyData 個人化資料自主運用平臺的驗證碼為：\n\n    071234\n\n此驗證碼 5 分鐘內有效，僅能使用一次。\n")
	notice := base64Message("b220713459@example.com", "MyData 資料使用通知", "示範銀行於今日取得您的戶籍資料。\n")
	for _, m := range []struct{ to, data string }{
		{"a123456789@example.com", qpMessage},
		{"b220713459@example.com", zh},
		{"b220713459@example.com", notice},
	} {
		// go-smtp's client, as the hub's notify package uses: no STARTTLS offered, none asked for.
		c, err := smtp.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.SendMail("no-reply@mydata.example", []string{m.to}, strings.NewReader(m.data)); err != nil {
			t.Fatalf("send to %s: %v", m.to, err)
		}
		c.Close()
	}

	got := out.String()
	for _, want := range []string{
		"code for a123456789@example.com: 482913",
		"code for b220713459@example.com: 071234",
		`mail for b220713459@example.com: "MyData 資料使用通知"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}

	files, err := filepath.Glob(filepath.Join(sk.dir, "*.eml"))
	if err != nil || len(files) != 3 {
		t.Fatalf("files %v (%v), want 3", files, err)
	}
	found := false
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		found = found || bytes.Contains(data, []byte("Subject: Your MyData login code"))
	}
	if !found {
		t.Error("no file holds the first message as it was sent")
	}

	// The page lists them newest first, decoded; /latest gives a script the code.
	page := httptest.NewRecorder()
	sk.ServeHTTP(page, httptest.NewRequest("GET", "/", nil))
	body := page.Body.String()
	if page.Code != http.StatusOK || !strings.Contains(body, "482913") || !strings.Contains(body, "MyData 登入驗證碼") {
		t.Fatalf("page: %d\n%s", page.Code, body)
	}
	if i, j := strings.Index(body, "資料使用通知"), strings.Index(body, "Your MyData login code"); i < 0 || j < 0 || i > j {
		t.Errorf("page not newest first (notice at %d, first message at %d)", i, j)
	}
	for _, c := range []struct {
		to, want string
		code     int
	}{
		{"b220713459@example.com", "071234\n", 200},
		{"A123456789@example.com", "482913\n", 200},
		{"nobody@example.com", "", 404},
	} {
		rec := httptest.NewRecorder()
		sk.ServeHTTP(rec, httptest.NewRequest("GET", "/latest?to="+c.to, nil))
		if rec.Code != c.code || (c.want != "" && rec.Body.String() != c.want) {
			t.Errorf("/latest?to=%s: %d %q, want %d %q", c.to, rec.Code, rec.Body.String(), c.code, c.want)
		}
	}
}

func TestDecodeMessage(t *testing.T) {
	multipartMsg := "Subject: =?utf-8?q?caf=C3=A9?=\r\n" +
		"Content-Type: multipart/alternative; boundary=XX\r\n\r\n" +
		"--XX\r\nContent-Type: text/html\r\n\r\n<p>000000</p>\r\n" +
		"--XX\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncode =\r\n123456\r\n" +
		"--XX--\r\n"
	for _, c := range []struct {
		name, msg, subject, body string
	}{
		{"quoted-printable", qpMessage, "Your MyData login code", "will never ask"},
		{"multipart", multipartMsg, "café", "code 123456"},
		{"plain", "Subject: hi\r\n\r\nline one\r\n", "hi", "line one\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			subject, body, err := decodeMessage([]byte(c.msg))
			if err != nil {
				t.Fatal(err)
			}
			if subject != c.subject || !strings.Contains(body, c.body) {
				t.Errorf("got %q, %q; want %q and a body with %q", subject, body, c.subject, c.body)
			}
		})
	}
}
