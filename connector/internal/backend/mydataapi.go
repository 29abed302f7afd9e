package backend

// The mydata backend's listener: /connect/introspect/{resource} and /connect/userinfo/{resource}, as the
// platform serves them to DP-APIs.

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// apiListeners holds the process's mydata listeners, one per configured address. It is process-wide on
// purpose, as the sockets are: a configuration reload opens a dataset's new backend while the old one still
// finishes its transfers, and both must answer on the one address; several datasets may share it too.
var apiListeners = struct {
	mu sync.Mutex
	m  map[string]*apiListener
}{m: map[string]*apiListener{}}

// apiListener is one listening address and the resources served there.
type apiListener struct {
	addr  string // as configured
	tlsID string // the TLS settings it was opened with: every sharer must have the same
	ln    net.Listener
	srv   *http.Server
	refs  int // backends attached; guarded by apiListeners.mu

	mu        sync.Mutex
	resources map[string]*apiResource
}

// apiResource is one {resource}: its live tokens, and the backends that issue them (newest last: the
// newest's client credentials are the ones checked, so a reload that rotates the secret takes effect).
type apiResource struct {
	tokens *tokenStore
	subKey []byte // keys the sub pseudonym; random per process
	owners []*myDataBackend
}

// sub is the citizen's pseudonym for the DP-API: an HMAC under a key that lives as long as the process.
func (r *apiResource) sub(subject string) string {
	m := hmac.New(sha256.New, r.subKey)
	m.Write([]byte(subject))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// attachAPI gives b its resource on the listener for a.Listen, opening the listener if no other mydata
// backend has it. A port of 0 always opens a listener of its own.
func attachAPI(a MyDataAPIConfig, b *myDataBackend) (*apiListener, *apiResource, error) {
	tlsID := a.TLSCert + "\x00" + a.TLSKey + "\x00" + a.ClientCAFile
	_, port, _ := net.SplitHostPort(a.Listen)
	shared := port != "0"
	apiListeners.mu.Lock()
	defer apiListeners.mu.Unlock()
	l := apiListeners.m[a.Listen]
	if !shared || l == nil {
		var err error
		if l, err = openAPIListener(a.Listen, a.TLSCert, a.TLSKey, a.ClientCAFile); err != nil {
			return nil, nil, err
		}
		l.tlsID = tlsID
		if shared {
			apiListeners.m[a.Listen] = l
		}
	} else if l.tlsID != tlsID {
		return nil, nil, fmt.Errorf("%w: mydata.api: %s is already served with other tls_cert, tls_key or client_ca_file; datasets sharing an address share these (changing them takes a restart)", ErrBackend, a.Listen)
	}
	l.refs++
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.resources[b.resource]
	if r == nil {
		r = &apiResource{tokens: newTokenStore(), subKey: make([]byte, 32)}
		rand.Read(r.subKey)
		l.resources[b.resource] = r
	}
	r.owners = append(r.owners, b)
	return l, r, nil
}

func openAPIListener(addr, certFile, keyFile, clientCAFile string) (*apiListener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w: mydata.api.listen: %w", ErrBackend, err)
	}
	if certFile != "" {
		conf := &tls.Config{MinVersion: tls.VersionTLS12}
		kp := &keyPair{certFile: certFile, keyFile: keyFile}
		if _, err := kp.get(nil); err != nil {
			ln.Close()
			return nil, fmt.Errorf("%w: mydata.api.tls_cert: %w", ErrBackend, err)
		}
		conf.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return kp.get(nil) }
		if clientCAFile != "" {
			data, err := os.ReadFile(clientCAFile)
			pool := x509.NewCertPool()
			if err != nil || !pool.AppendCertsFromPEM(data) {
				ln.Close()
				return nil, fmt.Errorf("%w: mydata.api.client_ca_file: no PEM certificate in %s (%v)", ErrBackend, clientCAFile, err)
			}
			conf.ClientCAs, conf.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
		ln = tls.NewListener(ln, conf)
	}
	l := &apiListener{addr: addr, ln: ln, resources: map[string]*apiResource{}}
	mux := http.NewServeMux()
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		mux.HandleFunc(m+" /connect/introspect/{resource}", l.introspect)
		mux.HandleFunc(m+" /connect/userinfo/{resource}", l.userinfo)
	}
	l.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		// Handshake failures of unknown clients are not the DP's business to log line by line.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go l.srv.Serve(ln) //nolint:errcheck // ends with ErrServerClosed when the last backend detaches
	return l, nil
}

