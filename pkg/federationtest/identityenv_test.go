package federationtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/mydatafed/mydata/pkg/federationtest/oidctest"
	"github.com/smallstep/pkcs7"
)

// The identity tests run the hub binary with every real login method on, against stand-ins for what the
// methods talk to outside the hub, all started in the test on loopback: a card CA and the citizen's signing
// component (CMS SignedData made with smallstep/pkcs7, as the hub's local signer makes it), the household/NHI
// registry, an SMTP server where one-time codes arrive, and zitadel's OpenID provider (oidctest). The hub's
// own test helpers for these (certlogin/testca, localsigner, twodocs/registry) live under hub/internal,
// which Go lets nothing outside hub/ import, so the ones here speak the same wire formats on their own.

// Citizens of the identity tests. The registry knows citizenA and citizenC's documents.
const (
	citizenC = "E225810349"
	citizenD = "H120945179"
)

// docs are a citizen's documents as the registry holds them, in the forms the hub's parsers write.
type docs struct{ nhi, household string }

var registryDocs = map[string]docs{
	citizenA: {"000012345678", "D0012345"},
	citizenC: {"000078901234", "E0903321"},
}

// cardCA is a root and an issuing CA for citizens' signing certificates, which name the full national ID
// in the subject's serialNumber (certlogin's subject_attribute rule).
type cardCA struct {
	root, inter       *x509.Certificate
	rootKey, interKey crypto.Signer
	serial            int64
	revoked           []x509.RevocationListEntry
}

// card is a citizen's certificate and key, as the card holds them.
type card struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newKey(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustCert(t *testing.T, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newCardCA(t *testing.T) *cardCA {
	t.Helper()
	now := time.Now()
	ca := &cardCA{rootKey: newKey(t), interKey: newKey(t), serial: 0x1000}
	rootTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{Country: []string{"TW"}, CommonName: "MyData Test Card Root CA"},
		NotBefore: now.Add(-24 * time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour), KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true, IsCA: true}
	ca.root = mustCert(t, rootTmpl, rootTmpl, ca.rootKey.Public(), ca.rootKey)
	interTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{Country: []string{"TW"}, CommonName: "MyData Test Citizen CA"},
		NotBefore: now.Add(-24 * time.Hour), NotAfter: now.Add(5 * 365 * 24 * time.Hour), KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true}
	ca.inter = mustCert(t, interTmpl, ca.root, ca.interKey.Public(), ca.rootKey)
	return ca
}

// issue makes a signing certificate for a citizen.
func (ca *cardCA) issue(t *testing.T, nationalID string) *card {
	t.Helper()
	ca.serial++
	key := newKey(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(ca.serial), Subject: pkix.Name{Country: []string{"TW"}, CommonName: "Test Citizen", SerialNumber: nationalID},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment}
	return &card{cert: mustCert(t, tmpl, ca.inter, key.Public(), ca.interKey), key: key}
}

func (ca *cardCA) revoke(c *card) {
	ca.revoked = append(ca.revoked, x509.RevocationListEntry{SerialNumber: c.cert.SerialNumber, RevocationTime: time.Now().Add(-time.Minute), ReasonCode: 1})
}

