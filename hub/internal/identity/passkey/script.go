package passkey

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
)

// Script is the browser side of the ceremonies (passkey.js): it reads the options from a data- attribute or a
// begin URL, calls navigator.credentials.create or get, posts the credential JSON to the finish URL and follows
// the answer. Its markup contract is at the top of the file.
//
//go:embed passkey.js
var Script []byte

// ScriptHandler serves Script. The portal mounts it under its own origin so that CSP script-src 'self' holds;
// the page also needs connect-src 'self' for the script's fetch calls.
func ScriptHandler() http.Handler {
	sum := sha256.Sum256(Script)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/javascript; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "public, max-age=3600")
		h.Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(Script)
	})
}
