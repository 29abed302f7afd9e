package hubapi

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/mydatafed/mydata/pkg/fedid"
)

// Paths of the catalogue's admin API.
const (
	PathDatasets = "/v1/admin/datasets"
	PathServices = "/v1/admin/services"
)

// Dataset states.
const (
	DatasetActive      = "active"
	DatasetMaintenance = "maintenance"
)

// Content types a dataset may have.
var ContentTypes = []string{"application/json", "text/csv", "application/pdf", "application/xml"}

// Service modes.
const (
	ModeOnline  = "online"
	ModeCounter = "counter"
	// ModeDownload is the citizen downloading their own datasets: not a service's mode, but the mode of a
	// download consent.
	ModeDownload = "download"
)

// MaxDatasetsWithoutBasis is how many datasets a service may ask for unless an operator records a legal
// basis: the platform's data-minimisation rule.
const MaxDatasetsWithoutBasis = 5

// Assurance levels of identity, from weakest to strongest; each dataset names the least it accepts.
const (
	AALLow    = 1 // one-time code by e-mail or SMS, mobile-number ownership
	AALMedium = 2 // NHI card, software financial certificate, two documents, TW FidO
	AALHigh   = 3 // natural-person certificate, chip bank card, hardware financial certificate
)

// Dataset is a kind of personal data a data provider serves.
type Dataset struct {
	ID          string `json:"id"`
	NameZh      string `json:"name_zh"`
	NameEn      string `json:"name_en"`
	Description string `json:"description"`
	DPOrg       string `json:"dp_org"`
	DPConnector string `json:"dp_connector"`
	// MoreDPConnectors are further connectors of DPOrg that serve the dataset too (connector HA): a ticket
	// names them all, any one may serve it, once in all.
	MoreDPConnectors []string `json:"more_dp_connectors,omitempty"`
	MinAAL           int      `json:"min_aal"`
	// Methods, when set, are the only login methods the holder accepts for this dataset (the real
	// platform lets the data provider choose); otherwise any method of MinAAL or higher will do.
	Methods     []string `json:"methods,omitempty"`
	ContentType string   `json:"content_type"`
	// Async marks a dataset whose agency may answer "not ready, retry later": the SP connector keeps
	// retrying for up to 90 minutes.
	Async bool `json:"async"`
	// Download lets citizens download the dataset themselves (個人化資料下載), relayed by the hub sealed to
	// their browser.
	Download  bool      `json:"download,omitempty"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
	// Stage is sandbox, pilot or production (StageOf: empty is production); approved applications move it.
	Stage string `json:"stage,omitempty"`
}

// DatasetConnectorsRequest sets the connectors of the dataset's agency that serve it, the first as its
// dp_connector.
type DatasetConnectorsRequest struct {
	Connectors []string `json:"dp_connectors"`
}

// MaxDPConnectors bounds the connectors that serve one dataset (ticket.MaxDPs: a ticket names them all).
const MaxDPConnectors = 4

// Connectors are the connectors of DPOrg that serve the dataset, DPConnector first.
func (d *Dataset) Connectors() []string {
	return append([]string{d.DPConnector}, d.MoreDPConnectors...)
}

// ValidDPConnectors checks the further connectors of a dataset served by first: names, none twice, at most
// MaxDPConnectors in all.
func ValidDPConnectors(first string, more []string) error {
	if 1+len(more) > MaxDPConnectors {
		return fmt.Errorf("a dataset is served by at most %d connectors", MaxDPConnectors)
	}
	seen := map[string]bool{first: true}
	for i, n := range more {
		if err := fedid.ValidName(n); err != nil {
			return fmt.Errorf("[%d]: %w", i, err)
		}
		if seen[n] {
			return fmt.Errorf("[%d]: connector %q is named twice", i, n)
		}
		seen[n] = true
	}
	return nil
}

// MaxAAL bounds the levels a hub may configure.
const MaxAAL = 9

var methodID = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

var datasetID = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,30}\.[a-z0-9][a-z0-9.-]{0,62}$`)

// ValidDatasetID checks the form of a dataset id, <org>.<name>.
func ValidDatasetID(id string) error {
	if !datasetID.MatchString(id) {
		return fmt.Errorf("%q is not <org>.<name> in a-z, 0-9, '-' and '.'", id)
	}
	return nil
}

// Validate checks a dataset as an operator submits it.
func (d *Dataset) Validate() error {
	if !datasetID.MatchString(d.ID) {
		return fmt.Errorf("id: %q is not <org>.<name> in a-z, 0-9, '-' and '.'", d.ID)
	}
	if d.NameZh == "" || len(d.NameZh) > 200 {
		return errors.New("name_zh: required, at most 200 bytes")
	}
	if d.NameEn == "" || len(d.NameEn) > 200 {
		return errors.New("name_en: required, at most 200 bytes")
	}
	if len(d.Description) > 2000 {
		return errors.New("description: at most 2000 bytes")
	}
	if err := fedid.ValidName(d.DPOrg); err != nil {
		return fmt.Errorf("dp_org: %w", err)
	}
	if err := fedid.ValidName(d.DPConnector); err != nil {
		return fmt.Errorf("dp_connector: %w", err)
	}
	if err := ValidDPConnectors(d.DPConnector, d.MoreDPConnectors); err != nil {
		return fmt.Errorf("more_dp_connectors: %w", err)
	}
	if d.MinAAL < AALLow || d.MinAAL > MaxAAL {
		return fmt.Errorf("min_aal: %d is not a level from 1 to %d (1 low, 2 medium, 3 high by default)", d.MinAAL, MaxAAL)
	}
	if len(d.Methods) > 20 {
		return errors.New("methods: at most 20")
	}
	for i, m := range d.Methods {
		if !methodID.MatchString(m) {
			return fmt.Errorf("methods[%d]: %q is not a method id (a-z, 0-9, '-', up to 32)", i, m)
		}
	}
	if d.ContentType == "" {
		d.ContentType = "application/json"
	}
	for _, ct := range ContentTypes {
		if d.ContentType == ct {
			return nil
		}
	}
	return fmt.Errorf("content_type: %q is not one of %v", d.ContentType, ContentTypes)
}

