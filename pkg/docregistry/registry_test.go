package docregistry

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mydatafed/mydata/pkg/nationalid"
)

const sample = "testdata/sample-registry.json"

// TestSampleFile checks the demo's records: valid national IDs, the demo's five citizens, and the same
// household numbers as the demo's household data where that is present.
func TestSampleFile(t *testing.T) {
	recs, err := Load(sample)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(recs, ""); err != nil {
		t.Fatal(err)
	}
	byID := map[string]Record{}
	for _, r := range recs {
		if err := nationalid.Valid(r.NationalID); err != nil {
			t.Errorf("%s: %v", r.NationalID, err)
		}
		byID[r.NationalID] = r
	}
	for _, id := range []string{"A123456789", "B220713459", "F132604985", "E225810349", "H120945179"} {
		if _, ok := byID[id]; !ok {
			t.Errorf("the demo citizen %s has no record", id)
		}
	}
	files, _ := filepath.Glob("../../packaging/demo/data/moi/household/*.json")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var hh struct {
			No      string `json:"household_no"`
			Members []struct {
				ID string `json:"national_id"`
			} `json:"members"`
		}
		if err := json.Unmarshal(data, &hh); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, m := range hh.Members {
			if r, ok := byID[m.ID]; ok && r.Household != hh.No {
				t.Errorf("%s: household %s here, %s in %s", m.ID, r.Household, hh.No, f)
			}
		}
	}
}

func TestLoadCSV(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content string
		want          int    // records
		err           string // part of the error, from Load or New
	}{
		{"good", "national_id,nhi_card,household,issue_date,issue_type\n" +
			"A123456789,000012345678,D0012345,2019-03-05,補發\n" +
			"# a comment\n" +
			"B220713459, 000045678901 ,B0207788,2009-02-20,初發\n" +
			"A102408158,000034567890,D0012345,,\n", 3, ""},
		{"columns in another order, with a BOM", "\uFEFFhousehold,nhi_card,national_id\nD0012345,000012345678,A123456789\n", 1, ""},
		{"unknown column", "national_id,nhi_card,name\nA123456789,000012345678,王大明\n", 0, "unknown column"},
		{"column twice", "national_id,nhi_card,nhi_card\n", 0, "twice"},
		{"no nhi_card column", "national_id,household\nA123456789,D0012345\n", 0, "no nhi_card column"},
		{"short row", "national_id,nhi_card,household\nA123456789,000012345678\n", 0, "wrong number of fields"},
		{"empty", "", 0, "header row"},
		{"bad national ID", "national_id,nhi_card,household\nA123456788,000012345678,D0012345\n", 0, "record 1: national_id"},
		{"bad NHI card", "national_id,nhi_card,household\nA123456789,12345678,D0012345\n", 0, "record 1: nhi_card"},
		{"bad household", "national_id,nhi_card,household\nA123456789,000012345678,D001234\n", 0, "record 1: household"},
		{"no second document", "national_id,nhi_card\nA123456789,000012345678\n", 0, "needs household or issue_date"},
		{"date without type", "national_id,nhi_card,issue_date\nA123456789,000012345678,2019-03-05\n", 0, "issue_type"},
		{"type without date", "national_id,nhi_card,household,issue_type\nA123456789,000012345678,D0012345,初發\n", 0, "issue_date"},
		{"bad date", "national_id,nhi_card,issue_date,issue_type\nA123456789,000012345678,2019-02-30,初發\n", 0, "issue_date"},
		{"ROC date", "national_id,nhi_card,issue_date,issue_type\nA123456789,000012345678,108/03/05,補發\n", 0, "issue_date"},
		{"NHI card in groups", "national_id,nhi_card,household\nA123456789,0000 1234 5678,D0012345\n", 0, "record 1: nhi_card"},
		{"lower-case household", "national_id,nhi_card,household\nA123456789,000012345678,d0012345\n", 0, "record 1: household"},
		{"bad issue type", "national_id,nhi_card,issue_date,issue_type\nA123456789,000012345678,2019-03-05,renewal\n", 0, "issue_type"},
		{"duplicate", "national_id,nhi_card,household\nA123456789,000012345678,D0012345\nA123456789,000012345678,D0012345\n", 0, "record 2: the national ID of an earlier record"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".csv")
			if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			reg, err := Open(p, "")
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Open = %v, want %q", err, tt.err)
				}
				if strings.Contains(err.Error(), "A123456789") {
					t.Fatalf("error %q names the citizen", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if reg.Len() != tt.want {
				t.Fatalf("%d records, want %d", reg.Len(), tt.want)
			}
		})
	}
}

