package main

import (
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/smallstep/pkcs7"
)

// The signer speaks the protocol of hub/internal/identity/certlogin/localsigner, which the portal's
// certlogin.js calls and which this program cannot import (Go's internal rule keeps it to hub/): POST /sign
// with {"challenge": "<base64>"} from the portal's origin, answered with {"signed_data": "<base64 DER CMS
// SignedData>", "certificate": "<base64 DER>"}; OPTIONS /sign is the CORS preflight.
const (
	maxSignRequest = 4 << 10
	maxChallenge   = 1 << 10
)

// origins is a repeatable flag.
type origins []string

func (o *origins) String() string { return strings.Join(*o, ",") }
func (o *origins) Set(v string) error {
	*o = append(*o, strings.TrimSuffix(v, "/"))
	return nil
}

// runSigner serves the signing component for one card. The real component signs with the card in the
// reader, so one process is one inserted card: to "insert" another, stop it and start it with that card.
func runSigner(args []string, stderr io.Writer) error {
	fs := newFlags("signer", stderr)
	cert := fs.String("cert", "", "the card's certificate, then its issuing CA (PEM), e.g. cards/A123456789.pem from identity ca")
	key := fs.String("key", "", "the card's private key (PEM, PKCS #8)")
	listen := fs.String("listen", "127.0.0.1:61161", "loopback address the portal's page calls (the method's signer_url is http://<this>/sign)")
	var allowed origins
	fs.Var(&allowed, "origin", "portal origin allowed to ask for signatures, e.g. http://localhost:8080; repeat it for each portal of a hub cluster")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *cert == "" || *key == "" {
		return errors.New("--cert and --key: required")
	}
	if len(allowed) == 0 {
		return errors.New("--origin: at least one portal origin is required")
	}
	s, err := newSigner(*cert, *key, allowed)
	if err != nil {
		return err
	}
	ln, err := listenLoopback("listen", *listen)
	if err != nil {
		return err
	}
	log := newLogger(stderr, "signer")
	ctx, stop := signalContext()
	defer stop()
	log.Info("serving: this card is in the reader", "url", "http://"+ln.Addr().String()+"/sign", "card", s.cert.Subject.CommonName,
		"serial", s.cert.SerialNumber.Text(16), "issuer", s.cert.Issuer.CommonName, "origins", allowed.String())
	return serveHTTP(ctx, log, ln, s)
}

type signer struct {
	cert    *x509.Certificate
	chain   []*x509.Certificate
	key     crypto.Signer
	origins []string
	mux     *http.ServeMux
}

func newSigner(certPath, keyPath string, allowed []string) (*signer, error) {
	for _, o := range allowed {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
			return nil, fmt.Errorf("--origin: %q is not an origin (scheme://host[:port])", o)
		}
	}
	certs, err := readCerts(certPath)
	if err != nil {
		return nil, err
	}
	key, err := readKey(keyPath)
	if err != nil {
		return nil, err
	}
	if !publicKeyEqual(certs[0].PublicKey, key.Public()) {
		return nil, fmt.Errorf("%s: the key does not belong to the certificate in %s", keyPath, certPath)
	}
	s := &signer{cert: certs[0], chain: certs[1:], key: key, origins: allowed, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /{$}", s.about)
	s.mux.HandleFunc("OPTIONS /sign", s.preflight)
	s.mux.HandleFunc("POST /sign", s.sign)
	return s, nil
}

func (s *signer) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
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

// signCMS makes a SHA-256 CMS SignedData over content with the challenge inside, and the certificate and
// its chain in the certificate set.
func signCMS(content []byte, cert *x509.Certificate, chain []*x509.Certificate, key crypto.Signer) ([]byte, error) {
	sd, err := pkcs7.NewSignedData(content)
	if err != nil {
		return nil, err
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSignerChain(cert, key, chain, pkcs7.SignerInfoConfig{}); err != nil {
		return nil, err
	}
	return sd.Finish()
}

func (s *signer) about(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "MyData demo signer: a stand-in for the card-signing component, for the demo only.\n"+
		"The card in the reader: %s (serial %s), issued by %s.\nIt signs challenges from %s.\n",
		s.cert.Subject.CommonName, s.cert.SerialNumber.Text(16), s.cert.Issuer.CommonName, strings.Join(s.origins, ", "))
}

// allow writes the CORS headers for an allowed origin, and 403 otherwise: any page the citizen opens
// could try to reach this port.
func (s *signer) allow(w http.ResponseWriter, r *http.Request) bool {
	w.Header().Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	if !slices.Contains(s.origins, origin) {
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return false
	}
	w.Header().Set("Access-Control-Allow-Origin", origin)
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
	// Chromium's Private Network Access preflight.
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
	var req struct {
		Challenge string `json:"challenge"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxSignRequest))
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
	der, err := signCMS(challenge, s.cert, s.chain, s.key)
	if err != nil {
		http.Error(w, "signing failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]string{
		"signed_data": base64.StdEncoding.EncodeToString(der),
		"certificate": base64.StdEncoding.EncodeToString(s.cert.Raw),
	})
}
