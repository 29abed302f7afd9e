//go:build passkeyseeds

package passkey_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mydatafed/mydata/hub/internal/identity/passkey/passkeytest"
)

// TestWriteFuzzSeeds rewrites the checked-in seed corpus from the software authenticator. It is built only
// with -tags passkeyseeds (go test -tags passkeyseeds -run TestWriteFuzzSeeds .), since it overwrites
// testdata.
func TestWriteFuzzSeeds(t *testing.T) {
	fx := newFixture(t, nil)
	a := passkeytest.NewAuthenticator(origin)
	fx.register(t, alice, a)
	opts, _, err := fx.m.BeginLogin()
	if err != nil {
		t.Fatal(err)
	}
	valid, err := a.Get(opts)
	if err != nil {
		t.Fatal(err)
	}
	a.OmitUserHandle = true
	noHandle, _ := a.Get(opts)
	seeds := map[string][]byte{
		"valid-other-challenge": valid,
		"no-user-handle":        noHandle,
		"empty":                 nil,
		"null":                  []byte("null"),
		"empty-object":          []byte("{}"),
		"trailing-data":         append(append([]byte{}, valid...), " {}"...),
		"wrong-types":           []byte(`{"id":1,"rawId":true,"type":"public-key","response":{"clientDataJSON":[],"authenticatorData":{},"signature":null}}`),
		"short-authdata":        []byte(`{"id":"AQID","rawId":"AQID","type":"public-key","response":{"clientDataJSON":"e30","authenticatorData":"AAAA","signature":"AA"}}`),
		"extension-flag-no-data": []byte(`{"id":"AQID","rawId":"AQID","type":"public-key","response":{"clientDataJSON":"e30",` +
			`"authenticatorData":"SZYN5YgOjGh0NBcPZHZgW4_krrmihjLHmVzzuoMdl2OFAAAAAQ","signature":"AA"}}`),
		"id-rawid-mismatch": []byte(`{"id":"AQID","rawId":"BAUG","type":"public-key","response":{"clientDataJSON":"e30","authenticatorData":"","signature":""}}`),
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzFinishLogin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range seeds {
		content := "go test fuzz v1\n[]byte(" + quote(b) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// quote writes b as a Go string literal the fuzz corpus format accepts.
func quote(b []byte) string {
	out := []byte{'"'}
	for _, c := range b {
		switch {
		case c == '"' || c == '\\':
			out = append(out, '\\', c)
		case c >= 0x20 && c < 0x7f:
			out = append(out, c)
		default:
			out = append(out, []byte{'\\', 'x', "0123456789abcdef"[c>>4], "0123456789abcdef"[c&15]}...)
		}
	}
	return string(append(out, '"'))
}
