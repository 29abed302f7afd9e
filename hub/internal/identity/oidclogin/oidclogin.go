// Package oidclogin is the login method that sends the citizen to an external OpenID provider — a
// national identity provider, or the OP in front of a wallet app — and takes a national ID and an
// assurance level from the ID token it returns.
//
// It is a relying party for the authorization code flow with PKCE (S256), state and nonce. The portal
// drives it: Start gives the URL to redirect to and a State to keep in a signed cookie; the callback
// hands the State and the query to Finish, which checks the answer, redeems the code, verifies the ID
// token and returns the subject, level and evidence for an identity.Result. The package keeps no
// per-login state of its own, so any hub node can finish a login another started.
package oidclogin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Config is one OpenID provider as a login method. YAML keys are given in the tags; errors name them.
type Config struct {
	// ID is the method id ("tw-wallet"): in the portal's URLs, in identity.Result.Method, in the State.
	ID string `yaml:"id"`
	// Issuer is the OP's issuer URL exactly as its discovery document states it; https, or http on a
	// loopback host for tests.
	Issuer string `yaml:"issuer"`
	// ClientID is the hub's client id at the OP; the ID token's audience must hold it.
	ClientID string `yaml:"client_id"`
	// ClientSecret authenticates the hub at the token endpoint (client_secret_basic, or
	// client_secret_post if the OP offers only that). Prefer ClientSecretFile: exactly one is required.
	ClientSecret string `yaml:"client_secret"`
	// ClientSecretFile holds the secret (surrounding white space ignored); read once, by New.
	ClientSecretFile string `yaml:"client_secret_file"`
	// RedirectURL is the portal's callback for this method, as registered at the OP
	// (https://portal.example/login/oidc/tw-wallet/callback).
	RedirectURL string `yaml:"redirect_url"`
	// Scopes requested; "openid" is added if missing. Default: openid.
	Scopes []string `yaml:"scopes"`
	// SubjectClaim names the ID-token claim that holds the national ID ("sub", "national_id"). It must
	// be a JSON string; the portal checks its format. Default: sub.
	SubjectClaim string `yaml:"subject_claim"`
	// ACRLevels maps values of the acr claim to assurance levels (1 and up).
	ACRLevels map[string]int `yaml:"acr_levels"`
	// AMRLevels maps values of the amr claim to assurance levels (1 and up).
	AMRLevels map[string]int `yaml:"amr_levels"`
	// DefaultLevel is the level of a login whose acr and amr map to nothing; 0 refuses such a login
	// (ErrLevel).
	DefaultLevel int `yaml:"default_level"`
	// RequestedACR is sent as acr_values, in order of preference. The OP may still answer with another
	// acr; the level comes from what it answers, never from what was asked.
	RequestedACR []string `yaml:"requested_acr"`
	// HTTPTimeout bounds each request to the OP (discovery, token, keys). Default: 10s.
	HTTPTimeout time.Duration `yaml:"http_timeout"`
}

const (
	defaultHTTPTimeout = 10 * time.Second
	// discoveryRetry is how long a failed discovery is remembered: a dead IdP costs one attempt per
	// interval, not one per click on its login button.
	discoveryRetry = 5 * time.Second
	// clockSkew is how far in the future a State's issued-at may lie (hub nodes' clocks differ).
	clockSkew = time.Minute
)

// Claims that an OP sets for its own purposes and that cannot name a person.
var reservedClaims = []string{"iss", "aud", "exp", "iat", "nbf", "nonce", "acr", "amr", "azp", "auth_time",
	"at_hash", "c_hash", "s_hash", "sid", "jti"}

