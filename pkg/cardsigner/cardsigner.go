// Package cardsigner stands in for the signing component a citizen installs beside their card reader:
// a small HTTP server on a localhost port that signs the portal's challenge with the card in the reader
// and returns a CMS SignedData. It signs with a software key from a PEM file, so it is for the demo and
// tests only; the hub's certlogin verifies what it signs.
//
// Any web page the citizen opens can try to reach a localhost port, so the server answers only the
// configured portal origins (one per portal of a hub cluster): other origins, and requests with no
// Origin at all, get 403. POST /sign wants Content-Type application/json, which a page cannot send
// cross-origin without the preflight this server answers for the allowed origins alone. Chromium's
// Private Network Access preflight (a public page reaching a loopback address) is answered with
// Access-Control-Allow-Private-Network.
package cardsigner

import (
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/mydatafed/mydata/pkg/pemfile"
	"github.com/smallstep/pkcs7"
)

const (
	maxRequest   = 4 << 10
	maxChallenge = 1 << 10
)

// SignRequest is the body of POST /sign.
type SignRequest struct {
	// Challenge is the portal's challenge, standard base64.
	Challenge string `json:"challenge"`
	// Detached leaves the challenge out of the SignedData.
	Detached bool `json:"detached,omitempty"`
}

// SignResponse is its answer: standard base64 DER.
type SignResponse struct {
	SignedData  string `json:"signed_data"`
	Certificate string `json:"certificate"`
}

// Card is what a card in the reader holds: its signing certificate, the chain above it (the issuing CA)
// and its key.
type Card struct {
	Cert  *x509.Certificate
	Chain []*x509.Certificate
	Key   crypto.Signer
}

// LoadCard reads a card from a PEM file of the certificate followed by its chain and a PEM private key
// (PKCS #8, SEC 1 or PKCS #1).
func LoadCard(certPEMPath, keyPEMPath string) (*Card, error) {
	certs, err := pemfile.ReadCertificates(certPEMPath)
	if err != nil {
		return nil, fmt.Errorf("card certificate %s: %w", certPEMPath, err)
	}
	key, err := readKey(keyPEMPath)
	if err != nil {
		return nil, err
	}
	if !publicKeyEqual(certs[0].PublicKey, key.Public()) {
		return nil, fmt.Errorf("%s: the key does not belong to the certificate in %s", keyPEMPath, certPEMPath)
	}
	return &Card{Cert: certs[0], Chain: certs[1:], Key: key}, nil
}

// Server is the signing component's HTTP handler. Its card can be swapped while it serves, as a citizen
// swaps the card in the reader.
type Server struct {
	origins []string
	card    atomic.Pointer[Card]
	mux     *http.ServeMux
}

// New loads a card with LoadCard and serves it to allowedOrigins, e.g. "https://portal.example:8443".
func New(certPEMPath, keyPEMPath string, allowedOrigins ...string) (*Server, error) {
	if err := checkOrigins(allowedOrigins); err != nil {
		return nil, err
	}
	card, err := LoadCard(certPEMPath, keyPEMPath)
	if err != nil {
		return nil, err
	}
	return NewServer(card, allowedOrigins...)
}

// NewServer serves card, which may be nil for an empty reader, to allowedOrigins.
func NewServer(card *Card, allowedOrigins ...string) (*Server, error) {
	if err := checkOrigins(allowedOrigins); err != nil {
		return nil, err
	}
	s := &Server{origins: slices.Clone(allowedOrigins), mux: http.NewServeMux()}
	s.card.Store(card)
	s.mux.HandleFunc("GET /{$}", s.about)
	s.mux.HandleFunc("OPTIONS /sign", s.preflight)
	s.mux.HandleFunc("POST /sign", s.sign)
	return s, nil
}

// Insert puts card in the reader in place of the one there; nil empties the reader.
func (s *Server) Insert(card *Card) { s.card.Store(card) }

