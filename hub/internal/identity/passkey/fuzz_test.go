package passkey_test

import (
	"errors"
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