// writeFiles writes root.pem, intermediate.pem and a CRL (valid a day) into dir, for the hub's configuration.
func (ca *cardCA) writeFiles(t *testing.T, dir string) (root, inter, crl string) {
	t.Helper()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: time.Now().Add(-time.Minute),
		NextUpdate: time.Now().Add(24 * time.Hour), RevokedCertificateEntries: ca.revoked}, ca.inter, ca.interKey)
	if err != nil {
		t.Fatal(err)
	}
	root, inter, crl = filepath.Join(dir, "root.pem"), filepath.Join(dir, "intermediate.pem"), filepath.Join(dir, "crl.pem")
	for path, b := range map[string]*pem.Block{root: {Type: "CERTIFICATE", Bytes: ca.root.Raw}, inter: {Type: "CERTIFICATE", Bytes: ca.inter.Raw}, crl: {Type: "X509 CRL", Bytes: der}} {
		if err := os.WriteFile(path, pem.EncodeToMemory(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root, inter, crl
}

// cardSigner is the signing component on the citizen's computer, with a card in the reader that the test
// swaps: POST /sign {"challenge": base64} from the portal's origin answers {"signed_data": base64 DER CMS}.
type cardSigner struct {
	srv    *httptest.Server
	origin string
	inside atomic.Pointer[card]
	chain  *x509.Certificate
}

func startCardSigner(t *testing.T, origin string, chain *x509.Certificate) *cardSigner {
	s := &cardSigner{origin: origin, chain: chain}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

// insert puts a card in the reader.
func (s *cardSigner) insert(c *card) { s.inside.Store(c) }

func (s *cardSigner) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Add("Vary", "Origin")
	if r.Header.Get("Origin") != s.origin || r.URL.Path != "/sign" {
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	w.Header().Set("Access-Control-Allow-Origin", s.origin)
	if r.Method == http.MethodOptions {
		w.Header().Set("Access-Control-Allow-Methods", "POST")
		w.Header().Set("Access-Control-Allow-Headers", "Content-Type")
		if r.Header.Get("Access-Control-Request-Private-Network") == "true" {
			w.Header().Set("Access-Control-Allow-Private-Network", "true")
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	var req struct {
		Challenge string `json:"challenge"`
	}
	c := s.inside.Load()
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil || c == nil {
		http.Error(w, "bad request or no card", http.StatusBadRequest)
		return
	}
	challenge, err := base64.StdEncoding.DecodeString(req.Challenge)
	if err != nil {
		http.Error(w, "challenge: not base64", http.StatusBadRequest)
		return
	}
	sd, err := pkcs7.NewSignedData(challenge)
	if err == nil {
		sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
		err = sd.AddSignerChain(c.cert, c.key, []*x509.Certificate{s.chain}, pkcs7.SignerInfoConfig{})
	}
	var der []byte
	if err == nil {
		der, err = sd.Finish()
	}
	if err != nil {
		http.Error(w, "signing failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"signed_data": base64.StdEncoding.EncodeToString(der), "certificate": base64.StdEncoding.EncodeToString(c.cert.Raw)})
}

// serveRegistry answers the hub's two-documents check (twodocs.Request in, {"match": bool} out) from
// registryDocs, by household number.
func serveRegistry(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			NationalID string `json:"national_id"`
			NHICard    string `json:"nhi_card"`
			Household  string `json:"household"`
		}
		if r.Method != http.MethodPost || json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		d, ok := registryDocs[req.NationalID]
		match := ok && d.nhi == req.NHICard && d.household == req.Household
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"match":%t}`, match)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/check"
}

// mailSink is an SMTP server (go-smtp) on loopback that keeps what the hub sends.
type mailSink struct {
	addr string
	mu   sync.Mutex
	msgs []sentMail
}

type sentMail struct {
	to   string
	body string // decoded
}

func startMailSink(t *testing.T) *mailSink {
	t.Helper()
	m := &mailSink{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &sinkSession{sink: m}, nil }))
	srv.Domain = "localhost"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return m
}

type sinkSession struct {
	sink *mailSink
	to   string
}

func (s *sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = to
	return nil
}
func (s *sinkSession) Reset()        {}
func (s *sinkSession) Logout() error { return nil }

func (s *sinkSession) Data(r io.Reader) error {
	msg, err := mail.ReadMessage(r)
	if err != nil {
		return err
	}
	var body []byte
	switch strings.ToLower(msg.Header.Get("Content-Transfer-Encoding")) {
	case "base64":
		raw, _ := io.ReadAll(msg.Body)
		body, err = base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(raw)), ""))
	case "quoted-printable":
		body, err = io.ReadAll(quotedprintable.NewReader(msg.Body))
	default:
		body, err = io.ReadAll(msg.Body)
	}
	if err != nil {
		return err
	}
	s.sink.mu.Lock()
	defer s.sink.mu.Unlock()
	s.sink.msgs = append(s.sink.msgs, sentMail{to: s.to, body: string(body)})
	return nil
}

var sixDigits = regexp.MustCompile(`\b\d{6}\b`)

// code waits for the (after)th message to to and returns the 6-digit code in it.
func (m *mailSink) code(t testing.TB, to string, after int) string {
	t.Helper()
	var code string
	Eventually(t, 20*time.Second, "a code mailed to "+to, func() error {
		m.mu.Lock()
		defer m.mu.Unlock()
		n := 0
		for _, msg := range m.msgs {
			if msg.to != to {
				continue
			}
			if n++; n > after {
				if code = sixDigits.FindString(msg.body); code == "" {
					return fmt.Errorf("no code in %q", msg.body)
				}
				return nil
			}
		}
		return fmt.Errorf("%d messages to %s so far", n, to)
	})
	return code
}

// count is how many messages went to to.
func (m *mailSink) count(to string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, msg := range m.msgs {
		if msg.to == to {
			n++
		}
	}
	return n
}

// identityEnv is a hub with every real login method, and what they talk to.
type identityEnv struct {
	hub *Hub
	// base is the portal's public URL, http://localhost:<port>: a secure context, as WebAuthn wants.
	base   string
	mail   *mailSink
	signer *cardSigner
	op     *oidctest.OP
	// cards: citizenA's, citizenA's revoked one, citizenB's.
	cardA, revokedA, cardB *card
}

// Method ids and levels of the identity hub.
const (
	certMethod = "testcard"
	oidcMethod = "testidp"
	oidcClient = "mydata-hub"
	oidcSecret = "s3cret-for-tests"
)

type identityOptions struct {
	// lockout is identity.lockout as a YAML flow mapping.
	lockout string
	// catalogue registers agencies, a dataset needing level 3 and a service asking for it.
	catalogue bool
}

func startIdentityHub(t *testing.T, o identityOptions) *identityEnv {
	t.Helper()
	e := &identityEnv{mail: startMailSink(t)}
	portal := FreeTCP(t)
	_, port, _ := net.SplitHostPort(portal)
	e.base = "http://localhost:" + port

	ca := newCardCA(t)
	e.cardA, e.revokedA, e.cardB = ca.issue(t, citizenA), ca.issue(t, citizenA), ca.issue(t, citizenB)
	ca.revoke(e.revokedA)
	root, inter, crl := ca.writeFiles(t, t.TempDir())
	e.signer = startCardSigner(t, e.base, ca.inter)
	e.signer.insert(e.cardA)

	callback := e.base + "/login/oidc/" + oidcMethod + "/callback"
	e.op = oidctest.Start(t, oidctest.Options{
		Clients:  []oidctest.Client{{ID: oidcClient, Secret: oidcSecret, RedirectURLs: []string{callback}}},
		Settings: oidctest.Settings{ACR: "urn:test:loa:high", AMR: []string{"pwd", "hwk"}, NationalIDClaim: "national_id", NationalID: citizenD},
	})
	if o.lockout == "" {
		o.lockout = "{max_failures: 10, window: 10m, duration: 10m}"
	}
	_, mailPort, _ := net.SplitHostPort(e.mail.addr)
	identity := fmt.Sprintf(`  lockout: %s
  otp: {enabled: true, level: 1}
  passkey:
    enabled: true
    level: 2
    register_level: 2
    rp_id: localhost
    origins: [%s]
    timeout: 1m
  certificates:
    - id: %s
      name_zh: 測試自然人憑證
      name_en: Test citizen certificate
      level: 3
      signer_url: %s/sign
      roots: [%s]
      intermediates: [%s]
      crls: [%s]
      subject_rule: {kind: subject_attribute}
  two_docs: {enabled: true, level: 2, url: %s}
  oidc:
    - id: %s
      name_zh: 測試身分提供者
      name_en: Test identity provider
      issuer: %s
      client_id: %s
      client_secret: %s
      redirect_url: %s
      subject_claim: national_id
      acr_levels: {"urn:test:loa:high": 3, "urn:test:loa:substantial": 2}
      amr_levels: {hwk: 3, otp: 2, pwd: 1}
`, o.lockout, e.base, certMethod, e.signer.srv.URL, root, inter, crl, serveRegistry(t), oidcMethod, e.op.Issuer, oidcClient, oidcSecret, callback)
	notify := fmt.Sprintf("  mail: {host: 127.0.0.1, port: %s, from: \"MyData <noreply@mydata.test>\", start_tls: none, timeout: 10s}\n", mailPort)
	e.hub = StartHub(t, HubOptions{PortalListen: portal, PortalPublicURL: e.base, Identity: identity, Notify: notify})
	if o.catalogue {
		h := e.hub
		h.Admin("org", "add", "--code", "moi", "--name-zh", "內政部", "--name-en", "Ministry of the Interior", "--type", "central-agency")
		h.Admin("org", "add", "--code", "bank", "--name-zh", "示範銀行", "--name-en", "Demo Bank", "--type", "financial-institution")
		h.AddConnector("moi", "moi-dp", ConnectorOptions{Roles: "dp"})
		h.AddConnector("bank", "bank-sp", ConnectorOptions{Roles: "sp"})
		h.Admin("dataset", "add", "--id", "moi.household", "--name-zh", "戶籍資料", "--name-en", "Household registration", "--dp", "moi/moi-dp", "--min-aal", "3")
		h.Admin("service", "add", "--id", "bank.card", "--name-zh", "信用卡申辦", "--name-en", "Credit card application", "--sp", "bank/bank-sp",
			"--datasets", "moi.household", "--purpose", "Check the applicant's household for a credit card. 信用卡申辦之戶籍審核。",
			"--terms", "The bank uses the data only for this application.", "--terms-version", "1", "--redirect-uri", bankRedirect)
	}
	return e
}

// bankRedirect is the service's redirect URI: nothing listens there, and the tests stop at the consent page.
const bankRedirect = "http://127.0.0.1:9/callback"

// authorizeURL is the service's authorization request for the dataset needing level 3.
func (e *identityEnv) authorizeURL() string {
	return e.base + e.hub.AuthorizeURL("bank.card", bankRedirect, "moi.household", "st-1", NewPKCE(), nil)
}