// Card is the card in the reader, nil if none.
func (s *Server) Card() *Card { return s.card.Load() }

// Origins are the portal origins the server answers.
func (s *Server) Origins() []string { return slices.Clone(s.origins) }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func checkOrigins(origins []string) error {
	if len(origins) == 0 {
		return errors.New("allowed origin: at least one is required")
	}
	for _, o := range origins {
		if err := checkOrigin(o); err != nil {
			return fmt.Errorf("allowed origin: %w", err)
		}
	}
	return nil
}

func checkOrigin(o string) error {
	u, err := url.Parse(o)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
		return fmt.Errorf("%q is not an origin (scheme://host[:port])", o)
	}
	return nil
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

func readKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	var key any
	switch b.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	default:
		return nil, fmt.Errorf("%s: PEM block %q is not a private key", path, b.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: %T cannot sign", path, key)
	}
	return s, nil
}

// Sign makes a SHA-256 CMS SignedData over content by cert's key, with cert and chain in its
// certificate set, with the content inside or, when detached, left out.
func Sign(content []byte, cert *x509.Certificate, chain []*x509.Certificate, key crypto.Signer, detached bool) ([]byte, error) {
	sd, err := pkcs7.NewSignedData(content)
	if err != nil {
		return nil, err
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSignerChain(cert, key, chain, pkcs7.SignerInfoConfig{}); err != nil {
		return nil, err
	}
	if detached {
		sd.Detach()
	}
	return sd.Finish()
}

func (s *Server) about(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "MyData local signer: a stand-in for the card-signing component, for demos and tests.\n"+
		"POST /sign {\"challenge\":\"<base64>\"} from %s returns {\"signed_data\":\"<base64 DER CMS SignedData>\",\"certificate\":\"<base64 DER>\"}.\n",
		strings.Join(s.origins, ", "))
	if c := s.card.Load(); c != nil {
		fmt.Fprintf(w, "The card in the reader: %s (serial %s), issued by %s.\n", c.Cert.Subject.CommonName, c.Cert.SerialNumber.Text(16), c.Cert.Issuer)
	} else {
		fmt.Fprintln(w, "No card is in the reader.")
	}
}

// allow writes the CORS headers when the request comes from an allowed origin, and 403 otherwise.
func (s *Server) allow(w http.ResponseWriter, r *http.Request) bool {
	w.Header().Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	if !slices.Contains(s.origins, origin) {
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return false
	}
	w.Header().Set("Access-Control-Allow-Origin", origin)
	return true
}

func (s *Server) preflight(w http.ResponseWriter, r *http.Request) {
	if !s.allow(w, r) {
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", "POST")
	h.Set("Access-Control-Allow-Headers", "Content-Type")
	h.Set("Access-Control-Max-Age", "600")
	if r.Header.Get("Access-Control-Request-Private-Network") == "true" {
		h.Set("Access-Control-Allow-Private-Network", "true")
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) sign(w http.ResponseWriter, r *http.Request) {
	if !s.allow(w, r) {
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		http.Error(w, "Content-Type must be application/json", http.StatusUnsupportedMediaType)
		return
	}
	var req SignRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	challenge, err := base64.StdEncoding.DecodeString(req.Challenge)
	if err != nil || len(challenge) == 0 || len(challenge) > maxChallenge {
		http.Error(w, "challenge: want 1 to 1024 bytes in standard base64", http.StatusBadRequest)
		return
	}
	card := s.card.Load()
	if card == nil {
		http.Error(w, "no card in the reader", http.StatusServiceUnavailable)
		return
	}
	der, err := Sign(challenge, card.Cert, card.Chain, card.Key, req.Detached)
	if err != nil {
		http.Error(w, "signing failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(SignResponse{
		SignedData:  base64.StdEncoding.EncodeToString(der),
		Certificate: base64.StdEncoding.EncodeToString(card.Cert.Raw),
	})
}
