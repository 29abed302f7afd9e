package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sampleRecords is the sample registry's records file, which the demo serves.
const sampleRecords = "../../../pkg/docregistry/testdata/sample-registry.json"

func TestRegistry(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reg, err := openRegistry(sampleRecords, tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	// Every demo citizen has documents, so each can try the two-documents login.
	for _, id := range demoCitizens {
		if _, ok := reg.byID[id]; !ok {
			t.Errorf("no record for demo citizen %s", id)
		}
	}
	cases := []struct {
		name, token, body string
		code              int
		match             string
	}{
		{"household", "s3cret", `{"national_id":"B220713459","nhi_card":"000045678901","household":"B0207788"}`, 200, "true"},
		{"issue date", "s3cret", `{"national_id":"B220713459","nhi_card":"000045678901","issue_date":"2009-02-20","issue_type":"first"}`, 200, "true"},
		{"wrong household", "s3cret", `{"national_id":"B220713459","nhi_card":"000045678901","household":"B0207789"}`, 200, "false"},
		{"wrong issue type", "s3cret", `{"national_id":"B220713459","nhi_card":"000045678901","issue_date":"2009-02-20","issue_type":"reissue"}`, 200, "false"},
		{"someone else's card", "s3cret", `{"national_id":"A123456789","nhi_card":"000045678901","household":"B0207788"}`, 200, "false"},
		{"unknown citizen", "s3cret", `{"national_id":"A100000001","nhi_card":"000045678901","household":"B0207788"}`, 200, "false"},
		{"both documents", "s3cret", `{"national_id":"B220713459","nhi_card":"000045678901","household":"B0207788","issue_date":"2009-02-20","issue_type":"first"}`, 400, ""},
		{"not canonical", "s3cret", `{"national_id":"B220713459","nhi_card":"0000-4567-8901","household":"B0207788"}`, 400, ""},
		{"Chinese issue type in a request", "s3cret", `{"national_id":"B220713459","nhi_card":"000045678901","issue_date":"2009-02-20","issue_type":"初發"}`, 400, ""},
		{"no token", "", `{"national_id":"B220713459","nhi_card":"000045678901","household":"B0207788"}`, 401, ""},
		{"wrong token", "guess", `{"national_id":"B220713459","nhi_card":"000045678901","household":"B0207788"}`, 401, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", "/", strings.NewReader(c.body))
			req.Header.Set("Content-Type", "application/json")
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			rec := httptest.NewRecorder()
			reg.ServeHTTP(rec, req)
			if rec.Code != c.code {
				t.Fatalf("status %d, want %d: %s", rec.Code, c.code, rec.Body)
			}
			if c.match != "" && strings.TrimSpace(rec.Body.String()) != `{"match":`+c.match+`}` {
				t.Errorf("answer %s, want match %s", rec.Body, c.match)
			}
		})
	}
	rec := httptest.NewRecorder()
	reg.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", rec.Code)
	}
}

func TestRegistryRefusesBadRecords(t *testing.T) {
	for name, body := range map[string]string{
		"bad ID":          `[{"national_id":"A123456780","nhi_card":"000012345678","household":"D0012345"}]`,
		"no second doc":   `[{"national_id":"A123456789","nhi_card":"000012345678"}]`,
		"bad issue type":  `[{"national_id":"A123456789","nhi_card":"000012345678","issue_date":"2019-03-05","issue_type":"x"}]`,
		"duplicate":       `[{"national_id":"A123456789","nhi_card":"000012345678","household":"D0012345"},{"national_id":"A123456789","nhi_card":"000012345678","household":"D0012345"}]`,
		"unknown field":   `[{"national_id":"A123456789","nhi_card":"000012345678","household":"D0012345","name":"x"}]`,
		"short NHI card":  `[{"national_id":"A123456789","nhi_card":"12345678","household":"D0012345"}]`,
		"lower household": `[{"national_id":"A123456789","nhi_card":"000012345678","household":"d0012345"}]`,
	} {
		path := filepath.Join(t.TempDir(), "records.json")
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := openRegistry(path, ""); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "A123456789") {
			t.Errorf("%s: the error names the national ID: %v", name, err)
		}
	}
}
