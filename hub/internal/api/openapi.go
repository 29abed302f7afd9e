package api

import (
	_ "embed"
	"net/http"
)

// OpenAPI is the OpenAPI 3.1 document of the connector-facing part of the API, served at GET
// /v1/openapi.yaml without a client certificate. A test holds it and the routes Handler registers for
// connectors to each other, both ways; an end-to-end test validates real answers against it.
//
//go:embed openapi.yaml
var OpenAPI []byte

// PathOpenAPI is where the document is served.
const PathOpenAPI = "/v1/openapi.yaml"

func (s *Server) openAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	w.Write(OpenAPI)
}
