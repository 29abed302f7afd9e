package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mydatafed/mydata/pkg/hubapi"
)

// TestOrgContactEmail: org add sends --contact-email, and org list shows each organisation's address (a
// dash for none) in a column that starts at the same terminal column on every line, Chinese names or not.
func TestOrgContactEmail(t *testing.T) {
	var sent hubapi.Org
	orgs := []hubapi.Org{
		{Code: "moi", Type: "central-agency", Status: "active", NameZh: "內政部", NameEn: "Ministry of the Interior", ContactEmail: "it@moi.gov.tw"},
		{Code: "demobank", Type: "financial-institution", Status: "terminated", NameZh: "示範銀行", NameEn: "Demo Bank"},
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodPost {
			if err := json.NewDecoder(r.Body).Decode(&sent); err != nil {
				t.Error(err)
			}
			w.WriteHeader(http.StatusCreated)
			_ = json.NewEncoder(w).Encode(sent)
			return
		}
		_ = json.NewEncoder(w).Encode(orgs)
	}))
	defer srv.Close()
	var out bytes.Buffer
	a := &adminCtx{client: hubapi.NewClient(srv.URL, srv.Client().Transport.(*http.Transport).TLSClientConfig), out: &out}
	ctx := context.Background()

	if err := a.orgAdd(ctx, []string{"--code", "moi", "--name-zh", "內政部", "--name-en", "Ministry of the Interior", "--type", "central-agency", "--contact-email", "it@moi.gov.tw"}); err != nil {
		t.Fatal(err)
	}
	if sent.ContactEmail != "it@moi.gov.tw" {
		t.Fatalf("org add sent %+v", sent)
	}

	out.Reset()
	if err := a.orgList(ctx); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 3 || !strings.HasSuffix(lines[0], "CONTACT") || !strings.HasSuffix(lines[1], "it@moi.gov.tw") || !strings.HasSuffix(lines[2], "-") {
		t.Fatalf("org list:\n%s", out.String())
	}
	var cols []int
	for _, l := range lines {
		i := strings.LastIndex(l, "  ")
		cols = append(cols, displayWidth(l[:i+2]))
	}
	for i, c := range cols {
		if c != cols[0] {
			t.Fatalf("line %d: the contact starts at column %d, the heading at %d:\n%s", i, c, cols[0], out.String())
		}
	}
}
