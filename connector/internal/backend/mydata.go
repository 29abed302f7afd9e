package backend

// The mydata backend lets an agency already connected to the running MyData platform keep its DP-API as
// it is. The platform calls that API with "Authorization: Bearer mydata::<token>"; the API checks the
// token at the platform's /connect/introspect/{resource}, learns the citizen at /connect/userinfo/{resource},
// and answers 200 with a zip package (files, a SHA-256 manifest, the agency's signature) or 429 with
// Retry-After. Here the connector plays the platform's part: for each fetch it issues a fresh token bound to
// that one transfer, calls the DP-API once with it, and serves the two endpoints itself, on a listener
// inside the agency, answering only for its own live tokens.
//
// Tokens are bearer secrets, so they live in this process's memory only, as SHA-256 hashes; a token dies
// when the DP-API has answered the call it was made for (or when the call fails), when the next token for
// the same transfer is issued, or at its expiry, which is never later than the ticket's.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults of the mydata backend, applied by New to zero values.
const (
	DefaultMyDataTimeout  = 30 * time.Second
	DefaultMyDataTokenTTL = 5 * time.Minute
	// DefaultMyDataMaxBytes is lower than the http backend's because a package whose signature is checked
	// is held in memory whole (a zip is read from its end).
	DefaultMyDataMaxBytes = 64 << 20
)

// MyDataTokenPrefix starts the bearer token on the DP-API call, as the platform sends it.
const MyDataTokenPrefix = "mydata::"

// Userinfo fields (the platform's names) a dataset may release. The connector knows the citizen only by the
// national ID the ticket carries, so it can fill these three; the platform's others (birthdate, email,
// phone_number, idp, x509type, amr) it does not know and refuses in config rather than send empty.
const (
	FieldSub        = "sub"        // a pseudonym of the citizen, stable while the connector runs
	FieldUID        = "uid"        // the national ID
	FieldIsValidUID = "isValidUid" // whether uid passes the national ID check digit
)

// DefaultUserinfoFields is the minimum: the DP-API cannot find the citizen without uid.
var DefaultUserinfoFields = []string{FieldSub, FieldUID}

// platformOnlyFields are userinfo fields of the platform's contract that the connector cannot fill.
var platformOnlyFields = []string{"birthdate", "email", "phone_number", "idp", "x509type", "amr"}

// MyDataConfig is the mydata section of a dataset's backend.
type MyDataConfig struct {
	URL      string        `yaml:"url"`      // the agency's DP-API, unchanged; no {subject}: the API asks userinfo
	Method   string        `yaml:"method"`   // GET (default) or POST with an empty body
	Resource string        `yaml:"resource"` // the {resource} in /connect/introspect/{resource}
	Timeout  time.Duration `yaml:"timeout"`
	MaxBytes int64         `yaml:"max_bytes"`
	TokenTTL time.Duration `yaml:"token_ttl"` // the most a token lives; never past the ticket's expiry
	// TLS towards the DP-API, as for the http backend.
	ClientCert string `yaml:"client_cert"`
	ClientKey  string `yaml:"client_key"`
	CAFile     string `yaml:"ca_file"`
	// SigningCert is the agency's package-signing certificate (PEM); set, every package is checked first.
	SigningCert    string   `yaml:"signing_cert"`
	UserinfoFields []string `yaml:"userinfo_fields"`
	// API is the listener where the DP-API introspects tokens and asks userinfo.
	API MyDataAPIConfig `yaml:"api"`
}

// MyDataAPIConfig is the listener of a mydata backend. Datasets may share an address if they give it the
// same TLS settings; they are told apart by their resource.
type MyDataAPIConfig struct {
	Listen           string `yaml:"listen"`
	TLSCert          string `yaml:"tls_cert"`
	TLSKey           string `yaml:"tls_key"`
	ClientCAFile     string `yaml:"client_ca_file"`     // mTLS: the DP-API's client certificate must chain to it
	ClientSecretFile string `yaml:"client_secret_file"` // HTTP Basic resource:secret on introspection
}

