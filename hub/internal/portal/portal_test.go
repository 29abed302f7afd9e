package portal

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/mydatafed/mydata/hub/internal/consent"
	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/hub/internal/keyring"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/seal"
	"github.com/mydatafed/mydata/pkg/ticket"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

const (
	alice = "A123456789"
	bob   = "B123456780"
)

// world is a portal over a real state machine (fed its log directly), keyring and consent service, with a
// clock the test moves.
type world struct {
	t      testing.TB
	f      *fsm.FSM
	index  uint64
	portal *Server
	srv    *httptest.Server
	now    time.Time
}

func (w *world) apply(cmd fsm.Command) error {
	if err := fsm.Validate(cmd); err != nil {
		return err
	}
	data, err := fsm.Encode(cmd)
	if err != nil {
		return err
	}
	w.index++
	return w.f.Apply(&raft.Log{Index: w.index, Type: raft.LogCommand, Data: data}).(fsm.Result).Err()
}

func newWorld(t testing.TB, publicURL string) *world { return newWorldWith(t, publicURL, nil) }

// newWorldWith lets the test enable login methods: logins gets the world (for its clock and state) and
// returns them.
func newWorldWith(t testing.TB, publicURL string, logins func(*world) Logins) *world {
	t.Helper()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f, err := fsm.Open(filepath.Join(dir, "state.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	w := &world{t: t, f: f, now: time.Now()}
	kek, _, err := keyring.LoadOrCreateKEK(filepath.Join(dir, "kek"))
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := keyring.New(kek, f)
	if err := keys.Ensure(w.apply); err != nil {
		t.Fatal(err)
	}
	tk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signer, err := ticket.NewSigner(tk)
	if err != nil {
		t.Fatal(err)
	}
	cs := consent.New(consent.Config{TrustDomain: spiffeid.RequireTrustDomainFromString("mydata.test"), NodeID: "hub-1", State: f, Keys: keys,
		Apply: w.apply, Tickets: signer, CodeTTL: time.Minute, Log: log})
	now := time.Now()
	for _, cmd := range []fsm.Command{
		&fsm.OrgAdd{Code: "moi", NameZh: "內政部", NameEn: "Ministry of the Interior", Type: "central-agency", Now: now},
		&fsm.OrgAdd{Code: "bank", NameZh: "示範銀行", NameEn: "Demo Bank", Type: "financial-institution", Now: now},
		&fsm.ConnectorAdd{Org: "moi", Name: "dp1", Roles: []string{"dp"}, Address: "127.0.0.1:7001", Now: now},
		&fsm.ConnectorAdd{Org: "bank", Name: "sp1", Roles: []string{"sp"}, Address: "127.0.0.1:7002", Now: now},
		&fsm.DatasetAdd{Dataset: fsm.Dataset{ID: "moi.household", NameZh: "戶籍資料", NameEn: "Household registration", Description: "Who lives with you.",
			DPOrg: "moi", DPConnector: "dp1", MinAAL: 1}, Now: now},
		&fsm.DatasetAdd{Dataset: fsm.Dataset{ID: "moi.records", NameZh: "除戶資料", NameEn: "Deregistration records", DPOrg: "moi", DPConnector: "dp1", MinAAL: 2}, Now: now},
		&fsm.DatasetAdd{Dataset: fsm.Dataset{ID: "moi.certified", NameZh: "憑證限定資料", NameEn: "Certificate-only data", DPOrg: "moi", DPConnector: "dp1", MinAAL: 1,
			Methods: []string{"moica"}}, Now: now},
		&fsm.ServiceAdd{Service: fsm.Service{ID: "bank.loan", NameZh: "貸款申請", NameEn: "Loan application", SPOrg: "bank", SPConnector: "sp1", Modes: []string{"online"},
			Datasets: []string{"moi.household", "moi.records", "moi.certified"}, Purpose: "Check who you are.", Terms: "Terms.", TermsVersion: "1",
			RedirectURIs: []string{"https://bank.example/cb"}}, Now: now},
	} {
		if err := w.apply(cmd); err != nil {
			t.Fatal(err)
		}
	}
	var l Logins
	if logins != nil {
		l = logins(w)
	}
	if l.Lockout.MaxFailures == 0 {
		l.Lockout = Lockout{MaxFailures: 5, Window: 15 * time.Minute, Duration: 15 * time.Minute}
	}
	w.portal, err = New(Config{State: f, Keys: keys, Consent: cs, DevLogin: true, Apply: w.apply, Logins: l, PublicURL: publicURL, SessionTTL: time.Hour, IdleTimeout: 15 * time.Minute,
		PendingTTL: 10 * time.Minute, Location: time.FixedZone("CST", 8*3600), Log: log, Now: func() time.Time { return w.now }})
	if err != nil {
		t.Fatal(err)
	}
	w.srv = httptest.NewServer(w.portal.Handler())
	t.Cleanup(w.srv.Close)
	return w
}

// browser is a cookie jar that stops at redirects.
type browser struct {
	w    *world
	c    *http.Client
	lang string
}

func (w *world) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{w: w, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type response struct {
	status   int
	body     string
	location string
	header   http.Header
}

func (b *browser) do(req *http.Request) response {
	b.w.t.Helper()
	if b.lang != "" {
		req.Header.Set("Accept-Language", b.lang)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.w.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, string(body), resp.Header.Get("Location"), resp.Header}
}

func (b *browser) get(path string) response {
	req, _ := http.NewRequest(http.MethodGet, b.w.srv.URL+path, nil)
	return b.do(req)
}

func (b *browser) post(path string, form url.Values) response {
	req, _ := http.NewRequest(http.MethodPost, b.w.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var hidden = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// form is the hidden fields of the first form posting to action on a page.
func form(page, action string) url.Values {
	return formAt(page, `action="`+action+`"`)
}

// formAt is the hidden fields of the form whose tag holds marker.
func formAt(page, marker string) url.Values {
	i := strings.Index(page, marker)
	if i < 0 {
		return nil
	}
	end := strings.Index(page[i:], "</form>")
	v := url.Values{}
	for _, m := range hidden.FindAllStringSubmatch(page[i:i+end], -1) {
		v.Set(m[1], html.UnescapeString(m[2]))
	}
	return v
}

func (b *browser) login(subject, method, next string) response {
	b.w.t.Helper()
	page := b.get("/login?next=" + url.QueryEscape(next))
	f := form(page.body, "/login")
	if f == nil {
		b.w.t.Fatalf("no login form: %d %s", page.status, page.body)
	}
	f.Set("subject", subject)
	f.Set("method", method)
	return b.post("/login", f)
}

func authorizeURL(scope string, extra url.Values) string {
	sum := sha256.Sum256([]byte("verifier-verifier-verifier-verifier-verifier"))
	q := url.Values{"response_type": {"code"}, "client_id": {"bank.loan"}, "redirect_uri": {"https://bank.example/cb"}, "scope": {scope},
		"state": {"s1"}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	for k, v := range extra {
		q[k] = v
	}
	return "/oauth/authorize?" + q.Encode()
}

// sealHint seals a login hint as an SP connector does, to the hint key the directory lists.
func (w *world) sealHint(t *testing.T, subject string) string {
	t.Helper()
	keys, err := w.f.HubKeys()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.Kind != hubapi.HubKeyHPKE {
			continue
		}
		pub, err := seal.ParsePublicKey(k.KEM, k.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		ct, err := seal.Seal(pub, hubapi.LoginHintInfo("bank.loan"), []byte(subject))
		if err != nil {
			t.Fatal(err)
		}
		return k.KID + "." + base64.RawURLEncoding.EncodeToString(ct)
	}
	t.Fatal("no hint key listed")
	return ""
}
