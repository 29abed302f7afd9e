// Package nationalid checks Taiwan national identification numbers (中華民國國民身分證統一編號), the subject
// identifier citizens log in with: a letter for the place of first registration, a digit for sex (1, 2, or
// 8, 9 for the newer resident numbers), seven digits and a check digit.
package nationalid

import (
	"errors"
)

// letterCodes maps the first letter to its two-digit code.
var letterCodes = map[byte]int{
	'A': 10, 'B': 11, 'C': 12, 'D': 13, 'E': 14, 'F': 15, 'G': 16, 'H': 17, 'I': 34, 'J': 18, 'K': 19, 'L': 20, 'M': 21,
	'N': 22, 'O': 35, 'P': 23, 'Q': 24, 'R': 25, 'S': 26, 'T': 27, 'U': 28, 'V': 29, 'W': 32, 'X': 30, 'Y': 31, 'Z': 33,
}

// ErrInvalid is returned for anything that is not a valid number.
var ErrInvalid = errors.New("not a valid national ID (a letter, then 9 digits with a correct check digit)")

// Valid checks the format and the check digit.
func Valid(s string) error {
	if len(s) != 10 {
		return ErrInvalid
	}
	code, ok := letterCodes[s[0]]
	if !ok {
		return ErrInvalid
	}
	if s[1] != '1' && s[1] != '2' && s[1] != '8' && s[1] != '9' {
		return ErrInvalid
	}
	sum := code/10 + (code%10)*9
	for i := 1; i < 10; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return ErrInvalid
		}
		w := 9 - i
		if i == 9 {
			w = 1
		}
		sum += int(c-'0') * w
	}
	if sum%10 != 0 {
		return ErrInvalid
	}
	return nil
}

// WithCheckDigit completes the first nine characters of a number with the check digit that makes it valid.
func WithCheckDigit(prefix string) (string, error) {
	if len(prefix) != 9 {
		return "", ErrInvalid
	}
	for d := byte('0'); d <= '9'; d++ {
		if s := prefix + string(d); Valid(s) == nil {
			return s, nil
		}
	}
	return "", ErrInvalid
}