// Service is what an SP offers citizens, and the OAuth client it uses.
type Service struct {
	// ID is the OAuth client_id.
	ID           string   `json:"id"`
	NameZh       string   `json:"name_zh"`
	NameEn       string   `json:"name_en"`
	SPOrg        string   `json:"sp_org"`
	SPConnector  string   `json:"sp_connector"`
	Modes        []string `json:"modes"`
	Datasets     []string `json:"datasets"`
	Purpose      string   `json:"purpose"`
	Terms        string   `json:"terms"`
	TermsVersion string   `json:"terms_version"`
	RedirectURIs []string `json:"redirect_uris"`
	LegalBasis   string   `json:"legal_basis,omitempty"`
	// RequirePAR accepts authorization requests for this service only when pushed by its SP connector
	// (RFC 9126), as FAPI 2.0 asks: the browser then carries a reference, not the request.
	RequirePAR bool `json:"require_par,omitempty"`
	// CounterOTP makes a counter redemption wait for a one-time code the hub sends the citizen, which the
	// citizen reads to counter staff before anything is shown (counter mode only).
	CounterOTP bool      `json:"counter_otp,omitempty"`
	Status     string    `json:"status"`
	CreatedAt  time.Time `json:"created_at"`
	// Stage is sandbox, pilot or production (StageOf: empty is production); approved applications move it.
	Stage string `json:"stage,omitempty"`
}

var serviceID = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,62}$`)

// Validate checks a service as an operator submits it; it cannot know whether the datasets exist.
func (s *Service) Validate() error {
	if !serviceID.MatchString(s.ID) {
		return fmt.Errorf("id: %q is not 1 to 63 characters of a-z, 0-9, '-' and '.'", s.ID)
	}
	if s.NameZh == "" || len(s.NameZh) > 200 {
		return errors.New("name_zh: required, at most 200 bytes")
	}
	if s.NameEn == "" || len(s.NameEn) > 200 {
		return errors.New("name_en: required, at most 200 bytes")
	}
	if err := fedid.ValidName(s.SPOrg); err != nil {
		return fmt.Errorf("sp_org: %w", err)
	}
	if err := fedid.ValidName(s.SPConnector); err != nil {
		return fmt.Errorf("sp_connector: %w", err)
	}
	if len(s.Modes) == 0 {
		return errors.New("modes: give online, counter or both")
	}
	seen := map[string]bool{}
	for _, m := range s.Modes {
		if m != ModeOnline && m != ModeCounter || seen[m] {
			return fmt.Errorf("modes: %q is not online or counter, or is repeated", m)
		}
		seen[m] = true
	}
	if len(s.Datasets) == 0 {
		return errors.New("datasets: at least one")
	}
	if len(s.Datasets) > MaxDatasetsWithoutBasis && strings.TrimSpace(s.LegalBasis) == "" {
		return fmt.Errorf("datasets: %d asked for; more than %d needs a legal_basis recorded by the operator", len(s.Datasets), MaxDatasetsWithoutBasis)
	}
	seen = map[string]bool{}
	for _, d := range s.Datasets {
		if !datasetID.MatchString(d) || seen[d] {
			return fmt.Errorf("datasets: %q is not a dataset id, or is repeated", d)
		}
		seen[d] = true
	}
	if s.Purpose == "" || len(s.Purpose) > 1000 {
		return errors.New("purpose: required, at most 1000 bytes")
	}
	if s.Terms == "" || len(s.Terms) > 20000 {
		return errors.New("terms: required, at most 20000 bytes")
	}
	if s.TermsVersion == "" || len(s.TermsVersion) > 32 {
		return errors.New("terms_version: required, at most 32 bytes")
	}
	if containsMode(s.Modes, ModeOnline) && len(s.RedirectURIs) == 0 {
		return errors.New("redirect_uris: an online service needs at least one")
	}
	if s.CounterOTP && !containsMode(s.Modes, ModeCounter) {
		return errors.New("counter_otp: only a counter service asks for a one-time code")
	}
	for _, r := range s.RedirectURIs {
		if err := ValidRedirectURI(r); err != nil {
			return fmt.Errorf("redirect_uris: %q: %w", r, err)
		}
	}
	return nil
}

func containsMode(modes []string, m string) bool {
	for _, x := range modes {
		if x == m {
			return true
		}
	}
	return false
}

// ValidRedirectURI accepts absolute https URIs without fragment, and http only for loopback hosts (RFC 8252
// native and development clients).
func ValidRedirectURI(r string) error {
	u, err := url.Parse(r)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return errors.New("not an absolute URI")
	}
	if u.Fragment != "" || strings.Contains(r, "#") {
		return errors.New("must not have a fragment")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if h := u.Hostname(); h == "127.0.0.1" || h == "localhost" || h == "::1" {
			return nil
		}
	}
	return errors.New("must be https (http only for loopback)")
}
