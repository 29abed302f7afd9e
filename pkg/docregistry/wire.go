package docregistry

import (
	"errors"
	"regexp"
	"time"

	"github.com/mydatafed/mydata/pkg/nationalid"
)

// MaxRequest is the largest request a registry needs to accept.
const MaxRequest = 4 << 10

// The issue types of an ID card (領補換類別), by the names the protocol uses.
const (
	IssueFirst       = "first"       // 初發: the first card, at 14 or on first registration
	IssueReissue     = "reissue"     // 補發: after a loss
	IssueReplacement = "replacement" // 換發: a worn card, a changed name, or a general renewal
)

// Request is the body the hub POSTs to the registry. Household, or IssueDate with IssueType, is set,
// never both. Values are canonical: NHICard 12 digits, Household a capital letter and 7 digits,
// IssueDate 2006-01-02, IssueType one of IssueFirst, IssueReissue and IssueReplacement.
type Request struct {
	NationalID string `json:"national_id"`
	NHICard    string `json:"nhi_card"`
	Household  string `json:"household,omitempty"`
	IssueDate  string `json:"issue_date,omitempty"`
	IssueType  string `json:"issue_type,omitempty"`
}

// Response is the registry's answer, with status 200. Match is a pointer so that a missing field is an
// error, not a "no".
type Response struct {
	Match *bool `json:"match"`
}

var (
	nhiCard   = regexp.MustCompile(`^[0-9]{12}$`)
	household = regexp.MustCompile(`^[A-Z][0-9]{7}$`)
)

// Validate checks that q is a request the protocol allows, with canonical values. Its errors name the
// field, never its value.
func (q Request) Validate() error {
	if nationalid.Valid(q.NationalID) != nil {
		return errors.New("national_id: not a valid national ID")
	}
	if !nhiCard.MatchString(q.NHICard) {
		return errors.New("nhi_card: not 12 digits")
	}
	dated := q.IssueDate != "" || q.IssueType != ""
	switch {
	case (q.Household != "") == dated:
		return errors.New("household or issue_date with issue_type, one of the two")
	case q.Household != "":
		if !household.MatchString(q.Household) {
			return errors.New("household: not a capital letter and 7 digits")
		}
		return nil
	}
	if _, err := time.Parse(time.DateOnly, q.IssueDate); err != nil {
		return errors.New("issue_date: not a date in the form 2006-01-02")
	}
	switch q.IssueType {
	case IssueFirst, IssueReissue, IssueReplacement:
		return nil
	}
	return errors.New("issue_type: not first, reissue or replacement")
}