// Validate checks the configuration without touching the network or the secret file.
func (c Config) Validate() error {
	if err := validID(c.ID); err != nil {
		return fmt.Errorf("id: %w", err)
	}
	if c.Issuer == "" {
		return errors.New("issuer: required")
	}
	if err := checkURL(c.Issuer); err != nil {
		return fmt.Errorf("issuer: %w", err)
	}
	if c.ClientID == "" {
		return errors.New("client_id: required")
	}
	switch {
	case c.ClientSecret != "" && c.ClientSecretFile != "":
		return errors.New("client_secret, client_secret_file: give one, not both")
	case c.ClientSecret == "" && c.ClientSecretFile == "":
		return errors.New("client_secret_file: required (or client_secret)")
	}
	if c.RedirectURL == "" {
		return errors.New("redirect_url: required")
	}
	if err := checkURL(c.RedirectURL); err != nil {
		return fmt.Errorf("redirect_url: %w", err)
	}
	for i, s := range c.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			return fmt.Errorf("scopes[%d]: %q is not a scope", i, s)
		}
	}
	if slices.Contains(reservedClaims, c.SubjectClaim) {
		return fmt.Errorf("subject_claim: %q is a protocol claim, not one that names a person", c.SubjectClaim)
	}
	for key, m := range map[string]map[string]int{"acr_levels": c.ACRLevels, "amr_levels": c.AMRLevels} {
		for v, l := range m {
			if v == "" {
				return fmt.Errorf("%s: an empty value", key)
			}
			if l < 1 {
				return fmt.Errorf("%s[%q]: level %d, want 1 or more", key, v, l)
			}
		}
	}
	if c.DefaultLevel < 0 {
		return fmt.Errorf("default_level: %d, want 0 (refuse) or more", c.DefaultLevel)
	}
	if c.DefaultLevel == 0 && len(c.ACRLevels) == 0 && len(c.AMRLevels) == 0 {
		return errors.New("acr_levels, amr_levels: both empty and default_level is 0, so every login would be refused")
	}
	for i, a := range c.RequestedACR {
		if a == "" || strings.ContainsAny(a, " \t\r\n") {
			return fmt.Errorf("requested_acr[%d]: %q is not an acr value", i, a)
		}
	}
	if c.HTTPTimeout < 0 {
		return fmt.Errorf("http_timeout: %s is negative", c.HTTPTimeout)
	}
	return nil
}

// checkURL accepts an absolute https URL, or http on a loopback host, without a fragment.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q: %w", raw, err)
	}
	if u.Host == "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q: want an absolute URL without user info or fragment", raw)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !loopback(u.Hostname()) {
			return fmt.Errorf("%q: http is for loopback hosts only; use https", raw)
		}
	default:
		return fmt.Errorf("%q: not an https:// URL", raw)
	}
	return nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// RP is the relying party for one OpenID provider. It is safe for concurrent use.
type RP struct {
	cfg    Config
	secret string
	client *http.Client
	now    func() time.Time

	mu      sync.Mutex
	op      *discovered // nil until discovery succeeds; then kept
	lastTry time.Time
	lastErr error
}

// discovered is what the OP's discovery document gives.
type discovered struct {
	oauth  oauth2.Config
	keys   *oidc.RemoteKeySet // caches the OP's keys, refetching on an unknown key id
	config *oidc.Config
}

// verifyIDToken verifies raw and tells an OP whose keys cannot be fetched (ErrUnavailable) from a token
// that fails (ErrToken). go-oidc's verifier reports key-fetch errors as text only, so the key set is
// wrapped per call to keep the error.
func (d *discovered) verifyIDToken(ctx context.Context, issuer, raw string) (*oidc.IDToken, error) {
	ks := &keyErr{KeySet: d.keys}
	idt, err := oidc.NewVerifier(issuer, ks, d.config).Verify(ctx, raw)
	if err != nil {
		if ks.err != nil && unreachable(ks.err) {
			return nil, fmt.Errorf("%w: verify id token: %w", ErrUnavailable, ks.err)
		}
		return nil, fmt.Errorf("%w: verify id token: %w", ErrToken, err)
	}
	return idt, nil
}

type keyErr struct {
	oidc.KeySet
	err error
}

func (k *keyErr) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	p, err := k.KeySet.VerifySignature(ctx, jwt)
	k.err = err
	return p, err
}

// signingAlgs keeps the algorithms go-oidc can verify of those the OP announces; none means RS256, the
// default of both OpenID Connect and go-oidc.
func signingAlgs(announced []string) []string {
	known := []string{oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512,
		oidc.PS256, oidc.PS384, oidc.PS512, oidc.EdDSA}
	var algs []string
	for _, a := range announced {
		if slices.Contains(known, a) {
			algs = append(algs, a)
		}
	}
	return algs
}

