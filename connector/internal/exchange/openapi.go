package exchange

import (
	_ "embed"
	"net/http"
)

// OpenAPI is the OpenAPI 3.1 document of the local API, served at GET /v1/openapi.yaml. A test holds it
// and the routes NewAPI registers to each other, both ways, and validates real answers against it.
//
//go:embed openapi.yaml
var OpenAPI []byte

// openAPI serves the document.
func (a *API) openAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	w.Write(OpenAPI)
}
