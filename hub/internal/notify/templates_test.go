package notify

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaultTemplates(t *testing.T) {
	tmpl, err := LoadTemplates("")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 1, 1, 5, 0, 0, time.UTC) // 09:05 in Taipei
	tests := []struct {
		kind, lang string
		data       any
		subject    string   // in the subject
		body       []string // in the body
		sms        []string // in the SMS
	}{
		{KindOTP, LangZhTW, OTP{Code: "048213", Minutes: 5}, "驗證碼", []string{"048213", "5 分鐘"}, []string{"048213", "【MyData】"}},
		{KindOTP, LangEn, OTP{Code: "048213", Minutes: 5}, "login code", []string{"048213", "5 minutes"}, []string{"048213", "[MyData]"}},
		{KindUse, LangZhTW, Use{Mode: UseDownload, Datasets: []string{"戶籍資料", "財產資料"}, At: at, HistoryURL: "https://h.example/"},
			"下載", []string{"2026-03-01 09:05", "・戶籍資料\n・財產資料\n", "https://h.example/"}, []string{"戶籍資料、財產資料"}},
		{KindUse, LangZhTW, Use{Mode: UseCounter, Datasets: []string{"戶籍資料"}, Recipient: "範例銀行", At: at, HistoryURL: "https://h.example/"},
			"範例銀行", []string{"臨櫃核驗", "「範例銀行」"}, []string{"範例銀行"}},
		{KindUse, LangEn, Use{Mode: UseService, Datasets: []string{"Household registration", "Income"}, Recipient: "Sample Bank", At: at, HistoryURL: "https://h.example/"},
			"provided to Sample Bank", []string{"online service of Sample Bank", "- Household registration\n- Income\n"}, []string{"Household registration, Income"}},
		{KindReady, LangZhTW, Ready{Datasets: []string{"財產資料"}, Until: at, URL: "https://h.example/downloads"}, "可下載",
			[]string{"・財產資料", "2026-03-01 09:05", "https://h.example/downloads"}, []string{"2026-03-01 09:05"}},
		{KindReady, LangEn, Ready{Datasets: []string{"Income"}, Until: at, URL: "https://h.example/downloads"}, "ready",
			[]string{"- Income", "Log in to MyData before 2026-03-01 09:05"}, []string{"ready"}},
	}
	for _, tt := range tests {
		t.Run(tt.kind+"."+tt.lang, func(t *testing.T) {
			msg, err := tmpl.Render(tt.kind, tt.lang, tt.data)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(msg.Subject, tt.subject) {
				t.Errorf("subject %q lacks %q", msg.Subject, tt.subject)
			}
			for _, w := range tt.body {
				if !strings.Contains(msg.Body, w) {
					t.Errorf("body lacks %q:\n%s", w, msg.Body)
				}
			}
			for _, w := range tt.sms {
				if !strings.Contains(msg.SMS, w) {
					t.Errorf("SMS lacks %q: %s", w, msg.SMS)
				}
			}
			if strings.Contains(msg.Body, "<no value>") || strings.Contains(msg.SMS, "<no value>") || strings.Contains(msg.Body, "\n\n\n") {
				t.Errorf("badly rendered:\n%s\n%s", msg.Body, msg.SMS)
			}
			// At most two parts: 67 characters each in UCS-2 (Chinese), 153 in GSM-7 (English).
			if n, limit := len([]rune(msg.SMS)), map[string]int{LangZhTW: 134, LangEn: 306}[tt.lang]; n > limit {
				t.Errorf("SMS is %d characters, more than %d: %s", n, limit, msg.SMS)
			}
		})
	}
	if _, err := tmpl.Render("welcome", LangEn, nil); !errors.Is(err, ErrUnknownTemplate) {
		t.Fatalf("Render unknown kind = %v", err)
	}
	if _, err := tmpl.Render(KindOTP, "fr", OTP{}); !errors.Is(err, ErrUnknownTemplate) {
		t.Fatalf("Render unknown lang = %v", err)
	}
	// A name from an SP's registration with a line break in it cannot reach a header.
	_, err = tmpl.Render(KindUse, LangEn, Use{Mode: UseService, Recipient: "Bank\r\nBcc: evil@example.com", Datasets: []string{"x"}})
	if err == nil {
		t.Fatal("Render let a line break into the subject")
	}
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestOverrideTemplates(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"otp.en.txt":          "Subject: Code {{.Code}}\r\n\r\nYour code: {{.Code}}\r\n",
		"use.zh-TW.sms.txt":   "資料已使用：{{join .Datasets \"、\"}}",
		".README":             "ignored",
		"ready.zh-TW.txt":     "\uFEFFSubject: 可下載\n\n{{range .Datasets}}{{.}}{{end}}",
		"ready.zh-TW.sms.txt": "請登入下載",
	})
	tmpl, err := LoadTemplates(dir)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := tmpl.Render(KindOTP, LangEn, OTP{Code: "111222", Minutes: 5})
	if err != nil {
		t.Fatal(err)
	}
	// The overridden mail template has no SMS file beside it: the SMS is its body.
	if msg.Subject != "Code 111222" || msg.Body != "Your code: 111222\n" || msg.SMS != "Your code: 111222" {
		t.Fatalf("override rendered %+v", msg)
	}
	msg, _ = tmpl.Render(KindOTP, LangZhTW, OTP{Code: "111222", Minutes: 5})
	if !strings.Contains(msg.Subject, "驗證碼") || !strings.HasPrefix(msg.SMS, "【MyData】") {
		t.Fatalf("zh-TW default lost: %+v", msg)
	}
	msg, _ = tmpl.Render(KindUse, LangZhTW, Use{Mode: UseDownload, Datasets: []string{"甲", "乙"}})
	if msg.SMS != "資料已使用：甲、乙" || !strings.Contains(msg.Body, "・甲") {
		t.Fatalf("SMS-only override: %+v", msg)
	}
	msg, _ = tmpl.Render(KindReady, LangZhTW, Ready{Datasets: []string{"甲"}})
	if msg.Subject != "可下載" || msg.SMS != "請登入下載" {
		t.Fatalf("BOM file: %+v", msg)
	}
}

