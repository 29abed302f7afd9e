package jointoken

import (
	"crypto/sha256"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	fp := sha256.Sum256([]byte("root"))
	tok := New(fp)
	got, err := Parse(tok.String())
	if err != nil || got != tok {
		t.Fatalf("round trip: %v %v", got, err)
	}
	if tok.Hash() == "" || strings.Contains(tok.String(), tok.Hash()) {
		t.Fatal("hash leaks or is empty")
	}
	if New(fp).Secret == tok.Secret {
		t.Fatal("two tokens share a secret")
	}
}

func TestParseErrors(t *testing.T) {
	good := New([32]byte{}).String()
	for _, s := range []string{"", "mdj1", "mdj2" + good[4:], good + ".x", good[:len(good)-2], "mdj1.!!.!!", strings.Repeat("a", 200)} {
		if _, err := Parse(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestFingerprint(t *testing.T) {
	fp := sha256.Sum256([]byte("x"))
	for _, s := range []string{FormatFingerprint(fp), strings.TrimPrefix(FormatFingerprint(fp), "sha256:")} {
		got, err := ParseFingerprint(s)
		if err != nil || got != fp {
			t.Fatalf("%s: %v", s, err)
		}
	}
	if _, err := ParseFingerprint("abcd"); err == nil {
		t.Fatal("short fingerprint accepted")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(New([32]byte{1}).String())
	f.Add("mdj1..")
	f.Add("mdj1.AAAA.BBBB")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := Parse(s)
		if err != nil {
			return
		}
		again, err := Parse(tok.String())
		if err != nil || again != tok {
			t.Fatalf("re-parse of %q: %v", s, err)
		}
	})
}