// detach takes b off its resource; the resource's tokens go with its last backend, and the listener with
// its last resource.
func (l *apiListener) detach(b *myDataBackend) error {
	apiListeners.mu.Lock()
	l.mu.Lock()
	if r := l.resources[b.resource]; r != nil {
		r.owners = slices.DeleteFunc(r.owners, func(o *myDataBackend) bool { return o == b })
		if len(r.owners) == 0 {
			r.tokens.clear()
			delete(l.resources, b.resource)
		}
	}
	l.mu.Unlock()
	l.refs--
	last := l.refs == 0
	if last && apiListeners.m[l.addr] == l {
		delete(apiListeners.m, l.addr)
	}
	apiListeners.mu.Unlock()
	if !last {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return l.srv.Shutdown(ctx)
}

// resource finds the request's {resource} and its newest backend.
func (l *apiListener) resource(r *http.Request) (*apiResource, *myDataBackend) {
	l.mu.Lock()
	defer l.mu.Unlock()
	res := l.resources[r.PathValue("resource")]
	if res == nil || len(res.owners) == 0 {
		return nil, nil
	}
	return res, res.owners[len(res.owners)-1]
}

// Introspection is the RFC 7662-style answer at /connect/introspect/{resource}; an inactive token gets
// {"active": false} and nothing else. The platform's amr, idp, X509type and auth_time are left out: the
// connector does not learn how the citizen logged in (the hub checked the level the dataset requires).
type Introspection struct {
	Active    bool   `json:"active"`
	Sub       string `json:"sub,omitempty"`
	ClientID  string `json:"client_id,omitempty"`
	Scope     string `json:"scope,omitempty"`
	TokenType string `json:"token_type,omitempty"`
	IssuedAt  int64  `json:"iat,omitempty"`
	Expires   int64  `json:"exp,omitempty"`
}

func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "application/json")
}

// clientOK authenticates the DP-API at introspection: mTLS was checked in the handshake when configured;
// the secret, when configured, comes as HTTP Basic with the resource as user name (RFC 7662 §2.1 with
// RFC 6749 §2.3.1).
func (b *myDataBackend) clientOK(r *http.Request) bool {
	if b.secret == nil {
		return r.TLS != nil && len(r.TLS.VerifiedChains) > 0
	}
	user, pass, ok := r.BasicAuth()
	// Both compared in full so the time taken does not say which was wrong.
	u := subtle.ConstantTimeCompare([]byte(user), []byte(b.resource))
	p := subtle.ConstantTimeCompare([]byte(pass), b.secret)
	return ok && u&p == 1
}

func (l *apiListener) introspect(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	res, owner := l.resource(r)
	if res == nil {
		http.Error(w, `{"error":"invalid_request"}`, http.StatusNotFound)
		return
	}
	if !owner.clientOK(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="mydata-connector"`)
		http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
		return
	}
	tok := strings.TrimPrefix(r.Form.Get("token"), MyDataTokenPrefix)
	rec, ok := res.tokens.lookup(tok, owner.now())
	if !ok || tok == "" {
		json.NewEncoder(w).Encode(Introspection{Active: false})
		return
	}
	json.NewEncoder(w).Encode(Introspection{
		Active: true, Sub: rec.sub, ClientID: rec.client, Scope: rec.scope, TokenType: "Bearer",
		IssuedAt: rec.issued.Unix(), Expires: rec.expires.Unix(),
	})
}

func (l *apiListener) userinfo(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	res, owner := l.resource(r)
	if res == nil {
		http.Error(w, `{"error":"invalid_request"}`, http.StatusNotFound)
		return
	}
	// Userinfo is authenticated by the token itself, as OIDC's is; mTLS, when configured, was checked in the
	// handshake.
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	var rec tokenRecord
	if ok {
		rec, ok = res.tokens.lookup(strings.TrimPrefix(tok, MyDataTokenPrefix), owner.now())
	}
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		http.Error(w, `{"error":"invalid_token"}`, http.StatusUnauthorized)
		return
	}
	info := map[string]any{}
	for _, f := range rec.fields {
		switch f {
		case FieldSub:
			info[f] = rec.sub
		case FieldUID:
			info[f] = rec.subject
		case FieldIsValidUID:
			info[f] = validNationalID(rec.subject)
		}
	}
	json.NewEncoder(w).Encode(info)
}