func (c MyDataConfig) validate() error {
	if c.URL == "" {
		return errors.New("mydata.url: required")
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return fmt.Errorf("mydata.url: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("mydata.url: %q is not an http:// or https:// URL", c.URL)
	}
	if u.User != nil {
		return errors.New("mydata.url: holds credentials; use a client certificate")
	}
	if strings.Contains(c.URL, SubjectPlaceholder) {
		// The platform never puts the citizen in the DP-API's URL; the API asks userinfo.
		return fmt.Errorf("mydata.url: must not contain %s: the DP-API learns the citizen from userinfo", SubjectPlaceholder)
	}
	switch c.Method {
	case "", http.MethodGet, http.MethodPost:
	default:
		return fmt.Errorf("mydata.method: %q is not GET or POST", c.Method)
	}
	if err := checkResource(c.Resource); err != nil {
		return fmt.Errorf("mydata.resource: %w", err)
	}
	if (c.ClientCert == "") != (c.ClientKey == "") {
		return errors.New("mydata.client_key: mydata.client_cert and mydata.client_key go together")
	}
	if u.Scheme != "https" {
		switch {
		case c.ClientCert != "":
			return errors.New("mydata.client_cert: needs an https:// url")
		case c.CAFile != "":
			return errors.New("mydata.ca_file: needs an https:// url")
		}
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"mydata.timeout", c.Timeout}, {"mydata.token_ttl", c.TokenTTL}} {
		if err := nonNegative(d.key, d.v); err != nil {
			return err
		}
	}
	if err := nonNegative("mydata.max_bytes", c.MaxBytes); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, f := range c.UserinfoFields {
		switch {
		case slices.Contains(platformOnlyFields, f):
			return fmt.Errorf("mydata.userinfo_fields: %q is not known to the connector (the ticket carries only the national ID)", f)
		case f != FieldSub && f != FieldUID && f != FieldIsValidUID:
			return fmt.Errorf("mydata.userinfo_fields: %q is not sub, uid or isValidUid", f)
		case seen[f]:
			return fmt.Errorf("mydata.userinfo_fields: %q twice", f)
		}
		seen[f] = true
	}
	a := c.API
	if a.Listen == "" {
		return errors.New("mydata.api.listen: required (the DP-API introspects its tokens there)")
	}
	if err := checkListen(a.Listen); err != nil {
		return fmt.Errorf("mydata.api.listen: %w", err)
	}
	if (a.TLSCert == "") != (a.TLSKey == "") {
		return errors.New("mydata.api.tls_key: mydata.api.tls_cert and mydata.api.tls_key go together")
	}
	if a.ClientCAFile != "" && a.TLSCert == "" {
		return errors.New("mydata.api.client_ca_file: needs mydata.api.tls_cert (client certificates need TLS)")
	}
	if a.ClientCAFile == "" && a.ClientSecretFile == "" {
		return errors.New("mydata.api.client_secret_file: the DP-API must authenticate at introspection: set it, or mydata.api.client_ca_file, or both")
	}
	return nil
}

// CheckMyDataSet checks what no one dataset's Validate can see: mydata datasets that share an api.listen
// must give it the same TLS settings, and each its own resource (their tokens and secrets would mix).
func CheckMyDataSet(backends map[string]Config) error {
	type seen struct{ id, tls string }
	addrs := map[string]seen{}
	resources := map[string]string{}
	for _, id := range slices.Sorted(maps.Keys(backends)) {
		c := backends[id]
		if c.Type != TypeMyData {
			continue
		}
		a := c.MyData.API
		if _, port, _ := net.SplitHostPort(a.Listen); port == "0" {
			continue // a listener of its own, as attachAPI does
		}
		tlsID := a.TLSCert + "\x00" + a.TLSKey + "\x00" + a.ClientCAFile
		if s, ok := addrs[a.Listen]; ok && s.tls != tlsID {
			return fmt.Errorf("datasets.%s.backend.mydata.api: shares %s with dataset %s but not its tls_cert, tls_key and client_ca_file", id, a.Listen, s.id)
		}
		addrs[a.Listen] = seen{id, tlsID}
		key := a.Listen + " " + c.MyData.Resource
		if other, ok := resources[key]; ok {
			return fmt.Errorf("datasets.%s.backend.mydata.resource: %q is dataset %s's on %s already", id, c.MyData.Resource, other, a.Listen)
		}
		resources[key] = id
	}
	return nil
}

