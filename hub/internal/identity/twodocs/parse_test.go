package twodocs

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// wantField checks that err is a *FieldError for field.
func wantField(t *testing.T, err error, field string) {
	t.Helper()
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *FieldError", err, err)
	}
	if fe.Field != field || fe.Reason == "" || fe.ReasonZh == "" {
		t.Fatalf("FieldError %+v, want field %s with both reasons", fe, field)
	}
}

func TestParseNHICard(t *testing.T) {
	tests := []struct {
		in, want string // want "" means an error
	}{
		{"000012345678", "000012345678"},
		{"  0000 1234 5678 ", "000012345678"},
		{"0000-1234-5678", "000012345678"},
		{"００００１２３４５６７８", "000012345678"},             // full-width digits
		{"００００－１２３４－５６７８", "000012345678"},           // full-width hyphens
		{"0000\u30001234\u30005678", "000012345678"}, // ideographic spaces
		{"0000–1234—5678", "000012345678"},           // en and em dashes
		{"", ""},
		{"   ", ""},
		{"00001234567", ""},   // 11 digits
		{"0000123456789", ""}, // 13 digits
		{"00001234567O", ""},  // a letter O
		{"0000.1234.5678", ""},
		{"٠٠٠٠١٢٣٤٥٦٧٨", ""}, // Arabic-Indic digits are not folded
		{"0000_1234_5678", ""},
		{"\xff00012345678", ""},
		{strings.Repeat("0", 200), ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseNHICard(tt.in)
			if tt.want == "" {
				wantField(t, err, FieldNHICard)
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseNHICard(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseHousehold(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"F1234567", "F1234567"},
		{"f1234567", "F1234567"},
		{" D0012345 ", "D0012345"},
		{"Ｆ１２３４５６７", "F1234567"},
		{"ｆ１２３４５６７", "F1234567"},
		{"F 123 4567", "F1234567"},
		{"F-1234567", "F1234567"},
		{"", ""},
		{"F123456", ""},   // 7 characters
		{"F12345678", ""}, // 9 characters
		{"12345678", ""},  // no letter
		{"FF123456", ""},  // two letters
		{"F123456X", ""},
		{"É1234567", ""},
		{"戶1234567", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseHousehold(tt.in)
			if tt.want == "" {
				wantField(t, err, FieldHousehold)
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseHousehold(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseIssueDate(t *testing.T) {
	now := time.Date(2026, 6, 1, 20, 0, 0, 0, time.UTC) // 2026-06-02 04:00 in Taipei
	tests := []struct {
		in     string
		want   string // 2006-01-02; "" means an error
		reason string // part of the error's Reason
	}{
		{"2023-03-05", "2023-03-05", ""},
		{"2023/3/5", "2023-03-05", ""},
		{"2023.03.05", "2023-03-05", ""},
		{"20230305", "2023-03-05", ""},
		{"112/03/05", "2023-03-05", ""},
		{"112-3-5", "2023-03-05", ""},
		{"1120305", "2023-03-05", ""},
		{"民國112/03/05", "2023-03-05", ""},
		{"民國 112年3月5日", "2023-03-05", ""},
		{"112年03月05日", "2023-03-05", ""},
		{"１１２／０３／０５", "2023-03-05", ""}, // full-width
		{"１１２０３０５", "2023-03-05", ""},
		{"0990305", "2010-03-05", ""}, // ROC 99 with a leading zero
		{"990305", "2010-03-05", ""},
		{"99/03/05", "2010-03-05", ""},
		{"35/01/01", "1946-01-01", ""},
		{"115/06/02", "2026-06-02", ""}, // today in Taipei, though still June 1 in UTC
		{"109/02/29", "2020-02-29", ""}, // a leap day
		{"", "", "required"},
		{"115/06/03", "", "future"},
		{"2999-01-01", "", "future"},
		{"34/12/31", "", "before 1946"},
		{"1945-12-31", "", "before 1946"},
		{"112/13/05", "", "month 13"},
		{"112/00/05", "", "month 0"},
		{"112/02/29", "", "no day 29"}, // 2023 is not a leap year
		{"112/04/31", "", "no day 31"},
		{"112/04/00", "", "no day 0"},
		{"民國2023-03-05", "", "ROC"},
		{"民國20230305", "", "ROC"},
		{"0/03/05", "", "not a date"},
		{"000305", "", "not a date"},
		{"112/03", "", "not a date"},
		{"112/03/05/01", "", "not a date"},
		{"112-03/05", "", "not a date"},
		{"112/003/05", "", "not a date"},
		{"12345/03/05", "", "not a date"},
		{"11203", "", "not a date"},
		{"112030500", "", "not a date"},
		{"a12/03/05", "", "not a date"},
		{"112/+3/05", "", "not a date"},
		{"05/03/2023", "", "not a date"}, // day first is not a form we read
		{"March 5, 2023", "", "not a date"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseIssueDate(tt.in, now)
			if tt.want == "" {
				wantField(t, err, FieldIssueDate)
				if !strings.Contains(err.Error(), tt.reason) {
					t.Fatalf("error %q does not say %q", err, tt.reason)
				}
				return
			}
			if err != nil || got.Format(time.DateOnly) != tt.want || got.Location() != time.UTC || got.Hour() != 0 {
				t.Fatalf("parseIssueDate(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseIssueType(t *testing.T) {
	tests := []struct {
		in   string
		want IssueType
	}{
		{"初發", IssueFirst},
		{"初領", IssueFirst},
		{"1", IssueFirst},
		{"１", IssueFirst},
		{"first", IssueFirst},
		{" 補發 ", IssueReissue},
		{"2", IssueReissue},
		{"Reissue", IssueReissue},
		{"換發", IssueReplacement},
		{"換領", IssueReplacement},
		{"3", IssueReplacement},
		{"REPLACEMENT", IssueReplacement},
		{"", ""},
		{"4", ""},
		{"發", ""},
		{"renewal", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseIssueType(tt.in)
			if tt.want == "" {
				wantField(t, err, FieldIssueType)
				return
			}
			if err != nil || got != tt.want || got.Zh() == "" {
				t.Fatalf("ParseIssueType(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestDocumentsValidate(t *testing.T) {
	date := time.Date(2023, 3, 5, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		docs  Documents
		field string // "" means valid
	}{
		{"household", Documents{NHICard: "000012345678", Household: "F1234567"}, ""},
		{"issue date", Documents{NHICard: "000012345678", IssueDate: date, IssueType: IssueReissue}, ""},
		{"no NHI card", Documents{Household: "F1234567"}, FieldNHICard},
		{"NHI card not canonical", Documents{NHICard: "0000 1234 5678", Household: "F1234567"}, FieldNHICard},
		{"neither", Documents{NHICard: "000012345678"}, FieldDocuments},
		{"both", Documents{NHICard: "000012345678", Household: "F1234567", IssueDate: date, IssueType: IssueFirst}, FieldDocuments},
		{"household not canonical", Documents{NHICard: "000012345678", Household: "f1234567"}, FieldHousehold},
		{"type without date", Documents{NHICard: "000012345678", IssueType: IssueFirst}, FieldIssueDate},
		{"date without type", Documents{NHICard: "000012345678", IssueDate: date}, FieldIssueType},
		{"unknown type", Documents{NHICard: "000012345678", IssueDate: date, IssueType: "renewal"}, FieldIssueType},
		{"future date", Documents{NHICard: "000012345678", IssueDate: time.Now().AddDate(1, 0, 0), IssueType: IssueFirst}, FieldIssueDate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.docs.validate()
			if tt.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantField(t, err, tt.field)
		})
	}
}

func FuzzParseNHICard(f *testing.F) {
	for _, s := range []string{"000012345678", "0000 1234 5678", "００００１２３４５６７８", "0000-1234-567", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseNHICard(s)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != FieldNHICard {
				t.Fatalf("error %v is not a FieldError for nhi_card", err)
			}
			if len(s) >= 6 && strings.Contains(err.Error(), s) {
				t.Fatalf("error %q quotes the input", err)
			}
			return
		}
		if len(got) != 12 || !allDigits(got) {
			t.Fatalf("ParseNHICard(%q) = %q", s, got)
		}
		if again, err := ParseNHICard(got); err != nil || again != got {
			t.Fatalf("not idempotent: %q -> %q, %v", got, again, err)
		}
	})
}

func FuzzParseHousehold(f *testing.F) {
	for _, s := range []string{"F1234567", "f 123-4567", "Ｆ１２３４５６７", "12345678", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseHousehold(s)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != FieldHousehold {
				t.Fatalf("error %v is not a FieldError for household", err)
			}
			return
		}
		if len(got) != 8 || got[0] < 'A' || got[0] > 'Z' || !allDigits(got[1:]) {
			t.Fatalf("ParseHousehold(%q) = %q", s, got)
		}
		if again, err := ParseHousehold(got); err != nil || again != got {
			t.Fatalf("not idempotent: %q -> %q, %v", got, again, err)
		}
	})
}

func FuzzParseIssueDate(f *testing.F) {
	for _, s := range []string{"2023-03-05", "112/03/05", "1120305", "民國112年3月5日", "１１２／０３／０５", "112/02/30", ""} {
		f.Add(s)
	}
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseIssueDate(s, now)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != FieldIssueDate {
				t.Fatalf("error %v is not a FieldError for issue_date", err)
			}
			return
		}
		if got.Year() < firstIssueYear || got.After(now.Add(24*time.Hour)) || got.Location() != time.UTC || got.Hour() != 0 {
			t.Fatalf("parseIssueDate(%q) = %v: out of range", s, got)
		}
		// Both written forms of the result read back as the same day.
		greg := got.Format(time.DateOnly)
		roc := fmt.Sprintf("%d/%02d/%02d", got.Year()-1911, got.Month(), got.Day())
		for _, form := range []string{greg, roc} {
			if again, err := parseIssueDate(form, now); err != nil || !again.Equal(got) {
				t.Fatalf("%q read back from %q as %v, %v; want %v", form, s, again, err, got)
			}
		}
	})
}
