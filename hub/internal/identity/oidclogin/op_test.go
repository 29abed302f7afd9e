package oidclogin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"maps"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/oauth2"
)

// The OpenID provider of these tests is zitadel's: its op package does discovery, the authorization and
// token endpoints, PKCE, code handling and token signing; its example storage keeps clients, users,
// requests and codes. What is ours is a thin Storage wrapper that makes the OP state a configurable acr,
// amr, audience and extra claims (the example storage always says amr=pwd and no acr), and a login page
// that authenticates the one user at once (or, told to, answers access_denied) instead of a form.

const (
	testClientID     = "mydata-hub"
	testClientSecret = "s3cret-for-tests"
	testRedirectURL  = "https://portal.example/login/oidc/tw-wallet/callback"
	testUserID       = "u-7f3a9c"
	otherClientID    = "another-rp"
	otherSecret      = "another-secret"
	testNationalID   = "A123456789"
)

// opSettings is what the OP says about the next logins.
type opSettings struct {
	acr      string
	amr      []string
	audience []string // nil: the client id, as the example storage does
	claims   map[string]any
	deny     bool   // the login page answers access_denied
	failPath string // requests whose path has this prefix get 503
	// rewriteIDToken, if set, replaces the id_token of the token endpoint's answers: a stand-in for
	// a token that reaches the RP by some other way than the OP meant.
	rewriteIDToken func(string) string
}

type testOP struct {
	issuer   string
	srv      *httptest.Server
	store    *opStorage
	provider *op.Provider

	mu  sync.Mutex
	set opSettings
}

func (o *testOP) settings() opSettings {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.set
}

// configure changes what the OP does from now on.
func (o *testOP) configure(f func(*opSettings)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f(&o.set)
}

// startOP runs a zitadel OP on ln (a fresh loopback port if nil) until the test ends.
func startOP(t *testing.T, ln net.Listener) *testOP {
	t.Helper()
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	o := &testOP{issuer: "http://" + ln.Addr().String()}
	o.set = opSettings{
		acr:    "urn:mydata:loa:high",
		amr:    []string{"pwd", "hwk"},
		claims: map[string]any{"national_id": testNationalID},
	}
	users := userStore{testUserID: {ID: testUserID, Username: "citizen", Password: "correct horse"}}
	clients := map[string]*storage.Client{
		testClientID: storage.WebClient(testClientID, testClientSecret, testRedirectURL),
		// Another relying party of the same OP, whose tokens must not log anyone in at the hub.
		otherClientID: storage.WebClient(otherClientID, otherSecret, testRedirectURL),
	}
	o.store = &opStorage{
		Storage: storage.NewStorageWithClients(users, clients),
		op:      o,
	}
	var err error
	o.provider, err = op.NewProvider(&op.Config{
		CryptoKey:      sha256.Sum256([]byte("oidclogin test")),
		CodeMethodS256: true,
		AuthMethodPost: true,
	}, o.store, op.StaticIssuer(o.issuer), op.WithAllowInsecure())
	if err != nil {
		t.Fatal(err)
	}

	mux := http.NewServeMux()
	// storage.WebClient sends the browser to /login/username?authRequestID=...
	mux.Handle("/login/username", op.NewIssuerInterceptor(o.provider.IssuerFromRequest).HandlerFunc(o.login))
	mux.Handle("/", o.provider)
	o.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: o.gate(mux)}}
	o.srv.Start()
	t.Cleanup(o.srv.Close)
	return o
}

