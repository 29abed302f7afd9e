package nationalid

import "testing"

func TestValid(t *testing.T) {
	for _, ok := range []string{"A123456789", "F131104093"} {
		if err := Valid(ok); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "A123456788", "a123456789", "A323456789", "A12345678X", "1123456789", "A1234567890"} {
		if Valid(bad) == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	s, err := WithCheckDigit("B22334455")
	if err != nil || Valid(s) != nil || s[:9] != "B22334455" {
		t.Fatalf("WithCheckDigit: %s %v", s, err)
	}
}

func FuzzValid(f *testing.F) {
	f.Add("A123456789")
	f.Fuzz(func(t *testing.T, s string) {
		if Valid(s) != nil {
			return
		}
		if len(s) != 10 {
			t.Fatal("accepted a wrong length")
		}
		if again, err := WithCheckDigit(s[:9]); err != nil || again != s {
			t.Fatal("check digit not unique")
		}
	})
}
