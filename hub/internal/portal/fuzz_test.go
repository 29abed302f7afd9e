package portal

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzSafeNext: whatever a browser sends as next=, the portal redirects only to one of its own pages.
func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"/history", "/\\evil.example/x", "//evil.example", "/%2F%2Fevil", "/oauth/authorize?client_id=a&scope=b",
		"https://evil.example", "/\t/x", "/login?next=//evil", "\x00", "/%5c%5cevil"} {
		f.Add(s)
	}
	w := newWorld(f, "http://portal.test")
	f.Fuzz(func(t *testing.T, next string) {
		got := w.portal.safeNext(next)
		u, err := url.Parse(got)
		if err != nil || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") || strings.ContainsAny(got, "\\\x00\r\n\t") {
			t.Fatalf("safeNext(%q) = %q, which may leave the portal", next, got)
		}
	})
}

// FuzzRequestURI: a request_uri from the browser is either one the hub signed, or refused; never a panic.
func FuzzRequestURI(f *testing.F) {
	w := newWorld(f, "http://portal.test")
	for _, s := range []string{"urn:ietf:params:oauth:request_uri:e30.k.AAAA", "urn:ietf:params:oauth:request_uri:", "x", "urn:ietf:params:oauth:request_uri:..."} {
		f.Add("bank.loan", s)
	}
	f.Fuzz(func(t *testing.T, client, ref string) {
		q := url.Values{"client_id": {client}, "request_uri": {ref}}
		if _, pushed, perr := w.portal.requestParams(q); perr == nil && pushed {
			t.Fatalf("an unsigned request_uri %q was accepted", ref)
		}
	})
}
