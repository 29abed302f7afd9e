package twodocs

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mydatafed/mydata/pkg/docregistry"
)

// Form field names, as FieldError.Field carries them and as the registry's JSON names them.
const (
	FieldNationalID = "national_id"
	FieldNHICard    = "nhi_card"
	FieldHousehold  = "household"
	FieldIssueDate  = "issue_date"
	FieldIssueType  = "issue_type"
	// FieldDocuments is the choice of second document: neither or both were given.
	FieldDocuments = "documents"
)

// FieldError says which field of the form is wrong and why, so the portal can point the citizen at it.
// Reason and ReasonZh never quote the input.
type FieldError struct {
	Field    string // one of the Field constants
	Reason   string // English, for the page and the logs
	ReasonZh string // the same in Chinese, for the page
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

func fieldErr(field, reason, zh string) *FieldError {
	return &FieldError{Field: field, Reason: reason, ReasonZh: zh}
}

// maxInput bounds what a parser looks at: the longest sensible entry (a full-width ROC date with 民國, 年,
// 月 and 日 and spaces) is well below it.
const maxInput = 100

// clean checks the size and encoding of a typed value, folds full-width forms (what Chinese input methods
// type) to ASCII and trims surrounding spaces.
func clean(field, s string) (string, error) {
	if len(s) > maxInput {
		return "", fieldErr(field, "too long", "輸入過長")
	}
	if !utf8.ValidString(s) {
		return "", fieldErr(field, "not valid text", "含有無效字元")
	}
	s = strings.Map(fold, s)
	return strings.TrimSpace(s), nil
}

// fold maps full-width ASCII (ＡＢＣ０１２), the ideographic space and the dash look-alikes to ASCII.
func fold(r rune) rune {
	switch {
	case r >= 0xFF01 && r <= 0xFF5E:
		return r - 0xFEE0
	case r == 0x3000:
		return ' '
	case r >= 0x2010 && r <= 0x2015, r == 0x2212, r == 0xFE63:
		return '-'
	}
	return r
}

// dropSeparators removes the spaces and hyphens people type to group digits (0000 1234 5678).
func dropSeparators(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' || r == '\t' {
			return -1
		}
		return r
	}, s)
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// ParseNHICard returns the NHI card number (健保卡卡號) as its 12 ASCII digits. Spaces and hyphens between
// digit groups are dropped and full-width digits accepted. The number has no public check digit, so only
// its form is checked.
func ParseNHICard(s string) (string, error) {
	s, err := clean(FieldNHICard, s)
	if err != nil {
		return "", err
	}
	s = dropSeparators(s)
	switch {
	case s == "":
		return "", fieldErr(FieldNHICard, "required", "請輸入健保卡卡號")
	case !allDigits(s):
		return "", fieldErr(FieldNHICard, "only digits: the 12-digit number on the front of the card", "健保卡卡號只含數字（卡片正面的 12 位數字）")
	case len(s) != 12:
		return "", fieldErr(FieldNHICard, fmt.Sprintf("12 digits, not %d", len(s)), fmt.Sprintf("健保卡卡號為 12 位數字，您輸入了 %d 位", len(s)))
	}
	return s, nil
}

// ParseHousehold returns the household registration number (戶號) in its canonical form: one capital
// letter and seven digits, e.g. F1234567, as printed at the top of the household certificate (戶口名簿).
// The household registration offices describe it as eight characters, a letter code and a digit code;
// a lower-case or full-width letter is accepted and spaces and hyphens are dropped.
func ParseHousehold(s string) (string, error) {
	s, err := clean(FieldHousehold, s)
	if err != nil {
		return "", err
	}
	s = dropSeparators(s)
	if s == "" {
		return "", fieldErr(FieldHousehold, "required", "請輸入戶號")
	}
	if c := s[0]; c >= 'a' && c <= 'z' {
		s = string(c-'a'+'A') + s[1:]
	}
	if len(s) != 8 || s[0] < 'A' || s[0] > 'Z' || !allDigits(s[1:]) {
		return "", fieldErr(FieldHousehold, "one letter and 7 digits, e.g. F1234567", "戶號為 1 個英文字母加 7 位數字，例如 F1234567")
	}
	return s, nil
}