// checkResource keeps the resource name to what fits a URL path segment unescaped.
func checkResource(r string) error {
	if r == "" {
		return errors.New("required (the {resource} of the DP-API's introspection URL)")
	}
	if len(r) > 64 {
		return errors.New("longer than 64 characters")
	}
	for i := 0; i < len(r); i++ {
		c := r[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%q: only letters, digits, '.', '_' and '-'", r)
		}
	}
	return nil
}

// checkListen accepts host:port with a port from 0 (any free port: tests) to 65535; the host may be empty
// (all interfaces).
func checkListen(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}

type myDataBackend struct {
	method    string
	url       string
	host      string // for the log
	resource  string
	client    *http.Client
	transport *http.Transport
	timeout   time.Duration
	maxBytes  int64
	ttl       time.Duration
	signer    *x509.Certificate // nil: packages passed on unchecked
	fields    []string
	secret    []byte // the DP-API's client secret at introspection; nil: mTLS only
	now       func() time.Time

	api *apiListener // where the DP-API introspects, shared with other mydata backends on the same address
	res *apiResource // this backend's resource there: its live tokens

	closeOnce sync.Once
	closeErr  error
}

func newMyData(c MyDataConfig) (*myDataBackend, error) {
	b := &myDataBackend{
		method: c.Method, url: c.URL, resource: c.Resource, timeout: c.Timeout, maxBytes: c.MaxBytes, ttl: c.TokenTTL,
		fields: c.UserinfoFields, now: time.Now,
	}
	if b.method == "" {
		b.method = http.MethodGet
	}
	if u, err := url.Parse(c.URL); err == nil {
		b.host = u.Host
	}
	if b.timeout == 0 {
		b.timeout = DefaultMyDataTimeout
	}
	if b.maxBytes == 0 {
		b.maxBytes = DefaultMyDataMaxBytes
	}
	if b.ttl == 0 {
		b.ttl = DefaultMyDataTokenTTL
	}
	if b.fields == nil {
		b.fields = DefaultUserinfoFields
	}
	if c.SigningCert != "" {
		cert, err := readCert(c.SigningCert)
		if err != nil {
			return nil, fmt.Errorf("%w: mydata.signing_cert: %w", ErrBackend, err)
		}
		if time.Now().After(cert.NotAfter) {
			return nil, fmt.Errorf("%w: mydata.signing_cert: expired on %s", ErrBackend, cert.NotAfter.Format(time.DateOnly))
		}
		b.signer = cert
	}
	if c.API.ClientSecretFile != "" {
		data, err := os.ReadFile(c.API.ClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("%w: mydata.api.client_secret_file: %w", ErrBackend, err)
		}
		if b.secret = bytes.TrimSpace(data); len(b.secret) < 16 {
			return nil, fmt.Errorf("%w: mydata.api.client_secret_file: the secret must be at least 16 characters", ErrBackend)
		}
	}
	var err error
	if b.transport, err = agencyTransport(TypeMyData, b.timeout, c.CAFile, c.ClientCert, c.ClientKey); err != nil {
		return nil, err
	}
	b.client = &http.Client{
		Transport: b.transport,
		// No redirects: the token must not travel to a host the agency's config did not name.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	if b.api, b.res, err = attachAPI(c.API, b); err != nil {
		b.transport.CloseIdleConnections()
		return nil, err
	}
	return b, nil
}

func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("no PEM certificate in %s", path)
	}
	return x509.ParseCertificate(blk.Bytes)
}

// Addr is where the introspection and userinfo listener is (tests ask for port 0).
func (b *myDataBackend) Addr() net.Addr { return b.api.ln.Addr() }

func (b *myDataBackend) Close() error {
	b.closeOnce.Do(func() {
		b.transport.CloseIdleConnections()
		b.closeErr = b.api.detach(b)
	})
	return b.closeErr
}

