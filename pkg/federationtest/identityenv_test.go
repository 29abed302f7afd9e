package federationtest

import (
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"mime/quotedprintable"
	"net"
	"net/http/httptest"
	"net/mail"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/mydatafed/mydata/pkg/cardca"
	"github.com/mydatafed/mydata/pkg/cardsigner"
	"github.com/mydatafed/mydata/pkg/docregistry"
	"github.com/mydatafed/mydata/pkg/federationtest/oidctest"
)

// The identity tests run the hub binary with every real login method on, against what the methods talk
// to outside the hub, all started in the test on loopback: a card CA (pkg/cardca) and the citizen's
// signing component (pkg/cardsigner) with a card in the reader that the tests swap, the sample
// household/NHI registry (pkg/docregistry), an SMTP server where one-time codes arrive, and zitadel's
// OpenID provider (oidctest).

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

// issueCard makes a citizen's signing card, which names the full national ID in the subject's
// serialNumber (certlogin's subject_attribute rule).
func issueCard(t *testing.T, ca *cardca.CA, nationalID string) *cardsigner.Card {
	t.Helper()
	leaf, err := ca.IssueCitizen(cardca.CitizenOptions{NationalID: nationalID})
	if err != nil {
		t.Fatal(err)
	}
	return &cardsigner.Card{Cert: leaf.Cert, Chain: leaf.Chain, Key: leaf.Key}
}

// startCardSigner serves the signing component to the portal's origin, with card in the reader, and
// returns it and its URL.
func startCardSigner(t *testing.T, origin string, card *cardsigner.Card) (*cardsigner.Server, string) {
	t.Helper()
	s, err := cardsigner.NewServer(card, origin)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv.URL
}

// serveRegistry serves the sample registry with registryDocs, by household number, and returns its URL.
func serveRegistry(t *testing.T) string {
	t.Helper()
	var recs []docregistry.Record
	for id, d := range registryDocs {
		recs = append(recs, docregistry.Record{NationalID: id, NHICard: d.nhi, Household: d.household})
	}
	reg, err := docregistry.New(recs, "")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg)
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
	base      string
	mail      *mailSink
	signer    *cardsigner.Server
	signerURL string
	op        *oidctest.OP
	// cards: citizenA's, citizenA's revoked one, citizenB's.
	cardA, revokedA, cardB *cardsigner.Card
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

	ca, err := cardca.New(cardca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.cardA, e.revokedA, e.cardB = issueCard(t, ca, citizenA), issueCard(t, ca, citizenA), issueCard(t, ca, citizenB)
	ca.Revoke(e.revokedA.Cert)
	files, err := ca.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e.signer, e.signerURL = startCardSigner(t, e.base, e.cardA)

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
`, o.lockout, e.base, certMethod, e.signerURL, files.Root, files.Intermediate, files.CRLPEM, serveRegistry(t), oidcMethod, e.op.Issuer, oidcClient, oidcSecret, callback)
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
