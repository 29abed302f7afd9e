package passkey_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/mydatafed/mydata/hub/internal/identity/passkey"
	"github.com/mydatafed/mydata/hub/internal/identity/passkey/passkeytest"
)

// FuzzFinishLogin feeds FinishLogin bodies a hostile browser could post. It must never panic, and nothing but
// a correctly signed answer to this session's challenge may log in. The seed corpus in testdata/fuzz holds
// real and broken assertions; a live, valid one is added here.
func FuzzFinishLogin(f *testing.F) {
	fx := newFixture(f, nil)
	a := passkeytest.NewAuthenticator(origin)
	opts, sess, err := fx.m.BeginRegistration(alice, "王小明")
	if err != nil {
		f.Fatal(err)
	}
	body, err := a.Create(opts)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := fx.m.FinishRegistration(alice, sess, body, "phone"); err != nil {
		f.Fatal(err)
	}
	opts, sess, err = fx.m.BeginLogin()
	if err != nil {
		f.Fatal(err)
	}
	valid, err := a.Get(opts)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(body) // a registration body where an assertion belongs
	f.Fuzz(func(t *testing.T, body []byte) {
		subject, _, err := fx.m.FinishLogin(sess, body)
		if err == nil && subject != alice {
			t.Fatalf("logged in as %q", subject)
		}
		if err != nil && subject != "" {
			t.Fatalf("refused but returned %q", subject)
		}
		if err != nil && !errors.Is(err, passkey.ErrVerification) && !errors.Is(err, passkey.ErrUnknownCredential) && !errors.Is(err, passkey.ErrCloned) {
			t.Fatalf("unexpected error class: %v", err)
		}
	})
}

// TestWriteFuzzSeeds refreshes the checked-in seed corpus from the software authenticator when
// MYDATA_UPDATE_GOLDEN is set.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("MYDATA_UPDATE_GOLDEN") == "" {
		t.Skip("set MYDATA_UPDATE_GOLDEN=1 to rewrite testdata/fuzz")
	}
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