func (b *myDataBackend) Fetch(ctx context.Context, subject string) (*Result, error) {
	if err := checkSubject(subject); err != nil {
		return nil, err
	}
	now := b.now()
	t, ok := TransferFrom(ctx)
	if !ok {
		// Outside a ticket (a test, a health probe): a transfer of its own that lives token_ttl.
		t = Transfer{ID: randomID(), Expires: now.Add(b.ttl), Client: "mydata-connector"}
	}
	exp := now.Add(b.ttl)
	if t.Expires.Before(exp) {
		exp = t.Expires
	}
	if !exp.After(now) {
		return nil, failf("mydata: the transfer's ticket has expired")
	}
	tok, hash := b.res.tokens.issue(tokenRecord{transfer: t.ID, subject: subject, sub: b.res.sub(subject), client: t.Client,
		scope: b.resource, fields: b.fields, issued: now, expires: exp})
	// Single use: whatever the DP-API answers, the token is of no more use once it has.
	defer b.res.tokens.revoke(hash)

	ctx, cancel := context.WithCancel(ctx)
	var body io.Reader
	if b.method == http.MethodPost {
		body = http.NoBody
	}
	req, err := http.NewRequestWithContext(ctx, b.method, b.url, body)
	if err != nil {
		cancel()
		return nil, failf("mydata: request to %s: %v", b.host, stripURL(err))
	}
	req.Header.Set("Authorization", "Bearer "+MyDataTokenPrefix+tok)
	req.Header.Set("User-Agent", "mydata-connector")
	req.Header.Set("Accept", "application/zip")
	wd := newWatchdog(b.timeout, cancel)
	resp, err := b.client.Do(req)
	wd.disarm()
	if err != nil {
		cancel()
		if wd.expired() {
			return nil, failf("mydata: %s %s: no answer within %s: %w", b.method, b.host, b.timeout, context.DeadlineExceeded)
		}
		return nil, failf("mydata: %s %s: %w", b.method, b.host, stripURL(err))
	}
	b.res.tokens.revoke(hash)
	done := func() {
		wd.arm()
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		wd.disarm()
		resp.Body.Close()
		cancel()
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNoContent, http.StatusNotFound:
		done()
		return &Result{Status: NoRecord, Size: -1}, nil
	case http.StatusTooManyRequests, http.StatusAccepted:
		done()
		wait, ok := parseRetryAfter(resp.Header.Get("Retry-After"), b.now())
		if !ok {
			wait = defaultRetryAfter
		}
		return &Result{Status: NotReady, RetryAfter: wait, Size: -1}, nil
	default:
		// The agency's own text stays out of the error: it may quote the citizen.
		done()
		return nil, failf("mydata: %s answered %d %s", b.host, resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	if resp.ContentLength > b.maxBytes {
		resp.Body.Close()
		cancel()
		return nil, failf("mydata: %s announces %d bytes, more than mydata.max_bytes (%d)", b.host, resp.ContentLength, b.maxBytes)
	}
	rb := &httpBody{rc: resp.Body, max: b.maxBytes, wd: wd, cancel: cancel, host: b.host, key: TypeMyData, timeout: b.timeout}
	if b.signer == nil {
		// Unchecked, but at least a zip: an error page sent with 200 must not reach the SP as the data.
		br := bufio.NewReader(rb)
		if magic, err := br.Peek(4); err != nil || !isZipMagic(magic) {
			rb.Close()
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, err
			}
			return nil, failf("mydata: %s answered 200 with something that is not a zip", b.host)
		}
		return &Result{Status: Found, ContentType: "application/zip", Size: resp.ContentLength, Body: readCloser{br, rb}}, nil
	}
	// A zip is read from its end and its signature must hold before any of it goes on: hold it whole.
	pkg, err := io.ReadAll(rb)
	rb.Close()
	if err != nil {
		return nil, err
	}
	if err := verifyPackage(pkg, b.signer, b.maxBytes, b.now()); err != nil {
		return nil, failf("mydata: package from %s refused: %v", b.host, err)
	}
	return &Result{Status: Found, ContentType: "application/zip", Size: int64(len(pkg)), Body: io.NopCloser(bytes.NewReader(pkg))}, nil
}

// isZipMagic tells a zip by its first four bytes: a local file header, or the end record of an empty zip.
func isZipMagic(b []byte) bool {
	return bytes.Equal(b, []byte("PK\x03\x04")) || bytes.Equal(b, []byte("PK\x05\x06"))
}

type readCloser struct {
	io.Reader
	io.Closer
}

func randomID() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// tokenRecord is what the connector knows of one live token.
type tokenRecord struct {
	hash     [sha256.Size]byte
	transfer string
	subject  string
	sub      string   // the subject's pseudonym
	client   string   // who receives the data
	scope    string   // the resource
	fields   []string // what userinfo may tell: the dataset's setting when the token was issued
	issued   time.Time
	expires  time.Time
}

// tokenStore holds live tokens by the SHA-256 of their value: the value itself is never kept, so a
// memory dump shows no usable token, and a lookup compares hashes in constant time.
type tokenStore struct {
	mu         sync.Mutex
	byHash     map[[sha256.Size]byte]*tokenRecord
	byTransfer map[string][sha256.Size]byte
}

func newTokenStore() *tokenStore {
	return &tokenStore{byHash: map[[sha256.Size]byte]*tokenRecord{}, byTransfer: map[string][sha256.Size]byte{}}
}

// issue makes a token for r's transfer, revoking any earlier one of the same transfer (one live token per
// transfer), and forgets expired tokens.
func (s *tokenStore) issue(r tokenRecord) (string, [sha256.Size]byte) {
	var raw [32]byte
	rand.Read(raw[:])
	tok := base64.RawURLEncoding.EncodeToString(raw[:])
	r.hash = sha256.Sum256([]byte(tok))
	s.mu.Lock()
	defer s.mu.Unlock()
	for h, old := range s.byHash {
		if !old.expires.After(r.issued) {
			s.drop(h)
		}
	}
	if h, ok := s.byTransfer[r.transfer]; ok {
		s.drop(h)
	}
	s.byHash[r.hash] = &r
	s.byTransfer[r.transfer] = r.hash
	return tok, r.hash
}

func (s *tokenStore) drop(h [sha256.Size]byte) {
	if r, ok := s.byHash[h]; ok {
		delete(s.byHash, h)
		if s.byTransfer[r.transfer] == h {
			delete(s.byTransfer, r.transfer)
		}
	}
}

func (s *tokenStore) revoke(h [sha256.Size]byte) {
	s.mu.Lock()
	s.drop(h)
	s.mu.Unlock()
}

func (s *tokenStore) clear() {
	s.mu.Lock()
	clear(s.byHash)
	clear(s.byTransfer)
	s.mu.Unlock()
}

// lookup returns a copy of the live record for tok, or false.
func (s *tokenStore) lookup(tok string, now time.Time) (tokenRecord, bool) {
	h := sha256.Sum256([]byte(tok))
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.byHash[h]
	if !ok {
		return tokenRecord{}, false
	}
	if subtle.ConstantTimeCompare(r.hash[:], h[:]) != 1 {
		return tokenRecord{}, false
	}
	if !r.expires.After(now) {
		s.drop(h)
		return tokenRecord{}, false
	}
	return *r, true
}

// validNationalID checks a Republic of China national ID (or resident certificate number): a letter, 1, 2,
// 8 or 9, seven digits and a check digit.
func validNationalID(id string) bool {
	const letters = "ABCDEFGHJKLMNPQRSTUVXYWZIO" // in the order of their codes 10..35
	if len(id) != 10 {
		return false
	}
	code := strings.IndexByte(letters, id[0])
	if code < 0 || !strings.ContainsRune("1289", rune(id[1])) {
		return false
	}
	code += 10
	sum := code/10 + code%10*9
	for i := 1; i < 10; i++ {
		d := id[i]
		if d < '0' || d > '9' {
			return false
		}
		w := 9 - i
		if i == 9 {
			w = 1
		}
		sum += int(d-'0') * w
	}
	return sum%10 == 0
}