// New validates cfg, reads the client secret file and returns the RP. It does not contact the OP, and
// does not use ctx today: discovery happens on the first Start or Finish and is retried until it
// succeeds, so an OP that is down when the hub starts costs only its own logins. client may be nil (a
// client with HTTPTimeout); it is copied, and its 5xx responses count as the OP being unavailable.
func New(ctx context.Context, cfg Config, client *http.Client) (*RP, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	secret := cfg.ClientSecret
	if cfg.ClientSecretFile != "" {
		b, err := os.ReadFile(cfg.ClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("client_secret_file: %w", err)
		}
		secret = strings.TrimSpace(string(b))
		if secret == "" {
			return nil, fmt.Errorf("client_secret_file: %s is empty", cfg.ClientSecretFile)
		}
	}
	if cfg.HTTPTimeout == 0 {
		cfg.HTTPTimeout = defaultHTTPTimeout
	}
	if cfg.SubjectClaim == "" {
		cfg.SubjectClaim = "sub"
	}
	if !slices.Contains(cfg.Scopes, oidc.ScopeOpenID) {
		cfg.Scopes = append([]string{oidc.ScopeOpenID}, cfg.Scopes...)
	}
	// Copies, so that the caller's config stays theirs.
	cfg.Scopes = slices.Clone(cfg.Scopes)
	cfg.RequestedACR = slices.Clone(cfg.RequestedACR)
	cfg.ACRLevels = maps.Clone(cfg.ACRLevels)
	cfg.AMRLevels = maps.Clone(cfg.AMRLevels)

	var c http.Client
	if client != nil {
		c = *client
	}
	if c.Timeout == 0 {
		// The key set is fetched on a background context of go-oidc's, so only the client can bound it.
		c.Timeout = cfg.HTTPTimeout
	}
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c.Transport = statusTransport{base}
	return &RP{cfg: cfg, secret: secret, client: &c, now: time.Now}, nil
}

// ID is the configured method id.
func (rp *RP) ID() string { return rp.cfg.ID }

// discover returns the OP's endpoints and verifier, fetching the discovery document the first time
// and after a failure (at most once per discoveryRetry).
func (rp *RP) discover(ctx context.Context) (*discovered, error) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if rp.op != nil {
		return rp.op, nil
	}
	if rp.lastErr != nil && rp.now().Sub(rp.lastTry) < discoveryRetry {
		return nil, rp.lastErr
	}
	d, err := rp.fetchDiscovery(ctx)
	if err != nil {
		err = fmt.Errorf("%w: discovery at %s: %w", ErrUnavailable, rp.cfg.Issuer, err)
		// A caller that gave up says nothing about the OP: do not make others wait for its failure.
		if ctx.Err() == nil {
			rp.lastTry, rp.lastErr = rp.now(), err
		}
		return nil, err
	}
	rp.op, rp.lastErr = d, nil
	return d, nil
}

func (rp *RP) fetchDiscovery(ctx context.Context) (*discovered, error) {
	ctx, cancel := context.WithTimeout(ctx, rp.cfg.HTTPTimeout)
	defer cancel()
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, rp.client), rp.cfg.Issuer)
	if err != nil {
		return nil, err
	}
	var meta struct {
		AuthMethods []string `json:"token_endpoint_auth_methods_supported"`
		PKCEMethods []string `json:"code_challenge_methods_supported"`
		SigningAlgs []string `json:"id_token_signing_alg_values_supported"`
		JWKSURI     string   `json:"jwks_uri"`
		AuthURL     string   `json:"authorization_endpoint"`
		TokenURL    string   `json:"token_endpoint"`
	}
	if err := p.Claims(&meta); err != nil {
		return nil, err
	}
	if meta.AuthURL == "" || meta.TokenURL == "" || meta.JWKSURI == "" {
		return nil, errors.New("the document lacks authorization_endpoint, token_endpoint or jwks_uri")
	}
	if len(meta.PKCEMethods) > 0 && !slices.Contains(meta.PKCEMethods, "S256") {
		return nil, fmt.Errorf("PKCE S256 not supported (code_challenge_methods_supported: %q)", meta.PKCEMethods)
	}
	ep := p.Endpoint()
	// Absent means client_secret_basic (OpenID Connect Discovery 1.0, section 3). Choosing here, rather
	// than letting oauth2 probe, keeps a refused code from being sent twice.
	switch {
	case len(meta.AuthMethods) == 0 || slices.Contains(meta.AuthMethods, "client_secret_basic"):
		ep.AuthStyle = oauth2.AuthStyleInHeader
	case slices.Contains(meta.AuthMethods, "client_secret_post"):
		ep.AuthStyle = oauth2.AuthStyleInParams
	default:
		return nil, fmt.Errorf("token endpoint offers neither client_secret_basic nor client_secret_post (%q)", meta.AuthMethods)
	}
	return &discovered{
		oauth: oauth2.Config{
			ClientID:     rp.cfg.ClientID,
			ClientSecret: rp.secret,
			Endpoint:     ep,
			RedirectURL:  rp.cfg.RedirectURL,
			Scopes:       rp.cfg.Scopes,
		},
		keys: oidc.NewRemoteKeySet(oidc.ClientContext(context.Background(), rp.client), meta.JWKSURI),
		config: &oidc.Config{
			ClientID:             rp.cfg.ClientID,
			SupportedSigningAlgs: signingAlgs(meta.SigningAlgs),
			Now:                  rp.now,
		},
	}, nil
}

