package portal

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

// signedBlob packs v into a token signed with the cluster's session key and bound to this browser and a
// purpose: a half-done login or ceremony can wait in a form or cookie, on any node, and come back unforged.
func (s *Server) signedBlob(r *http.Request, purpose string, v any) (string, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	b := base64.RawURLEncoding.EncodeToString(body)
	tag, err := s.cfg.Keys.Sign("blob", purpose, browserOf(r), b)
	if err != nil {
		return "", err
	}
	return b + "." + tag, nil
}

var errBlob = errors.New("not a token this portal signed for this browser")

func (s *Server) openBlob(r *http.Request, token, purpose string, v any) error {
	b, tag, ok := strings.Cut(token, ".")
	if !ok || len(token) > 16<<10 || !s.cfg.Keys.Verify(tag, "blob", purpose, browserOf(r), b) {
		return errBlob
	}
	body, err := base64.RawURLEncoding.DecodeString(b)
	if err != nil {
		return errBlob
	}
	return json.Unmarshal(body, v)
}
