package passkey

import (
	"bytes"
	"testing"
	"time"
)

func TestSessionRoundTrip(t *testing.T) {
	in := session{kind: kindLogin, expires: time.Unix(1_800_000_000, 0), challenge: bytes.Repeat([]byte{7}, 32), handle: bytes.Repeat([]byte{9}, 32)}
	out, err := parseSession(in.marshal())
	if err != nil {
		t.Fatal(err)
	}
	if out.kind != in.kind || !out.expires.Equal(in.expires) || !bytes.Equal(out.challenge, in.challenge) || !bytes.Equal(out.handle, in.handle) {
		t.Fatalf("round trip: %+v != %+v", out, in)
	}
	if n := len(in.marshal()); n != 76 {
		t.Errorf("a bound login session is %d bytes", n)
	}
}

func TestSessionMalformed(t *testing.T) {
	good := session{kind: kindRegistration, expires: time.Unix(1_800_000_000, 0), challenge: bytes.Repeat([]byte{7}, 32)}.marshal()
	tests := map[string][]byte{
		"empty":          nil,
		"short":          good[:10],
		"version":        append([]byte{2}, good[1:]...),
		"kind":           append([]byte{1, 9}, good[2:]...),
		"trailing":       append(append([]byte{}, good...), 0),
		"truncated":      good[:len(good)-1],
		"tiny challenge": session{kind: kindLogin, challenge: []byte{1}}.marshal(),
		"huge expiry":    append(append([]byte{1, 1}, bytes.Repeat([]byte{0xff}, 8)...), good[10:]...),
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := parseSession(b); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
