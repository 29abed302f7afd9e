package portal

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mydatafed/mydata/pkg/hubapi"
)

// parTTL is how long a pushed request waits for the browser (RFC 9126 suggests 5 to 600 seconds; FAPI's
// profiles use 60 to 90).
const parTTL = 90 * time.Second

// pushed is a pushed request as its request_uri carries it: signed with the cluster's session key, so any
// node opens it and no raft entry is written for a request the citizen may never follow.
type pushed struct {
	Client  string `json:"c"`
	Params  string `json:"p"`
	Expires int64  `json:"x"`
}

// PushRequest takes an authorization request pushed by an SP connector (org/name, from its SVID), checks it
// as /oauth/authorize would, and returns the request_uri the browser carries instead.
func (s *Server) PushRequest(ctx context.Context, org, name string, req hubapi.PARRequest) (hubapi.PARResponse, *hubapi.Error) {
	q := url.Values{}
	for k, v := range map[string]string{"client_id": req.ClientID, "response_type": req.ResponseType, "redirect_uri": req.RedirectURI, "scope": req.Scope,
		"state": req.State, "code_challenge": req.CodeChallenge, "code_challenge_method": req.CodeChallengeMethod, "login_hint": req.LoginHint} {
		if v != "" {
			q.Set(k, v)
		}
	}
	svc, err := s.cfg.State.Service(req.ClientID)
	if err != nil {
		return hubapi.PARResponse{}, &hubapi.Error{Status: http.StatusInternalServerError, Message: "server_error", Description: "service lookup failed"}
	}
	// Only the service's own SP connector may push for it: the mutual TLS is the client authentication.
	if svc == nil || svc.SPOrg != org || svc.SPConnector != name {
		return hubapi.PARResponse{}, &hubapi.Error{Status: http.StatusUnauthorized, Message: "invalid_client", Description: "this connector does not serve client " + req.ClientID}
	}
	if _, aerr := s.validateAuthorize(ctx, langEn, q, true); aerr != nil {
		if aerr.Page {
			return hubapi.PARResponse{}, &hubapi.Error{Status: aerr.Status, Message: "invalid_request", Description: tr(langEn, aerr.Msg.Key, aerr.Msg.Args...)}
		}
		return hubapi.PARResponse{}, &hubapi.Error{Status: http.StatusBadRequest, Message: aerr.Code, Description: aerr.Desc}
	}
	body, _ := json.Marshal(pushed{Client: req.ClientID, Params: q.Encode(), Expires: s.now().Add(parTTL).Unix()})
	b := base64.RawURLEncoding.EncodeToString(body)
	tag, err := s.cfg.Keys.Sign("par", b)
	if err != nil {
		return hubapi.PARResponse{}, &hubapi.Error{Status: http.StatusServiceUnavailable, Message: "temporarily_unavailable", Description: "the hub's keys are not ready"}
	}
	return hubapi.PARResponse{RequestURI: hubapi.PARRequestURIPrefix + b + "." + tag, ExpiresIn: int(parTTL / time.Second)}, nil
}

// requestParams are the request's parameters: the query itself, or what its request_uri pushed (RFC 9126
// section 4: then only client_id may come with it, and it must match).
func (s *Server) requestParams(q url.Values) (url.Values, bool, *msg) {
	ref := q.Get("request_uri")
	if ref == "" {
		return q, false, nil
	}
	bad := message("authorize.request_uri")
	rest, ok := strings.CutPrefix(ref, hubapi.PARRequestURIPrefix)
	b, tag, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || len(q["request_uri"]) > 1 || !s.cfg.Keys.Verify(tag, "par", b) {
		return nil, false, &bad
	}
	raw, err := base64.RawURLEncoding.DecodeString(b)
	var p pushed
	if err != nil || json.Unmarshal(raw, &p) != nil || p.Client != q.Get("client_id") {
		return nil, false, &bad
	}
	if s.now().Unix() > p.Expires {
		expired := message("authorize.request_uri_expired")
		return nil, false, &expired
	}
	params, err := url.ParseQuery(p.Params)
	if err != nil {
		return nil, false, &bad
	}
	return params, true, nil
}

// metadata is RFC 8414's description of the authorization server: where to push, where to send the
// browser, where the SP connector redeems, and what is supported.
func (s *Server) metadata(w http.ResponseWriter, r *http.Request) {
	ds, err := s.cfg.State.Datasets()
	if err != nil {
		s.internalError(w, r, "list datasets", err)
		return
	}
	scopes := make([]string, 0, len(ds))
	for _, d := range ds {
		scopes = append(scopes, d.ID)
	}
	issuer := strings.TrimSuffix(s.cfg.PublicURL, "/")
	api := strings.TrimSuffix(s.cfg.APIURL, "/")
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "max-age=300")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"issuer":                                         issuer,
		"authorization_endpoint":                         issuer + "/oauth/authorize",
		"pushed_authorization_request_endpoint":          api + hubapi.PathPAR,
		"token_endpoint":                                 api + hubapi.PathRedeem,
		"token_endpoint_auth_methods_supported":          []string{"tls_client_auth"},
		"response_types_supported":                       []string{"code"},
		"response_modes_supported":                       []string{"query"},
		"grant_types_supported":                          []string{"authorization_code"},
		"code_challenge_methods_supported":               []string{"S256"},
		"scopes_supported":                               scopes,
		"authorization_response_iss_parameter_supported": true,
		"require_pushed_authorization_requests":          false,
		"ui_locales_supported":                           []string{langZh, langEn},
	})
}
