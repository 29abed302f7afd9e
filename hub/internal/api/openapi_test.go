package api

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/openapitest"
)

// notForConnectors are the routes of Handler that openapi.yaml leaves out: operators' and hub nodes'.
var notForConnectors = []string{
	"POST " + PathOperatorEnroll, "POST " + PathOperatorRenew,
	"POST " + PathClusterJoin, "GET " + PathClusterSecrets, "POST " + PathClusterMembers,
	"/", // the JSON 404 for everything else
}

// TestOpenAPIRoutes holds openapi.yaml and the connector-facing routes Handler registers to each other,
// both ways: every route registered in api.go, but the admin, operator and cluster ones, is documented, and
// every documented operation is what the mux routes its path and method to.
func TestOpenAPIRoutes(t *testing.T) {
	doc := openapitest.Load(t, OpenAPI)
	consts := map[string]string{
		"hubapi.PathEnroll": hubapi.PathEnroll, "hubapi.PathBundle": hubapi.PathBundle, "hubapi.PathHealth": hubapi.PathHealth,
		"hubapi.PathRenew": hubapi.PathRenew, "hubapi.PathKeys": hubapi.PathKeys, "hubapi.PathRedeem": hubapi.PathRedeem,
		"hubapi.PathPAR": hubapi.PathPAR, "hubapi.PathReceipts": hubapi.PathReceipts, "hubapi.PathCounterRedeem": hubapi.PathCounterRedeem,
		"hubapi.PathDirectory": hubapi.PathDirectory, "PathOpenAPI": PathOpenAPI,
		"hubapi.PathTicketClaim": hubapi.PathTicketClaim, "hubapi.PathTicketRelease": hubapi.PathTicketRelease,
		"PathOperatorEnroll": PathOperatorEnroll, "PathOperatorRenew": PathOperatorRenew,
		"PathClusterJoin": PathClusterJoin, "PathClusterSecrets": PathClusterSecrets, "PathClusterMembers": PathClusterMembers,
	}
	var registered []string
	for _, r := range openapitest.Routes(t, "api.go", "Handler", consts) {
		switch {
		case r.Expr == `rt.method + " " + rt.path`:
			// adminRoutes: the operators' endpoints.
		case r.Pattern == "":
			t.Fatalf("api.go:%d: route pattern %s cannot be resolved; add its constants to this test", r.Line, r.Expr)
		case !slices.Contains(notForConnectors, r.Pattern):
			registered = append(registered, r.Pattern)
		}
	}
	slices.Sort(registered)
	documented := doc.Operations()
	for _, p := range registered {
		if !slices.Contains(documented, p) {
			t.Errorf("api.go registers %q for connectors, which openapi.yaml does not document (or list it in notForConnectors)", p)
		}
	}
	for _, p := range documented {
		if !slices.Contains(registered, p) {
			t.Errorf("openapi.yaml documents %q, which api.go does not register", p)
		}
	}
	for _, rt := range (&Server{}).adminRoutes() {
		if slices.Contains(documented, rt.method+" "+rt.path) {
			t.Errorf("openapi.yaml documents the admin route %s %s", rt.method, rt.path)
		}
	}

	mux, ok := (&Server{}).Handler().(*http.ServeMux)
	if !ok {
		t.Fatal("Handler is no longer a ServeMux; check the documented routes another way")
	}
	for _, op := range documented {
		method, path, _ := strings.Cut(op, " ")
		if _, pattern := mux.Handler(httptest.NewRequest(method, path, nil)); pattern != op {
			t.Errorf("%s is routed to %q", op, pattern)
		}
	}
}

// TestOpenAPIServed checks the document is served as it is embedded, without a client certificate.
func TestOpenAPIServed(t *testing.T) {
	doc := openapitest.Load(t, OpenAPI)
	srv := httptest.NewServer((&Server{}).Handler())
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+PathOpenAPI, nil)
	if resp, body := doc.Do(t, srv.Client(), req); resp.StatusCode != 200 || string(body) != string(OpenAPI) {
		t.Fatalf("GET %s: %d", PathOpenAPI, resp.StatusCode)
	}
}
