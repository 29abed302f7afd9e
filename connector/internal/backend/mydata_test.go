package backend

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/configfile"
	"github.com/smallstep/pkcs7"
)

const testResource = "moi.household"

// signingKey is an agency's package-signing key and its self-signed certificate.
type signingKey struct {
	cert    *x509.Certificate
	key     *rsa.PrivateKey
	pemFile string
}

func newSigningKey(t testing.TB) *signingKey {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "agency package signer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := filepath.Join(t.TempDir(), "signer.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &signingKey{cert: cert, key: key, pemFile: p}
}

// sign makes a detached CMS signature over data, as the agency's DP-API does over its manifest.
func (k *signingKey) sign(t testing.TB, data []byte) []byte {
	t.Helper()
	sd, err := pkcs7.NewSignedData(data)
	if err != nil {
		t.Fatal(err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSigner(k.cert, k.key, pkcs7.SignerInfoConfig{}); err != nil {
		t.Fatal(err)
	}
	sd.Detach()
	sig, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// pkgOpts spoils a package in one way.
type pkgOpts struct {
	tamper   bool // a file changed after the manifest was made
	unlisted bool // an extra file not in the manifest
	noSig    bool
}

// buildPackage makes a MyData package of files, signed by k (unsigned if k is nil).
func buildPackage(t testing.TB, files map[string]string, k *signingKey, o pkgOpts) []byte {
	t.Helper()
	var m packageManifest
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		sum := sha256.Sum256([]byte(files[n]))
		m.Files = append(m.Files, struct {
			Name   string `json:"name"`
			SHA256 string `json:"sha256"`
		}{n, hex.EncodeToString(sum[:])})
	}
	manifest, _ := json.Marshal(m)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	add := func(name string, data []byte) {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
	}
	for _, n := range names {
		data := files[n]
		if o.tamper {
			data += " "
		}
		add(n, []byte(data))
	}
	if o.unlisted {
		add("extra.txt", []byte("x"))
	}
	add(PackageManifest, manifest)
	if k != nil && !o.noSig {
		add(PackageSignature, k.sign(t, manifest))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// dpAPI is an agency's DP-API written to the platform's contract: it takes the bearer token, checks it at
// introspection with its client secret, asks userinfo for the citizen, and answers with a signed package.
// Its knobs let a test make it answer otherwise.
type dpAPI struct {
	t        *testing.T
	srv      *httptest.Server
	connAPI  string // the connector's listener, http://host:port
	secret   string
	signer   *signingKey
	mu       sync.Mutex
	tokens   []string                         // every token it was called with
	intros   []Introspection                  // what introspection answered
	infos    []map[string]any                 // what userinfo answered
	respond  func(w http.ResponseWriter) bool // if set and returns true, it answered instead
	before   func()                           // runs before introspection (a test moves the clock)
	opts     pkgOpts
	noRecord map[string]bool
}

func newDPAPI(t *testing.T, signer *signingKey) *dpAPI {
	a := &dpAPI{t: t, signer: signer, secret: "agency-secret-0123456789"}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *dpAPI) serve(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "+MyDataTokenPrefix)
	if !ok {
		http.Error(w, "no mydata token", http.StatusUnauthorized)
		return
	}
	a.mu.Lock()
	a.tokens = append(a.tokens, tok)
	a.mu.Unlock()
	if a.respond != nil && a.respond(w) {
		return
	}
	if a.before != nil {
		a.before()
	}
	in, err := introspectAt(a.connAPI, a.secret, tok)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	a.mu.Lock()
	a.intros = append(a.intros, in)
	a.mu.Unlock()
	if !in.Active {
		http.Error(w, "token not active", http.StatusUnauthorized)
		return
	}
	status, info, err := userinfoAt(a.connAPI, tok)
	if err != nil || status != http.StatusOK {
		http.Error(w, fmt.Sprintf("userinfo %d %v", status, err), http.StatusBadGateway)
		return
	}
	a.mu.Lock()
	a.infos = append(a.infos, info)
	a.mu.Unlock()
	uid, _ := info["uid"].(string)
	if uid == "" || a.noRecord[uid] {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	pkg := buildPackage(a.t, map[string]string{"household.json": `{"id":"` + uid + `","head":"王小明"}`, "household.pdf": "%PDF-1.7 …"}, a.signer, a.opts)
	w.Header().Set("Content-Type", "application/zip")
	w.Write(pkg)
}

// introspectAt asks the connector's introspection endpoint about tok, as a DP-API does.
func introspectAt(base, secret, tok string) (Introspection, error) {
	var in Introspection
	req, _ := http.NewRequest(http.MethodPost, base+"/connect/introspect/"+testResource, strings.NewReader(url.Values{"token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(testResource, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return in, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return in, fmt.Errorf("introspection answered %d", resp.StatusCode)
	}
	err = json.NewDecoder(resp.Body).Decode(&in)
	return in, err
}

func userinfoAt(base, tok string) (int, map[string]any, error) {
	req, _ := http.NewRequest(http.MethodGet, base+"/connect/userinfo/"+testResource, nil)
	req.Header.Set("Authorization", "Bearer "+MyDataTokenPrefix+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	info := map[string]any{}
	if resp.StatusCode == http.StatusOK {
		err = json.NewDecoder(resp.Body).Decode(&info)
	}
	return resp.StatusCode, info, err
}

// myDataConfig is a mydata backend for api, its listener on a free loopback port.
func myDataConfig(t *testing.T, a *dpAPI) Config {
	t.Helper()
	var c Config
	c.Type = TypeMyData
	c.MyData.URL = a.srv.URL + "/dp-api/household"
	c.MyData.Resource = testResource
	c.MyData.API.Listen = "127.0.0.1:0"
	c.MyData.API.ClientSecretFile = filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(c.MyData.API.ClientSecretFile, []byte(a.secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if a.signer != nil {
		c.MyData.SigningCert = a.signer.pemFile
	}
	return c
}

func openMyData(t *testing.T, c Config, a *dpAPI) *myDataBackend {
	t.Helper()
	b, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	mb := b.(*myDataBackend)
	if a != nil {
		a.connAPI = "http://" + mb.Addr().String()
	}
	return mb
}

func transferCtx(id string, life time.Duration) context.Context {
	return WithTransfer(context.Background(), Transfer{ID: id, Expires: time.Now().Add(life), Client: "spiffe://td/org/bank/connector/sp"})
}

// unzip returns the members of a package.
func unzip(t *testing.T, data []byte) map[string]string {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range zr.File {
		rc, _ := f.Open()
		b, _ := io.ReadAll(rc)
		rc.Close()
		out[f.Name] = string(b)
	}
	return out
}

func TestMyDataFetch(t *testing.T) {
	signer := newSigningKey(t)
	a := newDPAPI(t, signer)
	b := openMyData(t, myDataConfig(t, a), a)
	ticketLife := 90 * time.Second
	res, err := b.Fetch(transferCtx("ticket-1", ticketLife), "A123456789")
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != Found || res.ContentType != "application/zip" {
		t.Fatalf("got %v %q, want found application/zip", res.Status, res.ContentType)
	}
	data, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.Size != int64(len(data)) {
		t.Errorf("size %d, body %d bytes", res.Size, len(data))
	}
	files := unzip(t, data)
	if !strings.Contains(files["household.json"], `"A123456789"`) || files[PackageSignature] == "" {
		t.Errorf("package passed on is not the agency's: %v", slices.Collect(mapKeys(files)))
	}
	if len(a.intros) != 1 || !a.intros[0].Active {
		t.Fatalf("introspection: %+v", a.intros)
	}
	in := a.intros[0]
	if in.Scope != testResource || in.ClientID != "spiffe://td/org/bank/connector/sp" || in.Sub == "" || in.TokenType != "Bearer" {
		t.Errorf("introspection fields: %+v", in)
	}
	if exp := time.Unix(in.Expires, 0); exp.After(time.Now().Add(ticketLife)) {
		t.Errorf("token expires %v, after its ticket", exp)
	}
	// Default fields: sub and uid, nothing else.
	if got := slices.Sorted(mapKeys(a.infos[0])); !slices.Equal(got, []string{"sub", "uid"}) || a.infos[0]["uid"] != "A123456789" {
		t.Errorf("userinfo: %v", a.infos[0])
	}
	if a.infos[0]["sub"] != in.Sub {
		t.Errorf("sub differs between introspection (%v) and userinfo (%v)", in.Sub, a.infos[0]["sub"])
	}

	t.Run("reused token is inactive", func(t *testing.T) {
		tok := a.tokens[0]
		in, err := introspectAt(a.connAPI, a.secret, tok)
		if err != nil || in.Active {
			t.Errorf("replayed token: %+v, %v; want active false", in, err)
		}
		raw, _ := json.Marshal(in)
		if string(raw) != `{"active":false}` {
			t.Errorf("inactive answer says more than active:false: %s", raw)
		}
		if st, _, _ := userinfoAt(a.connAPI, tok); st != http.StatusUnauthorized {
			t.Errorf("userinfo with a spent token: %d, want 401", st)
		}
	})
	t.Run("foreign tokens are inactive", func(t *testing.T) {
		// Another connector's live token: it answers for its own only.
		other := newDPAPI(t, signer)
		ob := openMyData(t, myDataConfig(t, other), other)
		var foreign string
		other.respond = func(w http.ResponseWriter) bool {
			foreign = other.tokens[len(other.tokens)-1]
			in, err := introspectAt(a.connAPI, a.secret, foreign)
			if err != nil || in.Active {
				t.Errorf("another connector's live token at this one: %+v %v", in, err)
			}
			if in, _ := introspectAt(other.connAPI, other.secret, foreign); !in.Active {
				t.Errorf("its own connector says the token is not live")
			}
			w.WriteHeader(http.StatusNoContent)
			return true
		}
		if res, err := ob.Fetch(transferCtx("ticket-other", time.Minute), "A123456789"); err != nil || res.Status != NoRecord {
			t.Fatalf("%v %v", res, err)
		}
		for _, tok := range []string{"made-up", "", MyDataTokenPrefix, strings.Repeat("A", 43), foreign} {
			if in, err := introspectAt(a.connAPI, a.secret, tok); err != nil || in.Active {
				t.Errorf("token %q: %+v %v", tok, in, err)
			}
		}
	})
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestMyDataExpiredToken(t *testing.T) {
	a := newDPAPI(t, nil)
	b := openMyData(t, myDataConfig(t, a), a)
	now := time.Now()
	b.now = func() time.Time { return now }
	// The DP-API takes its time: by the time it introspects, the ticket (and so the token) has expired.
	a.before = func() { now = now.Add(2 * time.Minute) }
	_, err := b.Fetch(transferCtx("ticket-slow", time.Minute), "A123456789")
	if !errors.Is(err, ErrBackend) || !strings.Contains(err.Error(), "401") {
		t.Fatalf("err %v, want a failure after the agency refused (401)", err)
	}
	if len(a.intros) != 1 || a.intros[0].Active {
		t.Errorf("expired token introspected as %+v", a.intros)
	}
	// A ticket already expired gets no token and no call.
	calls := len(a.tokens)
	if _, err := b.Fetch(WithTransfer(context.Background(), Transfer{ID: "old", Expires: now.Add(-time.Second)}), "A123456789"); err == nil {
		t.Error("fetch for an expired ticket succeeded")
	}
	if len(a.tokens) != calls {
		t.Error("the DP-API was called for an expired ticket")
	}
	// token_ttl bounds a token even when its ticket lives longer.
	a.before = nil
	b.ttl = 30 * time.Second
	if _, err := b.Fetch(transferCtx("ticket-long", time.Hour), "A123456789"); err != nil {
		t.Fatal(err)
	}
	in := a.intros[len(a.intros)-1]
	if got := time.Unix(in.Expires, 0).Sub(now); got > 30*time.Second {
		t.Errorf("token lives %s, more than token_ttl", got)
	}
}

func TestMyDataUserinfoFields(t *testing.T) {
	for _, tt := range []struct {
		fields []string
		want   []string
	}{
		{[]string{"uid"}, []string{"uid"}},
		{[]string{"sub", "uid", "isValidUid"}, []string{"isValidUid", "sub", "uid"}},
	} {
		a := newDPAPI(t, nil)
		c := myDataConfig(t, a)
		c.MyData.UserinfoFields = tt.fields
		b := openMyData(t, c, a)
		res, err := b.Fetch(transferCtx("t", time.Minute), "A123456789")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if got := slices.Sorted(mapKeys(a.infos[0])); !slices.Equal(got, tt.want) {
			t.Errorf("fields %v: userinfo %v", tt.fields, a.infos[0])
		}
		if v, ok := a.infos[0]["isValidUid"]; ok && v != true {
			t.Errorf("isValidUid %v for a valid ID", v)
		}
	}
}

func TestMyDataStatuses(t *testing.T) {
	tests := []struct {
		name    string
		respond func(w http.ResponseWriter) bool
		status  Status
		retry   time.Duration
		err     string
	}{
		{name: "429 with Retry-After", status: NotReady, retry: 7 * time.Second, respond: func(w http.ResponseWriter) bool {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
			return true
		}},
		{name: "429 without Retry-After", status: NotReady, retry: defaultRetryAfter, respond: func(w http.ResponseWriter) bool {
			w.WriteHeader(http.StatusTooManyRequests)
			return true
		}},
		{name: "204 no record", status: NoRecord, respond: func(w http.ResponseWriter) bool {
			w.WriteHeader(http.StatusNoContent)
			return true
		}},
		{name: "500 with the agency's text", err: "answered 500", respond: func(w http.ResponseWriter) bool {
			http.Error(w, "ORA-01403 for A123456789 at db7.moi.internal", http.StatusInternalServerError)
			return true
		}},
		{name: "200 that is not a zip", err: "not a zip", respond: func(w http.ResponseWriter) bool {
			w.Header().Set("Content-Type", "application/zip")
			io.WriteString(w, `<html>系統維護中 A123456789</html>`)
			return true
		}},
		{name: "empty 200", err: "not a zip", respond: func(w http.ResponseWriter) bool {
			return true
		}},
		{name: "redirect not followed", err: "answered 302", respond: func(w http.ResponseWriter) bool {
			w.Header().Set("Location", "https://elsewhere.example/")
			w.WriteHeader(http.StatusFound)
			return true
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newDPAPI(t, nil)
			a.respond = tt.respond
			b := openMyData(t, myDataConfig(t, a), a)
			res, err := b.Fetch(transferCtx("t", time.Minute), "A123456789")
			if tt.err != "" {
				if !errors.Is(err, ErrBackend) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				if strings.Contains(err.Error(), "ORA") || strings.Contains(err.Error(), "A123456789") || strings.Contains(err.Error(), "系統") || strings.Contains(err.Error(), "elsewhere") {
					t.Errorf("the agency's text leaks into the error: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != tt.status || res.RetryAfter != tt.retry {
				t.Errorf("got %v retry %s, want %v retry %s", res.Status, res.RetryAfter, tt.status, tt.retry)
			}
			if in, _ := introspectAt(a.connAPI, a.secret, a.tokens[0]); in.Active {
				t.Error("the token lives on after the DP-API answered")
			}
		})
	}
}

func TestMyDataSignature(t *testing.T) {
	signer, other := newSigningKey(t), newSigningKey(t)
	tests := []struct {
		name   string
		signer *signingKey // who signs
		opts   pkgOpts
		err    string
	}{
		{name: "another key", signer: other, err: "signature"},
		{name: "file changed", signer: signer, opts: pkgOpts{tamper: true}, err: "does not match its digest"},
		{name: "file not in the manifest", signer: signer, opts: pkgOpts{unlisted: true}, err: "not in the manifest"},
		{name: "unsigned", signer: signer, opts: pkgOpts{noSig: true}, err: "no " + PackageSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newDPAPI(t, tt.signer)
			a.opts = tt.opts
			c := myDataConfig(t, a)
			c.MyData.SigningCert = signer.pemFile // the connector trusts signer only
			b := openMyData(t, c, a)
			_, err := b.Fetch(transferCtx("t", time.Minute), "A123456789")
			if !errors.Is(err, ErrBackend) || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("err %v, want a refusal with %q", err, tt.err)
			}
		})
	}
	t.Run("no signing_cert: passed on unchecked", func(t *testing.T) {
		a := newDPAPI(t, other)
		a.opts = pkgOpts{tamper: true}
		b := openMyData(t, myDataConfig(t, &dpAPI{srv: a.srv, secret: a.secret}), a)
		res, err := b.Fetch(transferCtx("t", time.Minute), "A123456789")
		if err != nil || res.Status != Found {
			t.Fatalf("%v %v", res, err)
		}
		res.Body.Close()
	})
	t.Run("SHA-1 refused", func(t *testing.T) {
		manifest := []byte(`{"files":[{"name":"a","sha256":"` + strings.Repeat("0", 64) + `"}]}`)
		sd, _ := pkcs7.NewSignedData(manifest)
		sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA1)
		if err := sd.AddSigner(signer.cert, signer.key, pkcs7.SignerInfoConfig{}); err != nil {
			t.Fatal(err)
		}
		sd.Detach()
		sig, _ := sd.Finish()
		if err := checkSignature(manifest, sig, signer.cert, time.Now()); err == nil || !strings.Contains(err.Error(), "SHA-256") {
			t.Errorf("SHA-1 signature: %v", err)
		}
		if err := checkSignature(manifest, signer.sign(t, manifest), signer.cert, time.Now()); err != nil {
			t.Errorf("good signature: %v", err)
		}
		if err := checkSignature(append(manifest, ' '), signer.sign(t, manifest), signer.cert, time.Now()); err == nil {
			t.Error("signature over another manifest accepted")
		}
	})
}

func TestMyDataIntrospectionClientAuth(t *testing.T) {
	a := newDPAPI(t, nil)
	b := openMyData(t, myDataConfig(t, a), a)
	var checked bool
	a.respond = func(w http.ResponseWriter) bool {
		tok := a.tokens[len(a.tokens)-1]
		for _, secret := range []string{"", "wrong-secret-0123456789", a.secret + "x"} {
			if _, err := introspectAt(a.connAPI, secret, tok); err == nil || !strings.Contains(err.Error(), "401") {
				t.Errorf("secret %q: %v, want 401", secret, err)
			}
		}
		// The resource in the path must be this backend's.
		req, _ := http.NewRequest(http.MethodPost, a.connAPI+"/connect/introspect/other.dataset", strings.NewReader("token="+tok))
		req.SetBasicAuth(testResource, a.secret)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("other resource: %d", resp.StatusCode)
			}
		}
		// The token in the query works too (GET), with or without the mydata:: prefix.
		req, _ = http.NewRequest(http.MethodGet, a.connAPI+"/connect/introspect/"+testResource+"?token="+url.QueryEscape(MyDataTokenPrefix+tok), nil)
		req.SetBasicAuth(testResource, a.secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var in Introspection
		json.NewDecoder(resp.Body).Decode(&in)
		resp.Body.Close()
		if !in.Active || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("GET introspection: %+v %v", in, resp.Header)
		}
		checked = true
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	if _, err := b.Fetch(transferCtx("t", time.Minute), "A123456789"); err != nil {
		t.Fatal(err)
	}
	if !checked {
		t.Fatal("the DP-API was not called")
	}
}

func TestMyDataOneTokenPerTransfer(t *testing.T) {
	s := newTokenStore()
	now := time.Now()
	t1, _ := s.issue(tokenRecord{transfer: "x", subject: "A", issued: now, expires: now.Add(time.Minute)})
	t2, _ := s.issue(tokenRecord{transfer: "x", subject: "A", issued: now, expires: now.Add(time.Minute)})
	t3, _ := s.issue(tokenRecord{transfer: "y", subject: "B", issued: now, expires: now.Add(time.Minute)})
	if _, ok := s.lookup(t1, now); ok {
		t.Error("a second token for the transfer leaves the first live")
	}
	if r, ok := s.lookup(t2, now); !ok || r.subject != "A" {
		t.Error("newest token of the transfer not live")
	}
	if _, ok := s.lookup(t3, now.Add(time.Minute)); ok {
		t.Error("a token is live at its expiry")
	}
	if len(s.byHash) != 1 || len(s.byTransfer) != 1 {
		t.Errorf("store holds %d tokens and %d transfers after one expired", len(s.byHash), len(s.byTransfer))
	}
}

func TestValidNationalID(t *testing.T) {
	for id, want := range map[string]bool{
		"A123456789": true, "F131104093": true, "A800000014": true,
		"A123456788": false, "a123456789": false, "A323456789": false, "A12345678": false, "1123456789": false, "A12345678X": false,
	} {
		if got := validNationalID(id); got != want {
			t.Errorf("%s: %v, want %v", id, got, want)
		}
	}
}

func TestMyDataValidate(t *testing.T) {
	base := func() Config {
		var c Config
		c.Type = TypeMyData
		c.MyData.URL = "https://dp.moi.internal/api/household"
		c.MyData.Resource = testResource
		c.MyData.API.Listen = "10.0.0.5:8460"
		c.MyData.API.ClientSecretFile = "/etc/mydata/secrets/moi.household.secret"
		return c
	}
	if err := base().Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	tests := []struct {
		name string
		edit func(c *Config)
		err  string
	}{
		{"no url", func(c *Config) { c.MyData.URL = "" }, "mydata.url: required"},
		{"subject in url", func(c *Config) { c.MyData.URL += "/{subject}" }, "mydata.url: must not contain"},
		{"ftp url", func(c *Config) { c.MyData.URL = "ftp://x/y" }, "mydata.url:"},
		{"credentials in url", func(c *Config) { c.MyData.URL = "https://u:p@x/y" }, "credentials"},
		{"method", func(c *Config) { c.MyData.Method = "PUT" }, "mydata.method"},
		{"no resource", func(c *Config) { c.MyData.Resource = "" }, "mydata.resource: required"},
		{"odd resource", func(c *Config) { c.MyData.Resource = "a/b" }, "mydata.resource:"},
		{"field unknown to connector", func(c *Config) { c.MyData.UserinfoFields = []string{"uid", "email"} }, `"email" is not known`},
		{"field misspelt", func(c *Config) { c.MyData.UserinfoFields = []string{"UID"} }, "not sub, uid or isValidUid"},
		{"field twice", func(c *Config) { c.MyData.UserinfoFields = []string{"uid", "uid"} }, "twice"},
		{"no listen", func(c *Config) { c.MyData.API.Listen = "" }, "mydata.api.listen: required"},
		{"bad port", func(c *Config) { c.MyData.API.Listen = "127.0.0.1:notaport" }, "mydata.api.listen:"},
		{"port range", func(c *Config) { c.MyData.API.Listen = "127.0.0.1:70000" }, "mydata.api.listen:"},
		{"no client auth", func(c *Config) { c.MyData.API.ClientSecretFile = "" }, "mydata.api.client_secret_file"},
		{"client CA without TLS", func(c *Config) { c.MyData.API.ClientCAFile = "/ca.pem" }, "mydata.api.client_ca_file"},
		{"half TLS", func(c *Config) { c.MyData.API.TLSCert = "/c.pem" }, "mydata.api.tls_key"},
		{"negative ttl", func(c *Config) { c.MyData.TokenTTL = -1 }, "mydata.token_ttl"},
		{"client cert on http", func(c *Config) {
			c.MyData.URL = "http://x/y"
			c.MyData.ClientCert, c.MyData.ClientKey = "/c", "/k"
		}, "mydata.client_cert"},
		{"http section with mydata", func(c *Config) { c.HTTP.URL = "https://x/{subject}" }, "http: set, but type is"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.edit(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("err %v, want %q", err, tt.err)
			}
		})
	}
}

// FuzzMyDataPackage feeds the zip and manifest checks what an agency (or whoever sits between) could send.
func FuzzMyDataPackage(f *testing.F) {
	files := map[string]string{"a.json": `{"x":1}`, "b.csv": "h\n1\n"}
	f.Add(buildPackage(f, files, nil, pkgOpts{}))
	f.Add(buildPackage(f, files, nil, pkgOpts{tamper: true}))
	f.Add(buildPackage(f, files, nil, pkgOpts{unlisted: true}))
	f.Add([]byte("PK\x05\x06" + strings.Repeat("\x00", 18)))
	if b, err := os.ReadFile(filepath.Join("testdata", "mydata", "openssl-package.zip")); err == nil {
		f.Add(b)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = verifyPackage(data, nil, 1<<20, time.Now())
	})
}

// FuzzMyDataManifest feeds manifest.json's parser.
func FuzzMyDataManifest(f *testing.F) {
	d := strings.Repeat("ab", 32)
	for _, s := range []string{
		`{"files":[{"name":"a.json","sha256":"` + d + `"}]}`,
		`{"files":[{"name":"../a","sha256":"` + d + `"}]}`,
		`{"files":[{"name":"a","sha256":"` + d + `"},{"name":"a","sha256":"` + d + `"}]}`,
		`{"files":[]}`, `[]`, `{"files":[{"name":"dir/./x","sha256":"zz"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseManifest(data)
		if err != nil {
			return
		}
		for name := range m {
			if checkMemberName(name) != nil || name == PackageManifest || name == PackageSignature {
				t.Fatalf("accepted name %q", name)
			}
		}
	})
}

// FuzzMyDataSignature feeds the CMS parser and verifier the signature member.
func FuzzMyDataSignature(f *testing.F) {
	k := newSigningKey(f)
	manifest := []byte(`{"files":[{"name":"a","sha256":"` + strings.Repeat("0", 64) + `"}]}`)
	sig := k.sign(f, manifest)
	f.Add(sig)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "PKCS7", Bytes: sig}))
	f.Add(sig[:len(sig)/2])
	f.Add([]byte{0x30, 0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := checkSignature(manifest, data, k.cert, time.Now()); err == nil && !bytes.Equal(data, sig) {
			// Another encoding of a valid signature is fine; one that verifies must still be by k.
			if blk, _ := pem.Decode(data); blk != nil {
				data = blk.Bytes
			}
			p7, perr := pkcs7.Parse(data)
			if perr != nil || len(p7.Signers) != 1 {
				t.Fatalf("accepted %x", data)
			}
		}
	})
}

// TestMyDataExampleConfig uncomments the mydata example in conf/connector.yaml and validates it, so the
// documented keys stay the real ones.
func TestMyDataExampleConfig(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "conf", "connector.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// Commented-out dataset entries: runs of "  # " lines that start with an unindented key.
	var blocks [][]string
	for _, l := range strings.Split(string(data), "\n") {
		body, ok := strings.CutPrefix(l, "  # ")
		switch {
		case !ok:
			blocks = append(blocks, nil)
		case strings.HasSuffix(body, ":") && !strings.HasPrefix(body, " ") && !strings.HasPrefix(body, "#"):
			blocks = append(blocks, []string{body})
		case len(blocks) > 0 && blocks[len(blocks)-1] != nil && !strings.HasPrefix(strings.TrimSpace(body), "#"):
			blocks[len(blocks)-1] = append(blocks[len(blocks)-1], body)
		}
	}
	i := slices.IndexFunc(blocks, func(b []string) bool { return slices.Contains(b, "    type: mydata") })
	if i < 0 {
		t.Fatal("no commented mydata example in conf/connector.yaml")
	}
	block := blocks[i]
	var ds map[string]struct {
		Backend Config `yaml:"backend"`
	}
	if err := configfile.Decode([]byte(strings.Join(block, "\n")), &ds); err != nil {
		t.Fatalf("example does not decode: %v\n%s", err, strings.Join(block, "\n"))
	}
	for id, d := range ds {
		if err := d.Backend.Validate(); err != nil {
			t.Errorf("%s: %v", id, err)
		}
		m := d.Backend.MyData
		if m.Timeout != DefaultMyDataTimeout || m.TokenTTL != DefaultMyDataTokenTTL || m.MaxBytes != DefaultMyDataMaxBytes ||
			!slices.Equal(m.UserinfoFields, DefaultUserinfoFields) || m.Method != http.MethodGet {
			t.Errorf("%s: the example's values that say they are defaults are not: %+v", id, m)
		}
	}
}

// TestMyDataOpenSSLPackage checks a package signed as the integration guide tells agencies to, with
// `openssl cms -sign -binary -md sha256 -outform DER` (testdata/mydata, made once by hand).
func TestMyDataOpenSSLPackage(t *testing.T) {
	pkg, err := os.ReadFile(filepath.Join("testdata", "mydata", "openssl-package.zip"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := readCert(filepath.Join("testdata", "mydata", "openssl-signer.pem"))
	if err != nil {
		t.Fatal(err)
	}
	at := cert.NotBefore.Add(time.Hour)
	if err := verifyPackage(pkg, cert, 1<<20, at); err != nil {
		t.Fatalf("openssl-made package refused: %v", err)
	}
	if err := verifyPackage(pkg, newSigningKey(t).cert, 1<<20, at); err == nil {
		t.Fatal("package accepted under another certificate")
	}
}

// TestMyDataMutualTLS runs the listener over TLS with client certificates instead of a secret: a DP-API
// with a certificate from the configured CA introspects; one without cannot even connect.
func TestMyDataMutualTLS(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	srvCert, srvKey := ca.issueFiles(t, dir, "mydata-api", x509.ExtKeyUsageServerAuth)
	caFile := filepath.Join(dir, "ca.pem")
	writeFile(t, caFile, string(ca.certPEM))
	good := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool(),
		Certificates: []tls.Certificate{ca.issue(t, "dp-api", x509.ExtKeyUsageClientAuth)}}}}
	anonymous := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool()}}}
	otherCA := newTestCA(t)
	stranger := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool(),
		Certificates: []tls.Certificate{otherCA.issue(t, "dp-api", x509.ExtKeyUsageClientAuth)}}}}

	a := newDPAPI(t, nil)
	c := myDataConfig(t, a)
	c.MyData.API.ClientSecretFile = ""
	c.MyData.API.TLSCert, c.MyData.API.TLSKey, c.MyData.API.ClientCAFile = srvCert, srvKey, caFile
	b := openMyData(t, c, nil)
	base := "https://" + b.Addr().String()
	introspect := func(cl *http.Client, tok string) (Introspection, error) {
		var in Introspection
		resp, err := cl.PostForm(base+"/connect/introspect/"+testResource, url.Values{"token": {tok}})
		if err != nil {
			return in, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return in, fmt.Errorf("status %d", resp.StatusCode)
		}
		return in, json.NewDecoder(resp.Body).Decode(&in)
	}
	var ran bool
	a.respond = func(w http.ResponseWriter) bool {
		ran = true
		tok := a.tokens[len(a.tokens)-1]
		if in, err := introspect(good, tok); err != nil || !in.Active {
			t.Errorf("DP-API with a client certificate: %+v %v", in, err)
		}
		for name, cl := range map[string]*http.Client{"no client certificate": anonymous, "another CA's certificate": stranger} {
			if in, err := introspect(cl, tok); err == nil {
				t.Errorf("%s: introspection answered %+v", name, in)
			}
		}
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	if res, err := b.Fetch(transferCtx("t", time.Minute), "A123456789"); err != nil || res.Status != NoRecord {
		t.Fatalf("%v %v", res, err)
	}
	if !ran {
		t.Fatal("the DP-API was not called")
	}
}

// freeAddr is a loopback address nobody listens on (for tests that need the same address twice).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestMyDataReloadSharesTheListener opens a dataset's backend again while the first still serves a
// transfer, as a configuration reload does: the second must not fail on the taken address, the first
// transfer's token stays live until its call ends, and the address is freed only with the last backend.
func TestMyDataReloadSharesTheListener(t *testing.T) {
	a := newDPAPI(t, nil)
	c := myDataConfig(t, a)
	c.MyData.API.Listen = freeAddr(t)
	a.connAPI = "http://" + c.MyData.API.Listen
	old, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	var next Backend
	a.respond = func(w http.ResponseWriter) bool {
		if next != nil {
			return false
		}
		// Mid-call: the reload opens the dataset's new backend, on the same address.
		if next, err = New(c); err != nil {
			t.Errorf("reopening on the same address: %v", err)
			return false
		}
		return false // and the DP-API goes on: introspection, userinfo, package
	}
	res, err := old.Fetch(transferCtx("t-old", time.Minute), "A123456789")
	if err != nil || res.Status != Found {
		t.Fatalf("transfer across the reload: %v %v", res, err)
	}
	res.Body.Close()
	if next == nil {
		t.Fatal("no second backend")
	}
	if len(a.intros) != 1 || !a.intros[0].Active {
		t.Fatalf("the first backend's token after the reload: %+v", a.intros)
	}
	old.Close()
	// The new backend serves on; another dataset may share the address under another resource.
	res, err = next.Fetch(transferCtx("t-new", time.Minute), "A123456789")
	if err != nil || res.Status != Found {
		t.Fatalf("after the old backend closed: %v %v", res, err)
	}
	res.Body.Close()
	other := c
	other.MyData.Resource = "moi.vehicle"
	ob, err := New(other)
	if err != nil {
		t.Fatalf("a second resource on the address: %v", err)
	}
	if in, err := introspectAt(a.connAPI, a.secret, a.tokens[len(a.tokens)-1]); err != nil || in.Active {
		t.Errorf("spent token: %+v %v", in, err)
	}
	mismatch := c
	mismatch.MyData.API.TLSCert, mismatch.MyData.API.TLSKey = "/x.crt", "/x.key"
	if _, err := New(mismatch); err == nil || !strings.Contains(err.Error(), "other tls_cert") {
		t.Errorf("a sharer with other TLS settings: %v", err)
	}
	next.Close()
	ob.Close()
	ob.Close() // twice: must not close the listener of someone else
	ln, err := net.Listen("tcp", c.MyData.API.Listen)
	if err != nil {
		t.Fatalf("the address is still held after the last backend closed: %v", err)
	}
	ln.Close()
}

func TestCheckMyDataSet(t *testing.T) {
	mk := func(listen, resource, cert string) Config {
		var c Config
		c.Type = TypeMyData
		c.MyData.API.Listen, c.MyData.Resource = listen, resource
		c.MyData.API.TLSCert, c.MyData.API.TLSKey = cert, cert
		return c
	}
	var file Config
	file.Type = TypeFile
	tests := []struct {
		name string
		set  map[string]Config
		err  string
	}{
		{"two resources on one address", map[string]Config{"a.x": mk("10.0.0.5:8460", "a.x", ""), "a.y": mk("10.0.0.5:8460", "a.y", ""), "a.z": file}, ""},
		{"one resource on two addresses", map[string]Config{"a.x": mk("10.0.0.5:8460", "r", ""), "a.y": mk("10.0.0.5:8461", "r", "")}, ""},
		{"port 0 is never shared", map[string]Config{"a.x": mk("127.0.0.1:0", "r", ""), "a.y": mk("127.0.0.1:0", "r", "/c")}, ""},
		{"one resource twice", map[string]Config{"a.x": mk("10.0.0.5:8460", "r", ""), "a.y": mk("10.0.0.5:8460", "r", "")}, `datasets.a.y.backend.mydata.resource: "r" is dataset a.x's`},
		{"TLS differs", map[string]Config{"a.x": mk("10.0.0.5:8460", "a.x", "/c1"), "a.y": mk("10.0.0.5:8460", "a.y", "/c2")}, "datasets.a.y.backend.mydata.api: shares 10.0.0.5:8460 with dataset a.x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckMyDataSet(tt.set)
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Errorf("err %v, want %q", err, tt.err)
			}
		})
	}
}
