package notify

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

type gatewayRequest struct {
	auth, key, contentType string
	body                   struct{ To, Text, ID string }
}

// gateway is an SMS webhook that answers with status and records what it was sent.
func gateway(t *testing.T, status int, delay time.Duration) (*httptest.Server, func() []gatewayRequest) {
	t.Helper()
	var mu sync.Mutex
	var got []gatewayRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var g gatewayRequest
		g.auth, g.key, g.contentType = r.Header.Get("Authorization"), r.Header.Get("Idempotency-Key"), r.Header.Get("Content-Type")
		if err := json.NewDecoder(r.Body).Decode(&g.body); err != nil {
			t.Errorf("gateway: %v", err)
		}
		mu.Lock()
		got = append(got, g)
		mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		if status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "30")
		}
		w.WriteHeader(status)
		w.Write([]byte(`{"error":"whatever the gateway says"}`))
	}))
	t.Cleanup(srv.Close)
	return srv, func() []gatewayRequest {
		mu.Lock()
		defer mu.Unlock()
		return append([]gatewayRequest(nil), got...)
	}
}

func smsConfig(t *testing.T, url string) SMSConfig {
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return SMSConfig{URL: url, TokenFile: tok, Timeout: 2 * time.Second}
}

func TestSendSMS(t *testing.T) {
	tmpl, err := LoadTemplates("")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := tmpl.Render(KindOTP, LangZhTW, OTP{Code: "048213", Minutes: 5})
	if err != nil {
		t.Fatal(err)
	}
	msg.ID = "otp-7f3a"
	tests := []struct {
		name       string
		status     int
		delay      time.Duration
		permanent  bool
		ok         bool
		retryAfter time.Duration
	}{
		{name: "200 accepted", status: 200, ok: true},
		{name: "202 accepted", status: 202, ok: true},
		{name: "400 permanent", status: 400, permanent: true},
		{name: "422 permanent", status: 422, permanent: true},
		{name: "401 our token: temporary", status: 401},
		{name: "429 temporary", status: 429},
		{name: "503 temporary", status: 503, retryAfter: 30 * time.Second},
		{name: "timeout temporary", status: 200, delay: 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, requests := gateway(t, tt.status, tt.delay)
			cfg := smsConfig(t, srv.URL)
			cfg.Timeout = 300 * time.Millisecond
			s := newSender(t, Config{SMS: cfg})
			err := s.SendSMS(t.Context(), "0912-345-678", msg)
			if tt.ok != (err == nil) || IsPermanent(err) != tt.permanent {
				t.Fatalf("SendSMS = %v, want ok %v permanent %v", err, tt.ok, tt.permanent)
			}
			var e *Error
			if err != nil && (!errors.As(err, &e) || e.Channel != ChannelSMS || e.RetryAfter != tt.retryAfter) {
				t.Fatalf("SendSMS = %#v", err)
			}
			if err != nil && tt.delay == 0 && e.Code != tt.status {
				t.Fatalf("code %d, want %d", e.Code, tt.status)
			}
			reqs := requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests", len(reqs))
			}
			r := reqs[0]
			want := gatewayRequest{auth: "Bearer s3cret-token", key: "otp-7f3a", contentType: "application/json"}
			want.body.To, want.body.Text, want.body.ID = "+886912345678", msg.SMS, "otp-7f3a"
			if r != want {
				t.Fatalf("gateway got %+v\nwant %+v", r, want)
			}
		})
	}
}

func TestSendSMSIdempotencyKey(t *testing.T) {
	srv, requests := gateway(t, 200, 0)
	s := newSender(t, Config{SMS: smsConfig(t, srv.URL)})
	for range 2 {
		if err := s.SendSMS(t.Context(), "+886912345678", Message{Body: "b"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SendSMS(t.Context(), "+886912345678", Message{ID: "same", Body: "b"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SendSMS(t.Context(), "+886912345678", Message{ID: "same", Body: "b"}); err != nil {
		t.Fatal(err)
	}
	r := requests()
	if r[0].key == "" || r[0].key == r[1].key || r[0].key != r[0].body.ID {
		t.Fatalf("random keys %q %q (body id %q)", r[0].key, r[1].key, r[0].body.ID)
	}
	if r[2].key != "same" || r[3].key != "same" {
		t.Fatalf("keys %q %q, want the message ID", r[2].key, r[3].key)
	}
	if r[0].body.Text != "b" {
		t.Fatalf("text %q, want the body when there is no SMS text", r[0].body.Text)
	}
}

func TestSendSMSRefused(t *testing.T) {
	srv, requests := gateway(t, 200, 0)
	s := newSender(t, Config{SMS: smsConfig(t, srv.URL)})
	for _, c := range []struct {
		to   string
		msg  Message
		want error
	}{
		{"12345", Message{Body: "b"}, ErrInvalidAddress},
		{"+886 912 345 678\n", Message{Body: "b"}, nil},
		{"0912345678\r\nX: y", Message{Body: "b"}, ErrInvalidAddress},
		{"+886912345678", Message{Body: "  "}, ErrInvalidMessage},
		{"+886912345678", Message{ID: "a b", Body: "b"}, ErrInvalidMessage},
	} {
		err := s.SendSMS(t.Context(), c.to, c.msg)
		if c.want == nil {
			if err != nil {
				t.Errorf("SendSMS(%q) = %v", c.to, err)
			}
			continue
		}
		if !errors.Is(err, c.want) || !IsPermanent(err) {
			t.Errorf("SendSMS(%q, %+v) = %v, want permanent %v", c.to, c.msg, err, c.want)
		}
	}
	if n := len(requests()); n != 1 {
		t.Fatalf("%d requests reached the gateway, want 1", n)
	}
	off := newSender(t, Config{})
	if err := off.SendSMS(t.Context(), "+886912345678", Message{Body: "b"}); !errors.Is(err, ErrNotConfigured) {
		t.Fatalf("SendSMS without SMS configured = %v", err)
	}
}

func TestSMSConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg SMSConfig
		ok  bool
	}{
		{SMSConfig{URL: "https://sms.example.com/send", TokenFile: "/t"}, true},
		{SMSConfig{URL: "http://127.0.0.1:8080/send", TokenFile: "/t"}, true},
		{SMSConfig{URL: "http://sms.example.com/send", TokenFile: "/t"}, false},
		{SMSConfig{URL: "https://user:pw@sms.example.com/send", TokenFile: "/t"}, false},
		{SMSConfig{URL: "ftp://sms.example.com/", TokenFile: "/t"}, false},
		{SMSConfig{URL: "https://sms.example.com/send"}, false},
	} {
		if err := c.cfg.Validate(); (err == nil) != c.ok {
			t.Errorf("Validate(%+v) = %v", c.cfg, err)
		}
	}
}

func TestParsePhone(t *testing.T) {
	for in, want := range map[string]string{
		"0912345678":         "+886912345678",
		"0912-345-678":       "+886912345678",
		" 0912 345 678 ":     "+886912345678",
		"+886912345678":      "+886912345678",
		"+1 415 555 2671":    "+14155552671",
		"0212345678":         "",
		"091234567":          "",
		"+0912345678":        "",
		"+88691234567890123": "",
		"+886-9l2345678":     "",
		"":                   "",
		"+":                  "",
	} {
		got, err := ParsePhone(in)
		if want == "" {
			if !errors.Is(err, ErrInvalidAddress) {
				t.Errorf("ParsePhone(%q) = %q, %v; want ErrInvalidAddress", in, got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("ParsePhone(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
