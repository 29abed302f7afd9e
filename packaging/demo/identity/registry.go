package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/mydatafed/mydata/pkg/nationalid"
)

// The registry answers the hub's two-documents check as hub/internal/identity/twodocs/registry does,
// which this program cannot import (Go's internal rule keeps it to hub/): POST a JSON request
// {national_id, nhi_card, household} or {national_id, nhi_card, issue_date, issue_type} in canonical form
// (12 digits; a letter and 7 digits; 2006-01-02; first, reissue or replacement), with the bearer token
// when one is set; the answer is {"match": true|false}, the same for an unknown ID as for wrong documents.
// It reads the records file of that package (registry/testdata/sample-registry.json), whose values are
// canonical but for the issue type, which may be written in Chinese.

const maxCheckRequest = 4 << 10

var (
	nhiPattern       = regexp.MustCompile(`^[0-9]{12}$`)
	householdPattern = regexp.MustCompile(`^[A-Z][0-9]{7}$`)
	issueTypes       = map[string]string{
		"first": "first", "初發": "first", "初領": "first",
		"reissue": "reissue", "補發": "reissue", "補領": "reissue",
		"replacement": "replacement", "換發": "replacement", "換領": "replacement",
	}
)

// registryRecord is one citizen's documents in the records file.
type registryRecord struct {
	NationalID string `json:"national_id"`
	NHICard    string `json:"nhi_card"`
	Household  string `json:"household,omitempty"`
	IssueDate  string `json:"issue_date,omitempty"`
	IssueType  string `json:"issue_type,omitempty"`
}

// registryDigests are what a check compares, one per kind of second document; random when a record lacks
// one, and for unknown IDs, so that every check compares the same way.
type registryDigests struct{ household, issued [sha256.Size]byte }

type registry struct {
	byID      map[string]registryDigests
	dummy     registryDigests
	tokenHash []byte // nil: no token wanted
}

func runRegistry(args []string, stderr io.Writer) error {
	fs := newFlags("registry", stderr)
	records := fs.String("records", "", "the citizens' documents, a JSON array (e.g. hub/internal/identity/twodocs/registry/testdata/sample-registry.json)")
	tokenFile := fs.String("token-file", "", "file with the bearer token the hub must send (identity.two_docs.token_file); empty: none wanted")
	listen := fs.String("listen", "127.0.0.1:8090", "loopback address to serve on (identity.two_docs.url is http://<this>/)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *records == "" {
		return errors.New("--records: required")
	}
	reg, err := openRegistry(*records, *tokenFile)
	if err != nil {
		return err
	}
	ln, err := listenLoopback("listen", *listen)
	if err != nil {
		return err
	}
	log := newLogger(stderr, "registry")
	ctx, stop := signalContext()
	defer stop()
	// Nothing of a check is logged, as a real registry must not; only that it runs.
	log.Info("serving", "url", "http://"+ln.Addr().String()+"/", "records", len(reg.byID), "token", reg.tokenHash != nil)
	return serveHTTP(ctx, log, ln, reg)
}

func openRegistry(recordsFile, tokenFile string) (*registry, error) {
	data, err := os.ReadFile(recordsFile)
	if err != nil {
		return nil, err
	}
	var recs []registryRecord
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&recs); err != nil {
		return nil, fmt.Errorf("%s: %w", recordsFile, err)
	}
	r := &registry{byID: map[string]registryDigests{}, dummy: registryDigests{randomDigest(), randomDigest()}}
	for i, rec := range recs {
		d, err := rec.digests()
		if err != nil {
			// By position: the file's national IDs stay out of logs.
			return nil, fmt.Errorf("%s: record %d: %w", recordsFile, i+1, err)
		}
		if _, dup := r.byID[rec.NationalID]; dup {
			return nil, fmt.Errorf("%s: record %d: the national ID of an earlier record", recordsFile, i+1)
		}
		r.byID[rec.NationalID] = d
	}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, err
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return nil, fmt.Errorf("%s is empty", tokenFile)
		}
		h := sha256.Sum256([]byte(tok))
		r.tokenHash = h[:]
	}
	return r, nil
}