func TestLoadOther(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"unknown-field.json": `[{"national_id":"A123456789","nhi_card":"000012345678","household":"D0012345","name":"王大明"}]`,
		"trailing.json":      `[] []`,
		"object.json":        `{"national_id":"A123456789"}`,
		"records.txt":        `national_id,nhi_card`,
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		if _, err := Load(p); err == nil {
			t.Errorf("%s loaded", name)
		}
	}
	if _, err := Open(filepath.Join(dir, "missing.json"), ""); err == nil {
		t.Error("a missing file opened")
	}
	empty := filepath.Join(dir, "empty-token")
	os.WriteFile(empty, []byte("\n"), 0o600)
	if _, err := Open(sample, empty); err == nil {
		t.Error("an empty token file accepted")
	}
}

func TestServeHTTP(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("tok\n"), 0o600)
	reg, err := Open(sample, tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	const good = `{"national_id":"A123456789","nhi_card":"000012345678","household":"D0012345"}`
	tests := []struct {
		name, method, auth, body string
		code                     int
		match                    string // "true", "false" or "" for no answer
	}{
		{"household", "POST", "Bearer tok", good, 200, "true"},
		{"issue date", "POST", "Bearer tok", `{"national_id":"A123456789","nhi_card":"000012345678","issue_date":"2019-03-05","issue_type":"reissue"}`, 200, "true"},
		{"wrong type", "POST", "Bearer tok", `{"national_id":"A123456789","nhi_card":"000012345678","issue_date":"2019-03-05","issue_type":"first"}`, 200, "false"},
		{"wrong household", "POST", "Bearer tok", `{"national_id":"A123456789","nhi_card":"000012345678","household":"D0012346"}`, 200, "false"},
		{"unknown citizen", "POST", "Bearer tok", `{"national_id":"F131104093","nhi_card":"000012345678","household":"D0012345"}`, 200, "false"},
		{"no token", "POST", "", good, 401, ""},
		{"wrong token", "POST", "Bearer tok2", good, 401, ""},
		{"token not bearer", "POST", "Basic tok", good, 401, ""},
		{"GET", "GET", "Bearer tok", "", 405, ""},
		{"garbage", "POST", "Bearer tok", `match me`, 400, ""},
		{"unknown field", "POST", "Bearer tok", `{"national_id":"A123456789","nhi_card":"000012345678","household":"D0012345","x":1}`, 400, ""},
		{"invalid national ID", "POST", "Bearer tok", `{"national_id":"A123456788","nhi_card":"000012345678","household":"D0012345"}`, 400, ""},
		{"NHI card not canonical", "POST", "Bearer tok", `{"national_id":"A123456789","nhi_card":"0000 1234 5678","household":"D0012345"}`, 400, ""},
		{"household not canonical", "POST", "Bearer tok", `{"national_id":"A123456789","nhi_card":"000012345678","household":"d0012345"}`, 400, ""},
		{"both documents", "POST", "Bearer tok", `{"national_id":"A123456789","nhi_card":"000012345678","household":"D0012345","issue_date":"2019-03-05","issue_type":"reissue"}`, 400, ""},
		{"neither document", "POST", "Bearer tok", `{"national_id":"A123456789","nhi_card":"000012345678"}`, 400, ""},
		{"ROC date", "POST", "Bearer tok", `{"national_id":"A123456789","nhi_card":"000012345678","issue_date":"108/03/05","issue_type":"reissue"}`, 400, ""},
		{"Chinese type", "POST", "Bearer tok", `{"national_id":"A123456789","nhi_card":"000012345678","issue_date":"2019-03-05","issue_type":"補發"}`, 400, ""},
		{"oversized", "POST", "Bearer tok", `{"national_id":"` + strings.Repeat("A", 10000) + `"}`, 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "/check", strings.NewReader(tt.body))
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			rec := httptest.NewRecorder()
			reg.ServeHTTP(rec, req)
			if rec.Code != tt.code {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.code, rec.Body)
			}
			if rec.Header().Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type %q", rec.Header().Get("Content-Type"))
			}
			if tt.code == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			body := rec.Body.String()
			if strings.Contains(body, "A123456789") || strings.Contains(body, "000012345678") {
				t.Fatalf("answer %q echoes the request", body)
			}
			if tt.match != "" && strings.TrimSpace(body) != `{"match":`+tt.match+`}` {
				t.Fatalf("answer %q, want match %s", body, tt.match)
			}
		})
	}
}