// Start begins a login: it returns the OP's authorization URL to redirect the browser to and the State
// the portal must keep (signed, in a cookie) until the callback. It fails with ErrUnavailable while the
// OP's discovery document cannot be had.
func (rp *RP) Start(ctx context.Context) (authURL string, st State, err error) {
	d, err := rp.discover(ctx)
	if err != nil {
		return "", State{}, err
	}
	st = newState(rp.cfg.ID, rp.now())
	opts := []oauth2.AuthCodeOption{oidc.Nonce(st.Nonce), oauth2.S256ChallengeOption(st.Verifier)}
	if len(rp.cfg.RequestedACR) > 0 {
		opts = append(opts, oauth2.SetAuthURLParam("acr_values", strings.Join(rp.cfg.RequestedACR, " ")))
	}
	return d.oauth.AuthCodeURL(st.State, opts...), st, nil
}

// Finish completes a login from the callback's query and the State that Start gave. It returns the
// subject (the configured claim, unchecked: the portal validates the national-ID format), the assurance
// level and evidence ("<issuer> acr=<acr> amr=<a,b>", no personal data) for the consent record.
//
// In order, it refuses: a State that is not this method's, is expired, or whose state differs from the
// callback's (ErrState); an error response from the OP (*IdPError, ErrIdP); a code the token endpoint
// will not redeem with this State's verifier, and an ID token with a bad signature, another issuer or
// audience, past its expiry, or with another nonce (ErrToken); no string in the subject claim
// (ErrNoSubject); no level (ErrLevel). An OP that cannot be reached gives ErrUnavailable.
//
// The level is the highest of ACRLevels[acr] and AMRLevels[v] for every amr value v, values that are
// not configured being ignored; if none is configured, DefaultLevel, and if that is 0, ErrLevel.
// Taking the highest rather than, say, the acr alone lets a configuration rate either the OP's
// statement of assurance (acr) or the factors it reports (amr), whichever the OP fills in reliably.
func (rp *RP) Finish(ctx context.Context, st State, query url.Values) (subject string, level int, evidence string, err error) {
	if err := rp.checkState(st, query); err != nil {
		return "", 0, "", err
	}
	if code := query.Get("error"); code != "" {
		return "", 0, "", &IdPError{Code: clean(code, 64), Description: cleanText(query.Get("error_description"), 200)}
	}
	codes := query["code"]
	if len(codes) != 1 || codes[0] == "" {
		return "", 0, "", fmt.Errorf("%w: the callback carries no code and no error", ErrToken)
	}
	d, err := rp.discover(ctx)
	if err != nil {
		return "", 0, "", err
	}

	xctx, cancel := context.WithTimeout(context.WithValue(ctx, oauth2.HTTPClient, rp.client), rp.cfg.HTTPTimeout)
	defer cancel()
	tok, err := d.oauth.Exchange(xctx, codes[0], oauth2.VerifierOption(st.Verifier))
	if err != nil {
		return "", 0, "", classify("redeem code", err)
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok || raw == "" {
		return "", 0, "", fmt.Errorf("%w: the token response has no id_token", ErrToken)
	}
	idt, err := d.verifyIDToken(xctx, rp.cfg.Issuer, raw)
	if err != nil {
		return "", 0, "", err
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(st.Nonce)) != 1 {
		return "", 0, "", fmt.Errorf("%w: verify id token: nonce differs from the login's", ErrToken)
	}
	var claims struct {
		ACR string   `json:"acr"`
		AMR []string `json:"amr"`
		AZP string   `json:"azp"`
	}
	if err := idt.Claims(&claims); err != nil {
		return "", 0, "", fmt.Errorf("%w: id token claims: %w", ErrToken, err)
	}
	// go-oidc checks that the audience holds our client id, not that the token was issued to us: with
	// several audiences, OpenID Connect Core 3.1.3.7 makes azp the one it was issued to.
	if (len(idt.Audience) > 1 || claims.AZP != "") && claims.AZP != rp.cfg.ClientID {
		return "", 0, "", fmt.Errorf("%w: verify id token: issued to %q (azp), not to this client", ErrToken, claims.AZP)
	}

	subject, err = rp.subject(idt)
	if err != nil {
		return "", 0, "", err
	}
	level, ok = rp.level(claims.ACR, claims.AMR)
	evidence = evidenceOf(rp.cfg.Issuer, claims.ACR, claims.AMR)
	if !ok {
		return "", 0, "", fmt.Errorf("%w: %s maps to no level and default_level is 0", ErrLevel, evidence)
	}
	return subject, level, evidence, nil
}

func (rp *RP) checkState(st State, query url.Values) error {
	if st.Method != rp.cfg.ID {
		return fmt.Errorf("%w: the state was made for method %q, not %q", ErrState, st.Method, rp.cfg.ID)
	}
	if st.State == "" || st.Nonce == "" || st.Verifier == "" {
		return fmt.Errorf("%w: incomplete state", ErrState)
	}
	now := rp.now()
	if now.Sub(st.IssuedAt) > StateLifetime || st.IssuedAt.Sub(now) > clockSkew {
		return fmt.Errorf("%w: the state was issued at %s, outside the %s it lives", ErrState, st.IssuedAt.UTC().Format(time.RFC3339), StateLifetime)
	}
	got := query["state"]
	if len(got) != 1 || subtle.ConstantTimeCompare([]byte(got[0]), []byte(st.State)) != 1 {
		return fmt.Errorf("%w: the callback's state is not this browser's", ErrState)
	}
	// RFC 9207: an OP that names itself in the response must be the one we sent the browser to.
	if iss, ok := query["iss"]; ok && (len(iss) != 1 || iss[0] != rp.cfg.Issuer) {
		return fmt.Errorf("%w: the response comes from issuer %q", ErrState, clean(strings.Join(iss, ","), 200))
	}
	return nil
}

func (rp *RP) subject(idt *oidc.IDToken) (string, error) {
	if rp.cfg.SubjectClaim == "sub" {
		if idt.Subject == "" {
			return "", fmt.Errorf("%w: sub is empty", ErrNoSubject)
		}
		return idt.Subject, nil
	}
	var all map[string]json.RawMessage
	if err := idt.Claims(&all); err != nil {
		return "", fmt.Errorf("%w: id token claims: %w", ErrToken, err)
	}
	v, ok := all[rp.cfg.SubjectClaim]
	if !ok {
		return "", fmt.Errorf("%w: the id token has no %s claim", ErrNoSubject, rp.cfg.SubjectClaim)
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil || s == "" {
		return "", fmt.Errorf("%w: the %s claim is not a non-empty string", ErrNoSubject, rp.cfg.SubjectClaim)
	}
	return s, nil
}

// level implements the rule documented on Finish.
func (rp *RP) level(acr string, amr []string) (int, bool) {
	best := 0
	if l, ok := rp.cfg.ACRLevels[acr]; ok && acr != "" {
		best = l
	}
	for _, v := range amr {
		if l, ok := rp.cfg.AMRLevels[v]; ok {
			best = max(best, l)
		}
	}
	if best == 0 {
		best = rp.cfg.DefaultLevel
	}
	return best, best > 0
}

// evidenceOf names the OP and what it said about the authentication; "-" for a claim it left out.
func evidenceOf(issuer, acr string, amr []string) string {
	a := clean(acr, 64)
	if a == "" {
		a = "-"
	}
	var ms []string
	for _, v := range amr {
		if len(ms) == 8 {
			ms = append(ms, "...")
			break
		}
		ms = append(ms, clean(v, 32))
	}
	m := strings.Join(ms, ",")
	if m == "" {
		m = "-"
	}
	return fmt.Sprintf("%s acr=%s amr=%s", issuer, a, m)
}

// clean makes a word from the OP (an error code, an acr or amr value) safe for a log line or a page:
// printable ASCII without spaces kept, anything else replaced by '?', at most n bytes.
func clean(s string, n int) string { return sanitize(s, n, false) }

// cleanText is clean for free text (error_description), which keeps its spaces.
func cleanText(s string, n int) string { return sanitize(s, n, true) }

func sanitize(s string, n int, spaces bool) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= n {
			break
		}
		if (r > ' ' && r < 0x7f) || (spaces && r == ' ') {
			b.WriteRune(r)
		} else {
			b.WriteByte('?')
		}
	}
	return b.String()
}

// classify wraps err in ErrUnavailable when the OP could not be asked, else in ErrToken.
func classify(what string, err error) error {
	if unreachable(err) {
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, what, err)
	}
	return fmt.Errorf("%w: %s: %w", ErrToken, what, err)
}

// statusTransport turns an OP's 5xx into a transport error, so that go-oidc and oauth2, which report
// status codes only as text, let Finish tell a failing OP from a refusing one.
type statusTransport struct {
	base http.RoundTripper
}

func (t statusTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 500 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		_ = resp.Body.Close()
		return nil, &serverError{status: resp.StatusCode}
	}
	return resp, nil
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the wrapped transport.
func (t statusTransport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