func (rec registryRecord) digests() (registryDigests, error) {
	d := registryDigests{randomDigest(), randomDigest()}
	if nationalid.Valid(rec.NationalID) != nil {
		return d, errors.New("national_id: not a valid national ID")
	}
	if !nhiPattern.MatchString(rec.NHICard) {
		return d, errors.New("nhi_card: not 12 digits")
	}
	if rec.Household == "" && rec.IssueDate == "" {
		return d, errors.New("needs household or issue_date")
	}
	if rec.Household != "" {
		if !householdPattern.MatchString(rec.Household) {
			return d, errors.New("household: not a capital letter and 7 digits")
		}
		d.household = householdDigest(rec.NHICard, rec.Household)
	}
	if rec.IssueDate != "" || rec.IssueType != "" {
		if _, err := time.Parse(time.DateOnly, rec.IssueDate); err != nil {
			return d, errors.New("issue_date: not a date in the form 2006-01-02")
		}
		typ, ok := issueTypes[rec.IssueType]
		if !ok {
			return d, errors.New("issue_type: not 初發, 補發, 換發, first, reissue or replacement")
		}
		d.issued = issuedDigest(rec.NHICard, rec.IssueDate, typ)
	}
	return d, nil
}

func householdDigest(nhi, household string) [sha256.Size]byte {
	return sha256.Sum256([]byte("household\x00" + nhi + "\x00" + household))
}

func issuedDigest(nhi, date, typ string) [sha256.Size]byte {
	return sha256.Sum256([]byte("issued\x00" + nhi + "\x00" + date + "\x00" + typ))
}

func randomDigest() [sha256.Size]byte {
	var b [sha256.Size]byte
	_, _ = rand.Read(b[:])
	return b
}

func (r *registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "POST a check"})
		return
	}
	if r.tokenHash != nil {
		tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
		h := sha256.Sum256([]byte(tok))
		if subtle.ConstantTimeCompare(h[:], r.tokenHash) != 1 || !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="two-docs registry"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "a valid bearer token is required"})
			return
		}
	}
	var q registryRecord
	dec := json.NewDecoder(http.MaxBytesReader(w, req.Body, maxCheckRequest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&q); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "not a check request"})
		return
	}
	want, err := q.wanted()
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	rec, known := r.byID[q.NationalID]
	if !known {
		rec = r.dummy
	}
	have := rec.household
	if q.Household == "" {
		have = rec.issued
	}
	match := subtle.ConstantTimeCompare(have[:], want[:]) == 1 && known
	writeJSON(w, http.StatusOK, map[string]bool{"match": match})
}

// wanted checks a request, which holds canonical values only, and returns the digest to compare.
func (q registryRecord) wanted() ([sha256.Size]byte, error) {
	var none [sha256.Size]byte
	if nationalid.Valid(q.NationalID) != nil {
		return none, errors.New("national_id: not a valid national ID")
	}
	if !nhiPattern.MatchString(q.NHICard) {
		return none, errors.New("nhi_card: not 12 digits")
	}
	dated := q.IssueDate != "" || q.IssueType != ""
	switch {
	case (q.Household != "") == dated:
		return none, errors.New("household or issue_date with issue_type, one of the two")
	case q.Household != "":
		if !householdPattern.MatchString(q.Household) {
			return none, errors.New("household: not a letter and 7 digits")
		}
		return householdDigest(q.NHICard, q.Household), nil
	}
	if _, err := time.Parse(time.DateOnly, q.IssueDate); err != nil {
		return none, errors.New("issue_date: not a date in the form 2006-01-02")
	}
	if typ, ok := issueTypes[q.IssueType]; !ok || typ != q.IssueType {
		return none, errors.New("issue_type: not first, reissue or replacement")
	}
	return issuedDigest(q.NHICard, q.IssueDate, q.IssueType), nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
