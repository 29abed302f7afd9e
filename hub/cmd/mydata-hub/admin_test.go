package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/mydatafed/mydata/hub/internal/api"
	"github.com/mydatafed/mydata/hub/internal/fsm"
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

// TestApplicationSubmitDefinitions: a service's or a dataset's application, for a stage or a change, reads
// the flags of service add or dataset add, and needs --stage or --effective-on besides their own.
func TestApplicationSubmitDefinitions(t *testing.T) {
	var sent api.ApplicationRequest
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sent = api.ApplicationRequest{}
		if err := json.NewDecoder(r.Body).Decode(&sent); err != nil {
			t.Error(err)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(api.ApplicationView{Application: fsm.Application{ID: "app-1", Kind: sent.Kind, Status: fsm.AppAdminReview}})
	}))
	defer srv.Close()
	a := &adminCtx{client: hubapi.NewClient(srv.URL, srv.Client().Transport.(*http.Transport).TLSClientConfig), out: io.Discard}
	service := []string{"--id", "bank.card", "--name-zh", "卡", "--name-en", "Card", "--sp", "bank/sp1", "--datasets", "moi.household",
		"--purpose", "p", "--terms", "t", "--terms-version", "2", "--redirect-uri", "https://b.example/cb"}
	dataset := []string{"--id", "moi.household", "--name-zh", "戶籍", "--name-en", "Household", "--dp", "moi/dp1,dp2"}
	with := func(head []string, tail ...string) []string { return append(slices.Clone(head), tail...) }
	for _, tc := range []struct {
		name string
		args []string
		err  string
		want func(api.ApplicationRequest) bool
	}{
		{"change service", with([]string{"change", "--effective-on", "2027-01-20"}, service...), "", func(r api.ApplicationRequest) bool {
			return r.On == fsm.OnService && r.Target == "bank.card" && r.EffectiveOn == "2027-01-20" && r.Service.SPConnector == "sp1" && r.Dataset == nil
		}},
		{"change service, by name", with([]string{"change", "service", "--effective-on", "2027-01-20"}, service...), "", func(r api.ApplicationRequest) bool {
			return r.On == fsm.OnService && r.Target == "bank.card" && r.Service.Terms == "t"
		}},
		{"change dataset", with([]string{"change", "dataset", "--effective-on", "2027-01-20"}, dataset...), "", func(r api.ApplicationRequest) bool {
			return r.On == fsm.OnDataset && r.Target == "moi.household" && slices.Equal(r.Dataset.MoreDPConnectors, []string{"dp2"}) && r.Service == nil
		}},
		{"a service's stage", with([]string{"service", "--stage", "pilot", "--test-subject", "A123456789"}, service...), "", func(r api.ApplicationRequest) bool {
			return r.Kind == fsm.ApplyService && r.Stage == "pilot" && r.Service.ID == "bank.card" && len(r.TestSubjects) == 1 && r.Target == ""
		}},
		{"a dataset's stage", with([]string{"dataset", "--stage", "sandbox"}, dataset...), "", func(r api.ApplicationRequest) bool {
			return r.Kind == fsm.ApplyDataset && r.Stage == "sandbox" && r.Dataset.DPConnector == "dp1"
		}},
		{"change dataset without its day", with([]string{"change", "dataset"}, dataset...), "--effective-on is required", nil},
		{"change service without terms", with([]string{"change", "--effective-on", "2027-01-20"}, service[:len(service)-6]...), "--terms-version is required", nil},
		{"a service without its stage", with([]string{"service"}, service...), "--stage is required", nil},
		{"a dataset without --dp", with([]string{"dataset", "--stage", "sandbox"}, dataset[:6]...), "--dp is required", nil},
	} {
		sent = api.ApplicationRequest{}
		err := a.applicationSubmit(context.Background(), tc.args)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: %v, want %q", tc.name, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != nil && !tc.want(sent):
			t.Errorf("%s: sent %+v", tc.name, sent)
		}
	}
}