// gate answers 503 on the paths the test wants failing, and rewrites ID tokens when told to.
func (o *testOP) gate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		set := o.settings()
		if set.failPath != "" && strings.HasPrefix(r.URL.Path, set.failPath) {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		if set.rewriteIDToken == nil || r.URL.Path != "/oauth/token" {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		var body map[string]any
		if rec.Code == http.StatusOK && json.Unmarshal(rec.Body.Bytes(), &body) == nil {
			if idt, ok := body["id_token"].(string); ok {
				body["id_token"] = set.rewriteIDToken(idt)
			}
			b, _ := json.Marshal(body)
			rec.Body = bytes.NewBuffer(b)
			rec.Header().Del("Content-Length")
		}
		maps.Copy(w.Header(), rec.Header())
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
}

// idTokenFor runs a whole login as another client of the OP and returns the ID token it issued, signed
// by the OP like any other, for that client's audience.
func (o *testOP) idTokenFor(t *testing.T, clientID, secret, nonce string) string {
	t.Helper()
	oc := oauth2.Config{
		ClientID:     clientID,
		ClientSecret: secret,
		Endpoint: oauth2.Endpoint{
			AuthURL:   o.issuer + "/authorize",
			TokenURL:  o.issuer + "/oauth/token",
			AuthStyle: oauth2.AuthStyleInHeader,
		},
		RedirectURL: testRedirectURL,
		Scopes:      []string{"openid"},
	}
	q := o.browse(t, oc.AuthCodeURL("other-state", oauth2.SetAuthURLParam("nonce", nonce)))
	tok, err := oc.Exchange(context.Background(), q.Get("code"))
	if err != nil {
		t.Fatalf("login as %s: %v", clientID, err)
	}
	idt, _ := tok.Extra("id_token").(string)
	if idt == "" {
		t.Fatalf("login as %s: no id_token", clientID)
	}
	return idt
}

// login stands in for the OP's login UI: the citizen authenticates at once, or cancels.
func (o *testOP) login(w http.ResponseWriter, r *http.Request) {
	id := r.FormValue("authRequestID")
	if o.settings().deny {
		req, err := o.store.Storage.AuthRequestByID(r.Context(), id)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		op.AuthRequestError(w, r, req.(*storage.AuthRequest), oidc.ErrAccessDenied().WithDescription("the citizen cancelled"), o.provider)
		return
	}
	if err := o.store.CheckUsernamePassword("citizen", "correct horse", id); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	http.Redirect(w, r, op.AuthCallbackURL(o.provider)(r.Context(), id), http.StatusFound)
}

// browse plays the browser: it follows the OP's redirects from authURL until one goes to the portal's
// callback, and returns that callback's query.
func (o *testOP) browse(t *testing.T, authURL string) url.Values {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), testRedirectURL) {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	resp, err := c.Get(authURL)
	if err != nil {
		t.Fatalf("browse %s: %v", authURL, err)
	}
	defer resp.Body.Close()
	loc, err := resp.Location()
	if err != nil || !strings.HasPrefix(loc.String(), testRedirectURL) {
		t.Fatalf("browse: the OP answered %s, not a redirect to the callback (location %v)", resp.Status, loc)
	}
	return loc.Query()
}

// opStorage makes the example storage's auth requests carry the acr, amr and audience of the settings,
// and its ID tokens the extra claims.
type opStorage struct {
	*storage.Storage
	op *testOP
}

type authRequest struct {
	*storage.AuthRequest
	acr      string
	amr      []string
	audience []string
}

func (a *authRequest) GetACR() string   { return a.acr }
func (a *authRequest) GetAMR() []string { return a.amr }
func (a *authRequest) GetAudience() []string {
	if a.audience != nil {
		return a.audience
	}
	return a.AuthRequest.GetAudience()
}

func (s *opStorage) wrap(r op.AuthRequest, err error) (op.AuthRequest, error) {
	if err != nil {
		return nil, err
	}
	set := s.op.settings()
	return &authRequest{AuthRequest: r.(*storage.AuthRequest), acr: set.acr, amr: set.amr, audience: set.audience}, nil
}

func (s *opStorage) AuthRequestByID(ctx context.Context, id string) (op.AuthRequest, error) {
	return s.wrap(s.Storage.AuthRequestByID(ctx, id))
}

func (s *opStorage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	return s.wrap(s.Storage.AuthRequestByCode(ctx, code))
}

// CreateAccessToken unwraps, because the example storage finds the client id by type switch.
func (s *opStorage) CreateAccessToken(ctx context.Context, req op.TokenRequest) (string, time.Time, error) {
	if a, ok := req.(*authRequest); ok {
		req = a.AuthRequest
	}
	return s.Storage.CreateAccessToken(ctx, req)
}

func (s *opStorage) SetUserinfoFromRequest(ctx context.Context, ui *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, ui, req, scopes); err != nil {
		return err
	}
	for k, v := range s.op.settings().claims {
		ui.AppendClaims(k, v)
	}
	return nil
}

// userStore is the example storage's UserStore over a fixed set of users.
type userStore map[string]*storage.User

func (u userStore) GetUserByID(id string) *storage.User { return u[id] }

func (u userStore) GetUserByUsername(name string) *storage.User {
	for _, user := range u {
		if user.Username == name {
			return user
		}
	}
	return nil
}

func (u userStore) ExampleClientID() string { return storage.ServiceUserID }
