package api

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/spiffetest"
)

const testTD = "mydata.test"

// testServer is an API server over a real state with a few operators, without a cluster: enough for
// everything that decides before a command is proposed.
func testServer(t *testing.T) *Server {
	t.Helper()
	f, err := fsm.Open(filepath.Join(t.TempDir(), "state.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	now := time.Now()
	cmds := []fsm.Command{
		&fsm.OrgAdd{Code: "nccu", NameZh: "國立政治大學", NameEn: "National Chengchi University", Type: "university", ContactEmail: "it@nccu.edu.tw", Now: now},
		&fsm.OperatorAdd{Name: "fa", Roles: []string{fsm.RoleFederationAdmin}, Now: now},
		&fsm.OperatorAdd{Name: "aud", Roles: []string{fsm.RoleAuditor}, Now: now},
		&fsm.OperatorAdd{Name: "rev", Roles: []string{"reviewer:education"}, Now: now},
		&fsm.OperatorAdd{Name: "app", Roles: []string{"applicant:nccu"}, Now: now},
		&fsm.OperatorAdd{Name: "off", Roles: []string{fsm.RoleFederationAdmin}, Now: now},
		&fsm.OperatorStatus{Name: "off", Status: fsm.OperatorDisabled, Now: now},
	}
	for i, c := range cmds {
		data, err := fsm.Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		if r := f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: data}).(fsm.Result); r.Code != fsm.OK {
			t.Fatalf("%T: %+v", c, r)
		}
	}
	s := &Server{cfg: Config{State: f, NodeID: "hub-1"}, log: slog.New(slog.DiscardHandler), now: time.Now}
	s.td = spiffetest.New(t, testTD).TD
	return s
}

// as makes a request that arrives with the SVID of id (the TLS handshake has checked its chain).
func as(t *testing.T, ca *spiffetest.CA, id, method, path string) *http.Request {
	r := httptest.NewRequest(method, path, strings.NewReader("{}"))
	svid := ca.SVID(t, "spiffe://"+testTD+id, time.Hour)
	r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{svid.Certificates[0]}}
	return r
}

func TestRoles(t *testing.T) {
	s := testServer(t)
	ca := spiffetest.New(t, testTD)
	// The real route table, with every handler replaced by one that only says it was reached.
	mux := http.NewServeMux()
	for _, rt := range s.adminRoutes() {
		mux.Handle(rt.method+" "+rt.path, s.allow(rt.access, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Actor", actorOf(r).SPIFFEID+" "+strings.Join(actorOf(r).Roles, ","))
			w.WriteHeader(http.StatusTeapot)
		}))
	}
	const reached = http.StatusTeapot
	cases := []struct {
		who, method, path string
		want              int
		msg               string
	}{
		{"/operator/admin", "POST", hubapi.PathOrgs, reached, ""},
		{"/operator/admin", "GET", hubapi.PathBackup, reached, ""},
		{"/operator/fa", "POST", hubapi.PathOrgs, reached, ""},
		{"/operator/fa", "POST", PathOperators + "/aud/tokens", reached, ""},
		{"/operator/fa", "POST", PathAdminKeyring, reached, ""},
		{"/operator/aud", "GET", PathAudit, reached, ""},
		{"/operator/aud", "GET", PathAuditVerify, reached, ""},
		{"/operator/aud", "GET", hubapi.PathConnectors, reached, ""},
		{"/operator/aud", "GET", PathOperators, reached, ""},
		{"/operator/aud", "POST", hubapi.PathOrgs, http.StatusForbidden, "needs the role federation-admin"},
		{"/operator/aud", "GET", hubapi.PathBackup, http.StatusForbidden, "needs the role federation-admin"},
		{"/operator/aud", "POST", hubapi.PathConnectors + "/moi/dp/status", http.StatusForbidden, "needs the role federation-admin"},
		{"/operator/rev", "GET", hubapi.PathServices, reached, ""},
		{"/operator/rev", "GET", PathAudit, http.StatusForbidden, "needs one of the roles federation-admin, auditor"},
		{"/operator/rev", "POST", hubapi.PathDatasets, http.StatusForbidden, "needs the role federation-admin"},
		{"/operator/app", "GET", hubapi.PathDatasets, reached, ""},
		{"/operator/app", "GET", hubapi.PathOrgs, reached, ""},
		{"/operator/app", "POST", hubapi.PathOrgs, http.StatusForbidden, "operator spiffe://mydata.test/operator/app (roles applicant:nccu) may not POST /v1/admin/orgs: it needs the role federation-admin"},
		{"/operator/app", "GET", hubapi.PathCertificates, http.StatusForbidden, "needs one of the roles federation-admin, auditor"},
		{"/operator/app", "POST", PathOperators, http.StatusForbidden, "needs the role federation-admin"},
		{"/operator/off", "GET", hubapi.PathOrgs, http.StatusForbidden, `operator "off" is disabled`},
		{"/operator/ghost", "GET", hubapi.PathOrgs, http.StatusForbidden, `"ghost" is not registered`},
		{"/org/nccu/connector/sp", "GET", hubapi.PathOrgs, http.StatusForbidden, "is a connector; this endpoint is for a operator"},
		{"/hub/hub-2", "POST", hubapi.PathOrgs, http.StatusForbidden, "is a hub"},
	}
	for _, c := range cases {
		t.Run(c.who+" "+c.method+" "+c.path, func(t *testing.T) {
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, as(t, ca, c.who, c.method, c.path))
			var e hubapi.Error
			_ = json.Unmarshal(w.Body.Bytes(), &e)
			if w.Code != c.want || !strings.Contains(e.Message, c.msg) {
				t.Fatalf("got %d %s, want %d with %q", w.Code, w.Body.String(), c.want, c.msg)
			}
			if w.Code == reached && !strings.HasPrefix(w.Header().Get("X-Actor"), "spiffe://"+testTD+c.who+" ") {
				t.Fatalf("actor %q", w.Header().Get("X-Actor"))
			}
		})
	}
	// A request without a certificate never reaches the role check.
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest("GET", hubapi.PathOrgs, nil))
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("no certificate: %d", w.Code)
	}
}

