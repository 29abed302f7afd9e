package otp

import (
	"strings"
	"unicode/utf8"
)

// ParseCode reads a code as a citizen typed it: exactly Digits digits once surrounding white space
// (including the full-width space U+3000) is trimmed. Full-width digits ０-９, which a Chinese input method
// types, are read as their ASCII digits; any other character, digits of other scripts included, is
// refused with ErrMalformed. The result is the code in ASCII digits.
func ParseCode(s string) (string, error) {
	s = strings.TrimSpace(s)
	// Longest acceptable input: every digit full-width, 3 bytes each.
	if len(s) > Digits*utf8.UTFMax {
		return "", ErrMalformed
	}
	var out [Digits]byte
	n := 0
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			r -= '0'
		case r >= '０' && r <= '９':
			r -= '０'
		default:
			// utf8.RuneError from invalid bytes lands here too.
			return "", ErrMalformed
		}
		if n == Digits {
			return "", ErrMalformed
		}
		out[n] = byte('0' + r)
		n++
	}
	if n != Digits {
		return "", ErrMalformed
	}
	return string(out[:]), nil
}
