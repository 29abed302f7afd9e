// Package openapitest holds HTTP servers to their OpenAPI 3.1 documents in tests: a document must load and
// validate as OpenAPI 3.1, its operations are listed for the checks that every route a server registers is
// documented and every documented one registered, and real answers are validated against it (status,
// headers, body), error answers included.
package openapitest

import (
	"bytes"
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// Doc is a loaded, valid document.
type Doc struct {
	doc    *openapi3.T
	router routers.Router
}

// Load parses and validates data, an OpenAPI 3.1 document in YAML or JSON.
func Load(t testing.TB, data []byte) *Doc {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(data)
	if err != nil {
		t.Fatalf("load the OpenAPI document: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		t.Fatalf("the document is OpenAPI %s, not 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the OpenAPI document is not valid: %v", err)
	}
	// The servers name the default listen address; the tests' servers run elsewhere, so match on paths.
	doc.Servers = nil
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &Doc{doc: doc, router: router}
}

// Operations lists the document's operations as ServeMux patterns, "METHOD /path/{param}", sorted.
func (d *Doc) Operations() []string {
	var ops []string
	for path, item := range d.doc.Paths.Map() {
		for method := range item.Operations() {
			ops = append(ops, method+" "+path)
		}
	}
	slices.Sort(ops)
	return ops
}

// Check validates an answer to req: its status must be documented for the operation req matches, and its
// headers (trailers included) and body must fit the document.
func (d *Doc) Check(t testing.TB, req *http.Request, status int, header http.Header, body []byte) {
	t.Helper()
	if err := d.check(req, status, header, body); err != nil {
		t.Errorf("%s %s answered %d, which the OpenAPI document does not allow: %v\nbody: %.600s", req.Method, req.URL.Path, status, err, body)
	}
}

func (d *Doc) check(req *http.Request, status int, header http.Header, body []byte) error {
	route, params, err := d.router.FindRoute(req)
	if err != nil {
		return err
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	}
	in.SetBodyBytes(body)
	return openapi3filter.ValidateResponse(context.Background(), in)
}

// Do sends req with client, reads the whole answer and checks it; it returns the answer, its body read.
func (d *Doc) Do(t testing.TB, client *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	var reqBody []byte
	if req.Body != nil {
		reqBody, _ = io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read the answer: %v", req.Method, req.URL, err)
	}
	header := resp.Header.Clone()
	for k, v := range resp.Trailer {
		header[k] = v
	}
	req.Body = io.NopCloser(bytes.NewReader(reqBody))
	d.Check(t, req, resp.StatusCode, header, body)
	return resp, body
}

// Route is a route a Go source file registers on a ServeMux.
type Route struct {
	// Pattern is the ServeMux pattern, "METHOD /path", its constants resolved; empty if it could not be.
	Pattern string
	// Expr is the pattern's expression as written.
	Expr string
	// Line is where it is registered.
	Line int
}

// Routes parses the Go file at path and returns the patterns of every mux.Handle and mux.HandleFunc call
// in the function named fn (a receiver's method or a plain function). A pattern that is a string literal,
// or a sum of string literals and the names in consts (e.g. "hubapi.PathEnroll", which gives their
// values), is resolved; for any other the Route has only Expr, and the caller must decide, so that a new
// kind of registration is not silently skipped.
func Routes(t testing.TB, path, fn string, consts map[string]string) []Route {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var routes []Route
	found := false
	for _, decl := range f.Decls {
		fd, ok := decl.(*ast.FuncDecl)
		if !ok || fd.Name.Name != fn || fd.Body == nil {
			continue
		}
		found = true
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) != 2 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc" {
				return true
			}
			r := Route{Expr: types.ExprString(call.Args[0]), Line: fset.Position(call.Pos()).Line}
			if pattern, ok := eval(call.Args[0], consts); ok {
				r.Pattern = pattern
			}
			routes = append(routes, r)
			return true
		})
	}
	if !found {
		t.Fatalf("%s has no function %s", path, fn)
	}
	return routes
}

func eval(e ast.Expr, consts map[string]string) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(e.Value)
		return s, err == nil
	case *ast.BinaryExpr:
		if e.Op != token.ADD {
			return "", false
		}
		x, ok1 := eval(e.X, consts)
		y, ok2 := eval(e.Y, consts)
		return x + y, ok1 && ok2
	case *ast.SelectorExpr:
		if id, ok := e.X.(*ast.Ident); ok {
			v, ok := consts[id.Name+"."+e.Sel.Name]
			return v, ok
		}
	case *ast.Ident:
		v, ok := consts[e.Name]
		return v, ok
	case *ast.ParenExpr:
		return eval(e.X, consts)
	}
	return "", false
}