// TestEveryAdminRouteNeedsARole holds the table to its rule: only the federation administrator changes
// anything, but for filing an application (an applicant, for its organisation) and an authority's review
// (a reviewer, of its sector), whose scope apply checks; and an auditor reads everything but the backup.
func TestEveryAdminRouteNeedsARole(t *testing.T) {
	s := testServer(t)
	scoped := map[string][]string{
		"POST " + PathApplications:                  accessApply,
		"POST " + PathApplications + "/{id}/review": accessReview,
	}
	for _, rt := range s.adminRoutes() {
		if len(rt.access) == 0 {
			t.Errorf("%s %s has no roles", rt.method, rt.path)
		}
		if want, ok := scoped[rt.method+" "+rt.path]; ok {
			if !slices.Equal(rt.access, want) {
				t.Errorf("%s %s is open to %v, want %v", rt.method, rt.path, rt.access, want)
			}
			continue
		}
		if rt.method != "GET" && !slices.Equal(rt.access, accessAdmin) {
			t.Errorf("%s %s changes state but is open to %v", rt.method, rt.path, rt.access)
		}
		if rt.method == "GET" && rt.path != hubapi.PathBackup && !slices.Contains(rt.access, fsm.RoleAuditor) {
			t.Errorf("%s %s is closed to the auditor", rt.method, rt.path)
		}
	}
}

// TestRolesThroughTheRealHandler: a read the auditor may do answers, and a write refused for its role is
// refused before anything is proposed.
func TestRolesThroughTheRealHandler(t *testing.T) {
	s := testServer(t)
	ca := spiffetest.New(t, testTD)
	h := s.Handler()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, as(t, ca, "/operator/aud", "GET", PathOperators))
	var ops []fsm.Operator
	if err := json.Unmarshal(w.Body.Bytes(), &ops); w.Code != http.StatusOK || err != nil || len(ops) != 5 {
		t.Fatalf("list operators: %d %s", w.Code, w.Body.String())
	}
	if ops[0].Name != "app" || ops[0].ActsFor != "nccu" || ops[0].SPIFFEID != "spiffe://mydata.test/operator/app" {
		t.Fatalf("%+v", ops[0])
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, as(t, ca, "/operator/app", "POST", hubapi.PathOrgs))
	body, _ := io.ReadAll(w.Body)
	if w.Code != http.StatusForbidden || !strings.Contains(string(body), "federation-admin") {
		t.Fatalf("applicant adds an org: %d %s", w.Code, body)
	}
}