func TestOverrideTemplatesRefused(t *testing.T) {
	tests := []struct {
		name string
		file string
		text string
		want string // after the file's path
	}{
		{"parse error", "otp.en.txt", "Subject: x\n\nline 3\nline 4 {{.Code}\n", ":4:"},
		{"unclosed action", "otp.en.txt", "Subject: x\n\nline 3 {{.Code\n", ":3"},
		{"parse error in subject", "otp.en.txt", "Subject: {{if}}\n\nbody\n", ":1:"},
		{"unknown field", "use.zh-TW.txt", "Subject: x\n\n{{.Recipient}}\n\n{{.Reciepient}}\n", ":5:"},
		{"unknown function", "ready.en.txt", "Subject: x\n\n{{upper .URL}}\n", ":3:"},
		{"field of another kind", "otp.zh-TW.sms.txt", "code\n{{.Datasets}}", ":2:"},
		{"no subject line", "otp.en.txt", "Your code is {{.Code}}\n", ":1:"},
		{"no blank line", "otp.en.txt", "Subject: x\nbody\n", ":2:"},
		{"subject renders empty", "otp.en.txt", "Subject: {{if false}}x{{end}}\n\nbody\n", ":1:"},
		{"not UTF-8", "otp.en.txt", "Subject: x\n\nok\n\xff\n", ":4:"},
		{"unknown language", "otp.fr.txt", "Subject: x\n\nbody\n", ""},
		{"unknown kind", "welcome.en.txt", "Subject: x\n\nbody\n", ""},
		{"lower-case region", "otp.zh-tw.txt", "Subject: x\n\nbody\n", ""},
		{"not .txt", "otp.en.tmpl", "Subject: x\n\nbody\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{tt.file: tt.text})
			_, err := LoadTemplates(dir)
			want := filepath.Join(dir, tt.file) + tt.want
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("LoadTemplates = %v, want an error naming %q", err, want)
			}
		})
	}
	if _, err := LoadTemplates(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("LoadTemplates of a missing directory succeeded")
	}
}
