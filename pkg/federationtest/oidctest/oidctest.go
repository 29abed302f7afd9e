// Package oidctest runs a real OpenID provider for tests: zitadel's op package (discovery, the
// authorization and token endpoints, PKCE, codes, token signing) over its example storage (clients, users,
// requests, codes). What is ours is a thin Storage wrapper that makes the OP state a configurable acr, amr,
// audience, national-ID claim and extra claims (the example storage always says amr=pwd and no acr), and a
// login page that authenticates its one user at once (or, told to, answers access_denied) instead of
// showing a form.
//
// Only tests import it — oidclogin's own and the end-to-end tests in pkg/federationtest — so it never
// reaches a binary. It lives under pkg/ rather than beside oidclogin because Go lets nothing outside hub/
// import hub/internal, and the end-to-end tests must start this same OP. Nothing here is fit for real use.
package oidctest

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

// UserID is the OP's one user's sub.
const UserID = "u-7f3a9c"

// Client is a relying party registered at the OP (a confidential web client; http redirect URLs are
// accepted, as on loopback in tests).
type Client struct {
	ID, Secret   string
	RedirectURLs []string
}

// Settings say what the OP does at the next logins.
type Settings struct {
	// ACR and AMR are what the ID token states.
	ACR string
	AMR []string
	// Audience, if not nil, replaces the ID token's audience (default: the client's id).
	Audience []string
	// NationalIDClaim and NationalID: the ID token and userinfo carry NationalIDClaim = NationalID when
	// both are set.
	NationalIDClaim string
	NationalID      string
	// Claims are more claims, set after the national ID (so they may replace it, with a number say).
	Claims map[string]any
	// Deny makes the login page answer access_denied ("the citizen cancelled").
	Deny bool
	// FailPath: requests whose path starts with it get 503.
	FailPath string
	// RewriteIDToken, if set, replaces the id_token of the token endpoint's answers: a stand-in for a
	// token that reaches the RP by some other way than the OP meant.
	RewriteIDToken func(string) string
}

// Options shape an OP.
type Options struct {
	// Listener is where the OP serves; nil: a fresh loopback port.
	Listener net.Listener
	// Clients are the relying parties it knows.
	Clients []Client
	// Settings are the first settings.
	Settings Settings
}

// OP is a running provider. Its methods are safe for concurrent use.
type OP struct {
	// Issuer is the OP's issuer URL: http://127.0.0.1:<port>.
	Issuer string

	srv      *httptest.Server
	store    *opStorage
	provider *op.Provider

	mu  sync.Mutex
	set Settings
}

// Start runs an OP until the test ends.
func Start(t testing.TB, opts Options) *OP {
	t.Helper()
	ln := opts.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	o := &OP{Issuer: "http://" + ln.Addr().String(), set: opts.Settings}
	users := userStore{UserID: {ID: UserID, Username: "citizen", Password: "correct horse"}}
	clients := map[string]*storage.Client{}
	for _, c := range opts.Clients {
		clients[c.ID] = storage.WebClient(c.ID, c.Secret, c.RedirectURLs...)
	}
	o.store = &opStorage{Storage: storage.NewStorageWithClients(users, clients), op: o}
	var err error
	o.provider, err = op.NewProvider(&op.Config{
		CryptoKey:      sha256.Sum256([]byte("oidctest")),
		CodeMethodS256: true,
		AuthMethodPost: true,
	}, o.store, op.StaticIssuer(o.Issuer), op.WithAllowInsecure())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	// storage.WebClient sends the browser to /login/username?authRequestID=...
	mux.Handle("/login/username", op.NewIssuerInterceptor(o.provider.IssuerFromRequest).HandlerFunc(o.login))
	mux.Handle("/", o.provider)
	o.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: o.gate(mux), ReadHeaderTimeout: 10 * time.Second}}
	o.srv.Start()
	t.Cleanup(o.srv.Close)
	return o
}

// Settings are the current settings.
func (o *OP) Settings() Settings {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.set
}

// Configure changes what the OP does from now on.
func (o *OP) Configure(f func(*Settings)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f(&o.set)
}

// Close stops the OP, as an identity provider that goes down.
func (o *OP) Close() { o.srv.Close() }

// gate answers 503 on the paths the test wants failing, and rewrites ID tokens when told to.
func (o *OP) gate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		set := o.Settings()
		if set.FailPath != "" && strings.HasPrefix(r.URL.Path, set.FailPath) {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		if set.RewriteIDToken == nil || r.URL.Path != "/oauth/token" {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		var body map[string]any
		if rec.Code == http.StatusOK && json.Unmarshal(rec.Body.Bytes(), &body) == nil {
			if idt, ok := body["id_token"].(string); ok {
				body["id_token"] = set.RewriteIDToken(idt)
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

// login stands in for the OP's login UI: the user authenticates at once, or cancels.
func (o *OP) login(w http.ResponseWriter, r *http.Request) {
	id := r.FormValue("authRequestID")
	if o.Settings().Deny {
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

// IDTokenFor runs a whole login as a client of the OP and returns the ID token it issued, signed by the
// OP like any other, for that client's audience.
func (o *OP) IDTokenFor(t testing.TB, c Client, nonce string) string {
	t.Helper()
	oc := oauth2.Config{
		ClientID:     c.ID,
		ClientSecret: c.Secret,
		Endpoint: oauth2.Endpoint{
			AuthURL:   o.Issuer + "/authorize",
			TokenURL:  o.Issuer + "/oauth/token",
			AuthStyle: oauth2.AuthStyleInHeader,
		},
		RedirectURL: c.RedirectURLs[0],
		Scopes:      []string{"openid"},
	}
	q := o.Browse(t, oc.AuthCodeURL("other-state", oauth2.SetAuthURLParam("nonce", nonce)), c.RedirectURLs[0])
	tok, err := oc.Exchange(context.Background(), q.Get("code"))
	if err != nil {
		t.Fatalf("login as %s: %v", c.ID, err)
	}
	idt, _ := tok.Extra("id_token").(string)
	if idt == "" {
		t.Fatalf("login as %s: no id_token", c.ID)
	}
	return idt
}

// Browse plays the browser: it follows the OP's redirects from authURL until one goes to callback (the
// relying party's redirect URL), and returns that redirect's query.
func (o *OP) Browse(t testing.TB, authURL, callback string) url.Values {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), callback) {
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
	if err != nil || !strings.HasPrefix(loc.String(), callback) {
		t.Fatalf("browse: the OP answered %s, not a redirect to the callback (location %v)", resp.Status, loc)
	}
	return loc.Query()
}

// opStorage makes the example storage's auth requests carry the acr, amr and audience of the settings,
// and its ID tokens the claims.
type opStorage struct {
	*storage.Storage
	op *OP
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
	set := s.op.Settings()
	return &authRequest{AuthRequest: r.(*storage.AuthRequest), acr: set.ACR, amr: set.AMR, audience: set.Audience}, nil
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
	set := s.op.Settings()
	if set.NationalIDClaim != "" && set.NationalID != "" {
		ui.AppendClaims(set.NationalIDClaim, set.NationalID)
	}
	for k, v := range set.Claims {
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
