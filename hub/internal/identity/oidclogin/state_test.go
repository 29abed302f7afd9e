package oidclogin

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestStateRoundTrip(t *testing.T) {
	st := newState(testMethod, time.Unix(1_790_000_000, 0))
	b, err := st.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 128 {
		t.Errorf("marshalled state is %d bytes, want it compact", len(b))
	}
	if strings.Trim(string(b), "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
		t.Errorf("%q is not cookie-safe base64url", b)
	}
	var got State
	if err := got.Unmarshal(b); err != nil {
		t.Fatal(err)
	}
	if got.Method != st.Method || got.State != st.State || got.Nonce != st.Nonce || got.Verifier != st.Verifier ||
		!got.IssuedAt.Equal(st.IssuedAt) {
		t.Errorf("round trip: %+v, want %+v", got, st)
	}
}

func TestStateUnmarshalRefuses(t *testing.T) {
	good, err := newState(testMethod, time.Unix(1_790_000_000, 0)).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(string(good))
	enc := func(b []byte) []byte { return []byte(base64.RawURLEncoding.EncodeToString(b)) }
	with := func(f func([]byte) []byte) []byte { return enc(f(bytes.Clone(raw))) }
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"not base64url", []byte("not base64!")},
		{"padded", append(bytes.Clone(good), '=')},
		{"line break inside", append(append(bytes.Clone(good[:20]), '\r', '\n'), good[20:]...)},
		{"std alphabet", []byte(base64.RawStdEncoding.EncodeToString(append(raw, 0xfb, 0xff)))},
		{"non-canonical trailing bits", append(bytes.Clone(good[:len(good)-1]), nextChar(good[len(good)-1]))},
		{"truncated to the fixed part", enc(raw[:stateFixedLen])},
		{"version 2", with(func(b []byte) []byte { b[0] = 2; return b })},
		{"method upper case", with(func(b []byte) []byte { b[stateFixedLen] = 'T'; return b })},
		{"method with slash", with(func(b []byte) []byte { return append(b, '/') })},
		{"method too long", enc(append(bytes.Clone(raw[:stateFixedLen]), strings.Repeat("a", maxIDLen+1)...))},
		{"far too long", bytes.Repeat([]byte("A"), 4096)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st State
			err := st.Unmarshal(tt.data)
			if !errors.Is(err, errStateEncoding) {
				t.Fatalf("Unmarshal(%q): %v, want a malformed-state error", tt.data, err)
			}
			if st != (State{}) {
				t.Errorf("a refused Unmarshal filled the State: %+v", st)
			}
		})
	}
}

// nextChar gives another base64url character that decodes to the same bytes when only the unused low
// bits differ, for the canonical-encoding case.
func nextChar(c byte) byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, c)
	return alphabet[i^1]
}

func TestStateMarshalRefuses(t *testing.T) {
	good := newState(testMethod, time.Now())
	tests := []struct {
		name string
		edit func(*State)
	}{
		{"no method", func(s *State) { s.Method = "" }},
		{"short state", func(s *State) { s.State = "abc" }},
		{"nonce not base64url", func(s *State) { s.Nonce = strings.Repeat("!", 22) }},
		{"verifier too long", func(s *State) { s.Verifier += "AAAA" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := good
			tt.edit(&st)
			if _, err := st.Marshal(); err == nil {
				t.Error("Marshal accepted it")
			}
		})
	}
}

// FuzzStateUnmarshal feeds browser-controlled cookie content to Unmarshal: it must not panic, and what it
// accepts must be exactly what Marshal makes of the result (one encoding per State, so a signature over
// the bytes is a signature over the State).
func FuzzStateUnmarshal(f *testing.F) {
	for _, m := range []string{"tw-wallet", "a", strings.Repeat("z", maxIDLen)} {
		b, err := newState(m, time.Unix(1_790_000_000, 0)).Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(""))
	f.Add([]byte("AQ"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var st State
		if err := st.Unmarshal(data); err != nil {
			return
		}
		again, err := st.Marshal()
		if err != nil {
			t.Fatalf("Unmarshal(%q) gave %+v, which Marshal refuses: %v", data, st, err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("Unmarshal(%q) then Marshal gives %q", data, again)
		}
	})
}
