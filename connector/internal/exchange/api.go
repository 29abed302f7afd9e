package exchange

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/nationalid"
	"github.com/mydatafed/mydata/pkg/seal"
	"github.com/mydatafed/mydata/pkg/strictjson"
)

// API is the connector's local HTTP API for the SP's own application.
type API struct {
	m     *Manager
	token []byte
	srv   *http.Server
	log   *slog.Logger
}

// NewAPI makes the API; tokenFile, if set, holds the bearer token callers must send.
func NewAPI(m *Manager, tokenFile string, log *slog.Logger) (*API, error) {
	a := &API{m: m, log: log}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("exchange.bearer_token_file: %w", err)
		}
		a.token = []byte(strings.TrimSpace(string(b)))
		if len(a.token) < 16 {
			return nil, errors.New("exchange.bearer_token_file: the token must be at least 16 characters")
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/exchanges", a.create)
	mux.HandleFunc("POST /v1/exchanges/stream", a.stream)
	mux.HandleFunc("GET /v1/exchanges/{id}", a.get)
	mux.HandleFunc("POST /v1/login-hints", a.loginHint)
	mux.HandleFunc("POST /v1/par", a.par)
	mux.HandleFunc("GET /v1/exchanges/{id}/datasets/{dataset}/content", a.content)
	mux.HandleFunc("GET /v1/openapi.yaml", a.openAPI)
	a.srv = &http.Server{Handler: a.auth(mux), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	return a, nil
}

func (a *API) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.token != nil {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), a.token) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="mydata-connector"`)
				writeError(w, http.StatusUnauthorized, "a valid bearer token is required")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Serve serves on ln until ctx ends.
func (a *API) Serve(ctx context.Context, ln net.Listener) error {
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = a.srv.Shutdown(sctx)
	}()
	if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, hubapi.Error{Message: msg})
}

func (a *API) fail(w http.ResponseWriter, err error) {
	var ae *apiError
	if errors.As(err, &ae) {
		writeError(w, ae.status, ae.msg)
		return
	}
	a.log.Error("exchange failed", "err", err)
	writeError(w, http.StatusInternalServerError, "internal error")
}

func readRequest(r *http.Request) (Request, error) {
	var req Request
	if err := strictjson.Decode(r.Body, 16<<10, &req); err != nil {
		return req, &apiError{http.StatusBadRequest, err.Error()}
	}
	return req, nil
}

// create runs an exchange and answers with every dataset's result, content included.
func (a *API) create(w http.ResponseWriter, r *http.Request) {
	req, err := readRequest(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	ex, err := a.m.Start(r.Context(), req)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ex.Snapshot())
}

func (a *API) get(w http.ResponseWriter, r *http.Request) {
	ex, ok := a.m.Get(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, "no such exchange (finished exchanges are dropped after exchange.keep)")
		return
	}
	writeJSON(w, http.StatusOK, ex.Snapshot())
}

// content serves one dataset's content: from memory, or streamed from its spill file, which is removed
// once read to the end.
func (a *API) content(w http.ResponseWriter, r *http.Request) {
	ex, ok := a.m.Get(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, "no such exchange")
		return
	}
	for _, d := range ex.Snapshot().Datasets {
		if d.Dataset != r.PathValue("dataset") {
			continue
		}
		if d.Status == StatusDelivered && d.read {
			writeError(w, http.StatusGone, fmt.Sprintf("the content of dataset %s was read in full and deleted", d.Dataset))
			return
		}
		if d.Status != StatusDelivered || d.Content == nil && d.file == nil {
			writeError(w, http.StatusConflict, fmt.Sprintf("dataset %s is %s", d.Dataset, d.Status))
			return
		}
		w.Header().Set("Content-Type", d.ContentType)
		w.Header().Set("X-Mydata-SHA256", d.SHA256)
		if d.file == nil {
			w.Write(d.Content)
			return
		}
		a.serveSpilled(w, ex, d)
		return
	}
	writeError(w, http.StatusNotFound, "the exchange has no such dataset")
}

// serveSpilled streams a spill file's content, and removes the file once all of it has gone out.
func (a *API) serveSpilled(w http.ResponseWriter, ex *Exchange, d *Dataset) {
	rd, err := d.file.open()
	if err != nil {
		writeError(w, http.StatusGone, fmt.Sprintf("the content of dataset %s was read in full and deleted", d.Dataset))
		return
	}
	defer rd.Close()
	w.Header().Set("Content-Length", strconv.FormatInt(d.Size, 10))
	n, err := io.Copy(w, rd)
	if err != nil || n != d.Size {
		if err != nil && !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
			a.log.Error("serve spilled content", "exchange", ex.ID, "dataset", d.Dataset, "err", err)
		}
		// Cut short: the client must not take this body as whole, and may ask again.
		panic(http.ErrAbortHandler)
	}
	ex.consumed(d.file)
}

// stream redeems a code and streams one dataset (?dataset=ID) to the caller as it arrives, holding at most
// streamBatch of it; the other datasets are fetched as usual and read with GET. Success is in the trailers
// (X-Mydata-Status: delivered, X-Mydata-SHA256); a failure after the first byte aborts the response, so the
// client never mistakes a cut stream for a whole one.
func (a *API) stream(w http.ResponseWriter, r *http.Request) {
	want := r.URL.Query().Get("dataset")
	if want == "" {
		writeError(w, http.StatusBadRequest, "dataset: give the dataset to stream with ?dataset=ID")
		return
	}
	req, err := readRequest(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	ex, key, err := a.m.redeem(r.Context(), req)
	if err != nil {
		a.fail(w, err)
		return
	}
	// The other datasets wait for a GET as POST /v1/exchanges's do: the large ones in spill files.
	ex.spill = true
	var target *Dataset
	for _, d := range ex.Datasets {
		if d.Dataset == want && d.Status == StatusFetching {
			target = d
		} else if d.Status == StatusFetching {
			go a.m.fetch(context.Background(), ex, d, key, nil)
		}
	}
	if target == nil {
		for _, d := range ex.Datasets {
			if d.Dataset == want {
				w.Header().Set("X-Mydata-Exchange", ex.ID)
				writeError(w, http.StatusConflict, fmt.Sprintf("dataset %s is %s: %s", want, d.Status, d.Reason))
				return
			}
		}
		w.Header().Set("X-Mydata-Exchange", ex.ID)
		writeError(w, http.StatusNotFound, "the consent does not cover dataset "+want)
		return
	}
	w.Header().Set("Trailer", "X-Mydata-Status, X-Mydata-SHA256, X-Mydata-Size")
	w.Header().Set("X-Mydata-Exchange", ex.ID)
	w.Header().Set("Content-Type", target.ContentType)
	sink := newStreamWriter(w, streamHold)
	defer sink.stop() // also if fetch panics: the timer must not write once the handler has returned
	// The request's context: a client that goes away stops the stream.
	a.m.fetch(r.Context(), ex, target, key, sink)
	sink.stop()
	snap := ex.Snapshot()
	for _, d := range snap.Datasets {
		if d.Dataset != want {
			continue
		}
		if d.Status != StatusDelivered {
			if sink.sent() {
				panic(http.ErrAbortHandler)
			}
			writeError(w, http.StatusBadGateway, fmt.Sprintf("dataset %s is %s: %s", want, d.Status, d.Reason))
			return
		}
		if err := sink.flush(); err != nil {
			panic(http.ErrAbortHandler) // the application went away
		}
		if !sink.sent() {
			w.WriteHeader(http.StatusOK)
		}
		w.Header().Set("X-Mydata-Status", StatusDelivered)
		w.Header().Set("X-Mydata-SHA256", d.SHA256)
		w.Header().Set("X-Mydata-Size", fmt.Sprint(d.Size))
	}
}

// loginHint seals a citizen's national ID to the hub's HPKE key, for the login_hint parameter of an
// authorization request: the hub then records a consent only from that citizen. The SP's application
// needs no HPKE code of its own.
func (a *API) loginHint(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ClientID string `json:"client_id"`
		Subject  string `json:"subject"`
	}
	if err := strictjson.Decode(r.Body, 4096, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.ClientID == "" {
		writeError(w, http.StatusBadRequest, "client_id: required")
		return
	}
	hint, aerr := a.sealHint(req.ClientID, req.Subject)
	if aerr != nil {
		writeError(w, aerr.status, aerr.msg)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"login_hint": hint})
}

// sealHint seals subject to the hub's hint key from the directory, bound to the client.
func (a *API) sealHint(clientID, subject string) (string, *apiError) {
	if err := nationalid.Valid(subject); err != nil {
		return "", &apiError{http.StatusBadRequest, "subject: " + err.Error()}
	}
	var key *hubapi.HubKey
	for _, k := range a.m.cfg.HubKeys() {
		if k.Kind == hubapi.HubKeyHPKE {
			key = &k
		}
	}
	if key == nil {
		return "", &apiError{http.StatusServiceUnavailable, "the directory lists no hub HPKE key yet"}
	}
	pub, err := seal.ParsePublicKey(key.KEM, key.PublicKey)
	if err != nil {
		return "", &apiError{http.StatusServiceUnavailable, "the hub's HPKE key is unusable"}
	}
	ct, err := seal.Seal(pub, hubapi.LoginHintInfo(clientID), []byte(subject))
	if err != nil {
		return "", &apiError{http.StatusInternalServerError, "seal the login hint: " + err.Error()}
	}
	return key.KID + "." + base64.RawURLEncoding.EncodeToString(ct), nil
}

// parRequest is what the SP's application asks the connector to push: the authorization request, and
// optionally the citizen it expects (sealed into login_hint here).
type parRequest struct {
	hubapi.PARRequest
	Subject string `json:"subject,omitempty"`
}

// par pushes an authorization request to the hub over the connector's mutual TLS (RFC 9126) and answers
// the request_uri, and the authorization URL to send the browser to when the connector knows the portal.
func (a *API) par(w http.ResponseWriter, r *http.Request) {
	var req parRequest
	if err := strictjson.Decode(r.Body, 16<<10, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.ClientID == "" {
		writeError(w, http.StatusBadRequest, "client_id: required")
		return
	}
	if req.ResponseType == "" {
		req.ResponseType = "code"
	}
	if req.CodeChallengeMethod == "" {
		req.CodeChallengeMethod = "S256"
	}
	if req.Subject != "" {
		if req.LoginHint != "" {
			writeError(w, http.StatusBadRequest, "give subject or login_hint, not both")
			return
		}
		hint, aerr := a.sealHint(req.ClientID, req.Subject)
		if aerr != nil {
			writeError(w, aerr.status, aerr.msg)
			return
		}
		req.LoginHint = hint
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	var resp hubapi.PARResponse
	if err := a.m.cfg.Hub.Do(ctx, http.MethodPost, hubapi.PathPAR, req.PARRequest, &resp); err != nil {
		var he *hubapi.Error
		if errors.As(err, &he) && he.Status < 500 {
			writeJSON(w, he.Status, map[string]string{"error": he.Message, "error_description": he.Description})
			return
		}
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, resp)
}
