package passkey_test

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"

	"github.com/mydatafed/mydata/hub/internal/identity/passkey"
)

func TestScript(t *testing.T) {
	rec := httptest.NewRecorder()
	passkey.ScriptHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/static/passkey.js", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "text/javascript; charset=utf-8" ||
		rec.Header().Get("X-Content-Type-Options") != "nosniff" || rec.Body.Len() != len(passkey.Script) {
		t.Fatalf("GET: %d %v", rec.Code, rec.Header())
	}
	again := httptest.NewRequest(http.MethodGet, "/static/passkey.js", nil)
	again.Header.Set("If-None-Match", rec.Header().Get("ETag"))
	rec = httptest.NewRecorder()
	passkey.ScriptHandler().ServeHTTP(rec, again)
	if rec.Code != http.StatusNotModified {
		t.Errorf("conditional GET: %d", rec.Code)
	}

	// Comments may say anything; the code may not.
	code := regexp.MustCompile(`(?m)^\s*//.*$`).ReplaceAll(passkey.Script, nil)
	for what, re := range map[string]string{
		"non-ASCII text (messages belong in data- attributes)": `[^\x00-\x7f]`,
		"an external URL":                      `https?://`,
		"HTML injection":                       `innerHTML|outerHTML|document\.write|insertAdjacentHTML`,
		"eval":                                 `\beval\(|new Function`,
		"a string literal that reads as prose": `"[A-Za-z]+ [A-Za-z]+ [A-Za-z]+`,
	} {
		if loc := regexp.MustCompile(re).FindIndex(code); loc != nil {
			t.Errorf("script contains %s: %q", what, code[loc[0]:min(loc[1]+20, len(code))])
		}
	}
}