// taipei is the zone "today" is judged in; a fixed offset needs no time zone database in the image.
var taipei = time.FixedZone("Asia/Taipei", 8*60*60)

// firstIssueYear is the earliest year an issue date may have: Taiwan's ID cards date from 1946 (民國35年).
const firstIssueYear = 1946

const dateHint = "a date such as 2023-03-05, or in the ROC calendar 112/03/05 or 1120305"
const dateHintZh = "日期格式如 112/03/05、1120305（民國）或 2023-03-05"

// ParseIssueDate returns the ID card's issue date (發證日期) at midnight UTC. It accepts the Gregorian
// 2006-01-02 (also with / or .), 20060102, and the ROC calendar as printed on the card and typed on
// government forms: 112/03/05, 112-3-5, 112.03.05, 1120305, 0990305, with or without 民國 in front and with
// 年, 月, 日 in place of separators; the ROC year is the Gregorian year minus 1911. A date in the future
// (in Taiwan) or before 1946 is refused.
func ParseIssueDate(s string) (time.Time, error) {
	return parseIssueDate(s, time.Now())
}

func parseIssueDate(s string, now time.Time) (time.Time, error) {
	s, err := clean(FieldIssueDate, s)
	if err != nil {
		return time.Time{}, err
	}
	if s == "" {
		return time.Time{}, fieldErr(FieldIssueDate, "required", "請輸入發證日期")
	}
	bad := fieldErr(FieldIssueDate, "not "+dateHint, "無法辨識的日期："+dateHintZh)
	roc := false
	if rest, ok := strings.CutPrefix(s, "民國"); ok {
		roc, s = true, strings.TrimSpace(rest)
	}
	if rest, ok := strings.CutSuffix(s, "日"); ok {
		s = rest
	}
	s = strings.NewReplacer("年", "/", "月", "/", " ", "").Replace(s)

	var ys, ms, ds string
	if sep := strings.IndexAny(s, "-/."); sep >= 0 {
		parts := strings.Split(s, s[sep:sep+1])
		if len(parts) != 3 {
			return time.Time{}, bad
		}
		ys, ms, ds = parts[0], parts[1], parts[2]
		if len(ms) < 1 || len(ms) > 2 || len(ds) < 1 || len(ds) > 2 {
			return time.Time{}, bad
		}
	} else {
		switch len(s) {
		case 6, 7, 8: // ROC yyMMdd, ROC yyyMMdd, Gregorian yyyyMMdd
			ys, ms, ds = s[:len(s)-4], s[len(s)-4:len(s)-2], s[len(s)-2:]
		default:
			return time.Time{}, bad
		}
	}
	if ys == "" || len(ys) > 4 || !allDigits(ys) || !allDigits(ms) || !allDigits(ds) {
		return time.Time{}, bad
	}
	y, _ := strconv.Atoi(ys)
	m, _ := strconv.Atoi(ms)
	d, _ := strconv.Atoi(ds)
	if len(ys) == 4 {
		if roc {
			return time.Time{}, fieldErr(FieldIssueDate, "a ROC (民國) year has at most 3 digits", "民國年份最多 3 位數")
		}
	} else {
		if y == 0 {
			return time.Time{}, bad
		}
		y += 1911
	}
	if m < 1 || m > 12 {
		return time.Time{}, fieldErr(FieldIssueDate, fmt.Sprintf("there is no month %d", m), fmt.Sprintf("月份 %d 不存在", m))
	}
	t := time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC)
	if d < 1 || t.Day() != d {
		return time.Time{}, fieldErr(FieldIssueDate, fmt.Sprintf("%s has no day %d", time.Month(m), d), fmt.Sprintf("%d 月沒有 %d 日", m, d))
	}
	if y < firstIssueYear {
		return time.Time{}, fieldErr(FieldIssueDate, fmt.Sprintf("before %d", firstIssueYear), fmt.Sprintf("早於 %d 年（民國 %d 年）", firstIssueYear, firstIssueYear-1911))
	}
	ty, tm, td := now.In(taipei).Date()
	if t.After(time.Date(ty, tm, td, 0, 0, 0, 0, time.UTC)) {
		return time.Time{}, fieldErr(FieldIssueDate, "in the future", "日期晚於今天")
	}
	return t, nil
}

