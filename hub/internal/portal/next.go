package portal

import (
	"net/http"
	"net/url"
	"strings"
)

// safeNext keeps the redirect after login on this portal. It refuses anything a browser might read as
// another host — "//evil", "/\evil" (Chromium treats "\" as "/"), control characters, encoded slashes that
// a later decode turns into either — and anything that is not one of the portal's own pages. What it
// returns is rebuilt from the parsed path and query, never the string it was given.
func (s *Server) safeNext(next string) string {
	const home = "/history"
	if next == "" || len(next) > 4096 || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") {
		return home
	}
	for i := 0; i < len(next); i++ {
		if c := next[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return home
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return home
	}
	// Decoded, the path must still be plain: %2F%2F and %5C are how the tricks arrive encoded.
	p := u.Path
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "\\\x00") || strings.Contains(strings.ToLower(u.RawPath), "%2f") {
		return home
	}
	rebuilt := &url.URL{Path: p, RawQuery: u.RawQuery}
	probe, err := http.NewRequest(http.MethodGet, rebuilt.String(), nil)
	if err != nil {
		return home
	}
	if _, pattern := s.mux.Handler(probe); pattern == "" || !nextTargets[pattern] {
		return home
	}
	return rebuilt.String()
}

// nextTargets are the pages a login may lead back to.
var nextTargets = map[string]bool{
	"GET /{$}": true, "GET /login": true, "GET /login/m/{id}": true, "GET /history": true, "GET /catalogue": true, "GET /account": true, "GET /oauth/authorize": true,
	"GET /counter": true, "GET /counter/{id}": true, "GET /download": true, "GET /download/confirm": true, "GET /download/{id}": true,
}
