package otp

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseCode(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"123456", "123456"},
		{"000000", "000000"},
		{"  123456\t", "123456"},
		{"\u3000123456\u3000", "123456"},
		{"１２３４５６", "123456"},
		{"12３4５6", "123456"},
		{" ０９８７６５ \n", "098765"},
		{"", ""},
		{"      ", ""},
		{"12345", ""},
		{"1234567", ""},
		{"123 456", ""},
		{"123-456", ""},
		{"12345a", ""},
		{"+12345", ""},
		{"１２３４５６７", ""},
		{"١٢٣٤٥٦", ""},       // Arabic-Indic digits
		{"१२३४५६", ""},       // Devanagari digits
		{"一二三四五六", ""},       // Chinese numerals
		{"12345\xff", ""},    // invalid UTF-8
		{"123456\x00", ""},   // NUL is not white space
		{"12345\u200b6", ""}, // zero-width space inside
		{"\u200b123456", ""}, // zero-width space is not trimmed
		{"１２３４５６１２３４５６", ""}, // too long, and longer than the byte bound
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseCode(tt.in)
			if tt.want == "" {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("ParseCode(%q) = %q, %v; want ErrMalformed", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseCode(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func FuzzParseCode(f *testing.F) {
	for _, s := range []string{"123456", " １２３４５６ ", "12345", "abcdef", "\u3000０１２３４５\u3000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseCode(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || got != "" {
				t.Fatalf("ParseCode(%q) = %q, %v", s, got, err)
			}
			return
		}
		if len(got) != Digits || strings.Trim(got, "0123456789") != "" {
			t.Fatalf("ParseCode(%q) = %q: not %d ASCII digits", s, got, Digits)
		}
		// What is accepted is the trimmed input with full-width digits mapped: so it is valid UTF-8 of
		// exactly Digits runes, and parsing the result again is the identity.
		if trimmed := strings.TrimSpace(s); !utf8.ValidString(trimmed) || utf8.RuneCountInString(trimmed) != Digits {
			t.Fatalf("ParseCode(%q) accepted %q", s, trimmed)
		}
		if again, err := ParseCode(got); err != nil || again != got {
			t.Fatalf("ParseCode(%q) = %q, %v; not idempotent", got, again, err)
		}
	})
}
