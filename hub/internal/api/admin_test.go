package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mydatafed/mydata/pkg/hubapi"
)

// TestOrgContactEmail: the org API shows an organisation's contact address, and refuses one that is not
// a plain address before anything is proposed, as it refuses an application's; an application's org
// carrying one of its own is refused rather than dropped in silence.
func TestOrgContactEmail(t *testing.T) {
	s := testServer(t)
	w := httptest.NewRecorder()
	s.listOrgs(w, httptest.NewRequest(http.MethodGet, hubapi.PathOrgs, nil))
	var orgs []hubapi.Org
	if err := json.Unmarshal(w.Body.Bytes(), &orgs); err != nil || len(orgs) != 1 || orgs[0].ContactEmail != "it@nccu.edu.tw" {
		t.Fatalf("GET %s: %d %s", hubapi.PathOrgs, w.Code, w.Body)
	}
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		body    string
		msg     string
	}{
		{"org add, a display name", s.addOrg,
			`{"code":"fia","name_zh":"財政資訊中心","name_en":"FIA","type":"central-agency","contact_email":"FIA <it@fia.gov.tw>"}`, "contact_email"},
		{"org add, two addresses", s.addOrg,
			`{"code":"fia","name_zh":"財政資訊中心","name_en":"FIA","type":"central-agency","contact_email":"a@fia.gov.tw, b@fia.gov.tw"}`, "contact_email"},
		{"an application's org with its own", s.submitApplication,
			`{"kind":"org","org":{"code":"fia","name_zh":"財政資訊中心","name_en":"FIA","type":"central-agency","contact_email":"it@fia.gov.tw"}}`, "org.contact_email"},
	} {
		w := httptest.NewRecorder()
		tc.handler(w, httptest.NewRequest(http.MethodPost, hubapi.PathOrgs, strings.NewReader(tc.body)))
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), tc.msg) {
			t.Errorf("%s: %d %s, want 400 naming %s", tc.name, w.Code, w.Body, tc.msg)
		}
	}
}
