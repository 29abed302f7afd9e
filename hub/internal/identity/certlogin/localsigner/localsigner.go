// Package localsigner stands in for the signing component a citizen installs beside their card reader:
// a small HTTP server on a localhost port that signs the portal's challenge and returns a CMS
// SignedData. It signs with a software key from a PEM file, so it is for the demo and tests only.
//
// Any web page the citizen opens can try to reach a localhost port, so the server answers only the
// one configured portal origin: other origins, and requests with no Origin at all, get 403. POST /sign
// wants Content-Type application/json, which a page cannot send cross-origin without the preflight
// this server answers for the allowed origin alone. Chromium's Private Network Access preflight (a
// public page reaching a loopback address) is answered with Access-Control-Allow-Private-Network.
package localsigner

import (
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"os"

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

type signer struct {
	cert   *x509.Certificate
	chain  []*x509.Certificate
	key    crypto.Signer
	origin string
}

// New loads the certificate (the signer's first, then its chain, in one PEM file) and its private key
// (PKCS #8, SEC 1 or PKCS #1 PEM), and answers requests from allowedOrigin, e.g.
// "https://portal.example:8443".
func New(certPEMPath, keyPEMPath, allowedOrigin string) (http.Handler, error) {
	if err := checkOrigin(allowedOrigin); err != nil {
		return nil, fmt.Errorf("allowed origin: %w", err)
	}
	certs, err := readCerts(certPEMPath)
	if err != nil {
		return nil, err
	}
	key, err := readKey(keyPEMPath)
	if err != nil {
		return nil, err
	}
	if !publicKeyEqual(certs[0].PublicKey, key.Public()) {
		return nil, fmt.Errorf("%s: the key does not belong to the certificate in %s", keyPEMPath, certPEMPath)
	}
	s := &signer{cert: certs[0], chain: certs[1:], key: key, origin: allowedOrigin}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.about)
	mux.HandleFunc("OPTIONS /sign", s.preflight)
	mux.HandleFunc("POST /sign", s.sign)
	return mux, nil
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

func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no PEM CERTIFICATE block", path)
	}
	return certs, nil
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

func (s *signer) about(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "MyData local signer: a stand-in for the card-signing component, for demos and tests.\n"+
		"POST /sign {\"challenge\":\"<base64>\"} from %s returns {\"signed_data\":\"<base64 DER CMS SignedData>\",\"certificate\":\"<base64 DER>\"}.\n"+
		"Signing as %s (serial %s), issued by %s.\n", s.origin, s.cert.Subject.CommonName, s.cert.SerialNumber.Text(16), s.cert.Issuer)
}

// allow writes the CORS headers when the request comes from the allowed origin, and 403 otherwise.
func (s *signer) allow(w http.ResponseWriter, r *http.Request) bool {
	w.Header().Add("Vary", "Origin")
	if r.Header.Get("Origin") != s.origin {
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return false
	}
	w.Header().Set("Access-Control-Allow-Origin", s.origin)
	return true
}

func (s *signer) preflight(w http.ResponseWriter, r *http.Request) {
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

func (s *signer) sign(w http.ResponseWriter, r *http.Request) {
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
	der, err := Sign(challenge, s.cert, s.chain, s.key, req.Detached)
	if err != nil {
		http.Error(w, "signing failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(SignResponse{
		SignedData:  base64.StdEncoding.EncodeToString(der),
		Certificate: base64.StdEncoding.EncodeToString(s.cert.Raw),
	})
}