// IssueType says why the ID card was issued (領補換類別): the registry keeps it with the issue date.
type IssueType string

// The issue types, by the names the registry protocol uses.
const (
	IssueFirst       IssueType = docregistry.IssueFirst       // 初發: the first card, at 14 or on first registration
	IssueReissue     IssueType = docregistry.IssueReissue     // 補發: after a loss
	IssueReplacement IssueType = docregistry.IssueReplacement // 換發: a worn card, a changed name, or a general renewal
)

// Zh is the name printed on the card and shown on the form.
func (t IssueType) Zh() string {
	switch t {
	case IssueFirst:
		return "初發"
	case IssueReissue:
		return "補發"
	case IssueReplacement:
		return "換發"
	}
	return ""
}

// Valid says whether t is one of the three types.
func (t IssueType) Valid() bool { return t.Zh() != "" }

var issueTypes = map[string]IssueType{
	"初發": IssueFirst, "初領": IssueFirst, "1": IssueFirst, "first": IssueFirst,
	"補發": IssueReissue, "補領": IssueReissue, "补发": IssueReissue, "2": IssueReissue, "reissue": IssueReissue,
	"換發": IssueReplacement, "換領": IssueReplacement, "换发": IssueReplacement, "3": IssueReplacement,
	"replacement": IssueReplacement, "replace": IssueReplacement,
}

// ParseIssueType accepts 初發, 補發 or 換發 (also 初領/補領/換領), the household registration codes 1, 2 and 3,
// and the protocol names first, reissue and replacement.
func ParseIssueType(s string) (IssueType, error) {
	s, err := clean(FieldIssueType, s)
	if err != nil {
		return "", err
	}
	if s == "" {
		return "", fieldErr(FieldIssueType, "required", "請選擇領補換類別")
	}
	if t, ok := issueTypes[strings.ToLower(s)]; ok {
		return t, nil
	}
	return "", fieldErr(FieldIssueType, "one of 初發 (first issue), 補發 (reissue), 換發 (replacement)", "請選擇初發、補發或換發")
}

// Documents are what the citizen shows besides the national ID: the NHI card number and exactly one of the
// household registration number or the ID card's issue date with its type. Values are in the form the
// parsers return.
type Documents struct {
	NHICard   string
	Household string
	IssueDate time.Time // zero when the household number is given
	IssueType IssueType
}

// Evidence names the documents shown, not their values, for identity.Result.Evidence.
func (d Documents) Evidence() string {
	if d.Household != "" {
		return "nhi_card+household"
	}
	return "nhi_card+issue_date"
}

// validate checks documents built by hand as the parsers would have: Check refuses to send anything else.
func (d Documents) validate() error {
	if n, err := ParseNHICard(d.NHICard); err != nil {
		return err
	} else if n != d.NHICard {
		return fieldErr(FieldNHICard, "not in canonical form (use ParseNHICard)", "健保卡卡號格式錯誤")
	}
	dated := !d.IssueDate.IsZero() || d.IssueType != ""
	switch {
	case d.Household == "" && !dated:
		return fieldErr(FieldDocuments, "give the household number or the ID card's issue date", "請輸入戶號或身分證發證日期")
	case d.Household != "" && dated:
		return fieldErr(FieldDocuments, "give the household number or the ID card's issue date, not both", "戶號與發證日期請擇一輸入")
	case d.Household != "":
		if h, err := ParseHousehold(d.Household); err != nil {
			return err
		} else if h != d.Household {
			return fieldErr(FieldHousehold, "not in canonical form (use ParseHousehold)", "戶號格式錯誤")
		}
		return nil
	case d.IssueDate.IsZero():
		return fieldErr(FieldIssueDate, "required with the issue type", "請輸入發證日期")
	case !d.IssueType.Valid():
		return fieldErr(FieldIssueType, "one of first, reissue, replacement", "請選擇初發、補發或換發")
	}
	if _, err := ParseIssueDate(d.IssueDate.Format(time.DateOnly)); err != nil {
		return err
	}
	return nil
}
