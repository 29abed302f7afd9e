// Package docregistry is the document registry of the two-documents login: the wire format of the check
// the hub's twodocs client sends (Request, Response), and a sample registry that answers it (Registry),
// an http.Handler serving records loaded from a JSON or CSV file. The sample stands in, in the demo and in
// tests, for the household registration and NHI systems the real platform asks; it holds synthetic data
// only. Like a real one it says only "match" or "no match", the same for an unknown national ID, compares
// in constant time, wants a bearer token when one is configured, and logs nothing.
package docregistry

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/mydatafed/mydata/pkg/strictjson"
)

// Record is one citizen's documents as the file holds them. Household, or IssueDate with IssueType, or
// both, must be set. Values are in the canonical form of a Request, except that the issue type may also be
// written as on the card: 初發, 補發 or 換發 (or 初領, 補領, 換領).
type Record struct {
	NationalID string `json:"national_id"`
	NHICard    string `json:"nhi_card"`
	Household  string `json:"household,omitempty"`
	IssueDate  string `json:"issue_date,omitempty"`
	IssueType  string `json:"issue_type,omitempty"`
}

// columns are the CSV header names, the same as the JSON ones.
var columns = []string{"national_id", "nhi_card", "household", "issue_date", "issue_type"}

// Load reads records from a .json file (an array of objects) or a .csv file (a header row naming the
// columns, in any order; national_id and nhi_card are required; lines starting with # are comments).
func Load(path string) ([]Record, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json":
		var recs []Record
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&recs); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if dec.More() {
			return nil, fmt.Errorf("%s: trailing data after the array", path)
		}
		return recs, nil
	case ".csv":
		recs, err := loadCSV(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return recs, nil
	}
	return nil, fmt.Errorf("%s: want a .json or .csv file", path)
}

func loadCSV(data []byte) ([]Record, error) {
	r := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(data, []byte("\uFEFF")))) // spreadsheets add a BOM
	r.Comment = '#'
	r.TrimLeadingSpace = true
	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("header row: %w", err)
	}
	idx := map[string]int{}
	for i, h := range header {
		h = strings.TrimSpace(h)
		known := false
		for _, c := range columns {
			known = known || c == h
		}
		if !known {
			return nil, fmt.Errorf("header row: unknown column %q (want %s)", h, strings.Join(columns, ", "))
		}
		if _, dup := idx[h]; dup {
			return nil, fmt.Errorf("header row: column %q twice", h)
		}
		idx[h] = i
	}
	for _, c := range columns[:2] {
		if _, ok := idx[c]; !ok {
			return nil, fmt.Errorf("header row: no %s column", c)
		}
	}
	var recs []Record
	for {
		row, err := r.Read()
		if errors.Is(err, io.EOF) {
			return recs, nil
		}
		if err != nil {
			return nil, err
		}
		get := func(c string) string {
			if i, ok := idx[c]; ok {
				return strings.TrimSpace(row[i])
			}
			return ""
		}
		recs = append(recs, Record{get("national_id"), get("nhi_card"), get("household"), get("issue_date"), get("issue_type")})
	}
}

// Registry answers checks. Build it with New or Open.
type Registry struct {
	byID      map[string]digests
	dummy     digests // compared against when the ID is unknown, so that takes as long as a mismatch
	tokenHash []byte  // nil: no token wanted
}

// digests are what a check compares: one per kind of second document, random when the record lacks it.
type digests struct {
	household, issued [sha256.Size]byte
}

func householdDigest(nhi, household string) [sha256.Size]byte {
	return sha256.Sum256([]byte("household\x00" + nhi + "\x00" + household))
}

func issuedDigest(nhi, date, typ string) [sha256.Size]byte {
	return sha256.Sum256([]byte("issued\x00" + nhi + "\x00" + date + "\x00" + typ))
}

// issueTypeNames are the names of the issue types a record may use besides the protocol's own.
var issueTypeNames = map[string]string{
	"初發": IssueFirst, "初領": IssueFirst,
	"補發": IssueReissue, "補領": IssueReissue,
	"換發": IssueReplacement, "換領": IssueReplacement,
}

func random() [sha256.Size]byte {
	var b [sha256.Size]byte
	rand.Read(b[:])
	return b
}

// New checks the records and builds the registry. token is the bearer token callers must send; empty
// means none is wanted. Errors name a record by its position, not by its national ID.
func New(records []Record, token string) (*Registry, error) {
	r := &Registry{byID: make(map[string]digests, len(records)), dummy: digests{random(), random()}}
	if token != "" {
		h := sha256.Sum256([]byte(token))
		r.tokenHash = h[:]
	}
	for i, rec := range records {
		d, err := digest(rec)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", i+1, err)
		}
		if _, dup := r.byID[rec.NationalID]; dup {
			return nil, fmt.Errorf("record %d: the national ID of an earlier record", i+1)
		}
		r.byID[rec.NationalID] = d
	}
	return r, nil
}

// digest checks a record as the two requests it can answer, and returns what they compare.
func digest(rec Record) (digests, error) {
	d := digests{random(), random()}
	if rec.Household == "" && rec.IssueDate == "" {
		return d, errors.New("needs household or issue_date")
	}
	if rec.Household != "" {
		q := Request{NationalID: rec.NationalID, NHICard: rec.NHICard, Household: rec.Household}
		if err := q.Validate(); err != nil {
			return d, err
		}
		d.household = householdDigest(q.NHICard, q.Household)
	}
	if rec.IssueDate != "" || rec.IssueType != "" {
		typ := rec.IssueType
		if name, ok := issueTypeNames[typ]; ok {
			typ = name
		}
		q := Request{NationalID: rec.NationalID, NHICard: rec.NHICard, IssueDate: rec.IssueDate, IssueType: typ}
		if err := q.Validate(); err != nil {
			return d, err
		}
		d.issued = issuedDigest(q.NHICard, q.IssueDate, q.IssueType)
	}
	return d, nil
}

// Open loads recordsFile and, when tokenFile is not empty, the bearer token from it.
func Open(recordsFile, tokenFile string) (*Registry, error) {
	recs, err := Load(recordsFile)
	if err != nil {
		return nil, err
	}
	token := ""
	if tokenFile != "" {
		data, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, err
		}
		if token = strings.TrimSpace(string(data)); token == "" {
			return nil, fmt.Errorf("%s is empty", tokenFile)
		}
	}
	return New(recs, token)
}

// Len is the number of records.
func (r *Registry) Len() int { return len(r.byID) }

// ServeHTTP answers a POSTed Request with a Response; a request that is not one is 400, a missing or
// wrong token 401.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "POST a check"})
		return
	}
	if r.tokenHash != nil {
		tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
		h := sha256.Sum256([]byte(tok))
		if subtle.ConstantTimeCompare(h[:], r.tokenHash)&boolInt(ok) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="two-docs registry"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "a valid bearer token is required"})
			return
		}
	}
	var q Request
	if err := strictjson.Decode(http.MaxBytesReader(w, req.Body, MaxRequest), MaxRequest, &q); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "not a check request"})
		return
	}
	if err := q.Validate(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	want := householdDigest(q.NHICard, q.Household)
	if q.Household == "" {
		want = issuedDigest(q.NHICard, q.IssueDate, q.IssueType)
	}
	rec, known := r.byID[q.NationalID]
	if !known {
		rec = r.dummy
	}
	have := rec.household
	if q.Household == "" {
		have = rec.issued
	}
	match := subtle.ConstantTimeCompare(have[:], want[:])&boolInt(known) == 1
	writeJSON(w, http.StatusOK, Response{Match: &match})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
