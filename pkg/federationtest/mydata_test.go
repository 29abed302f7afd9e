package federationtest

import (
	"archive/zip"
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
)

// agencyDPAPI is an agency's DP-API as the running MyData platform calls it, written from the contract
// alone: it takes "Authorization: Bearer mydata::<token>", checks the token at
// <platform>/connect/introspect/{resource} with its client secret, asks <platform>/connect/userinfo/{resource}
// for the citizen, and answers 200 with a signed zip package, or 429 with Retry-After while busy.
type agencyDPAPI struct {
	t         *testing.T
	srv       *httptest.Server
	platform  string // where it introspects: here, the DP connector's mydata listener
	resource  string
	secret    string
	key       *rsa.PrivateKey
	cert      *x509.Certificate
	certFile  string
	mu        sync.Mutex
	busy      int // answer 429 this many more times
	tokens    []string
	actives   []bool
	userinfos []map[string]any
}

func newAgencyDPAPI(t *testing.T, platform, resource string) *agencyDPAPI {
	t.Helper()
	a := &agencyDPAPI{t: t, platform: platform, resource: resource, secret: "moi-dp-api-secret-" + rand.Text()}
	var err error
	if a.key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "MOI DP-API package signing"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &a.key.PublicKey, a.key)
	if err != nil {
		t.Fatal(err)
	}
	a.cert, _ = x509.ParseCertificate(der)
	a.certFile = filepath.Join(t.TempDir(), "moi-signing.pem")
	os.WriteFile(a.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *agencyDPAPI) introspect(tok string) bool {
	req, _ := http.NewRequest(http.MethodPost, a.platform+"/connect/introspect/"+a.resource, strings.NewReader(url.Values{"token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(a.resource, a.secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var in struct {
		Active bool `json:"active"`
	}
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&in) == nil && in.Active
}

func (a *agencyDPAPI) serve(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer mydata::")
	if !ok {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	active := a.introspect(tok)
	a.mu.Lock()
	a.tokens, a.actives = append(a.tokens, tok), append(a.actives, active)
	busy := a.busy > 0
	a.busy--
	a.mu.Unlock()
	if !active {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if busy {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	req, _ := http.NewRequest(http.MethodGet, a.platform+"/connect/userinfo/"+a.resource, nil)
	req.Header.Set("Authorization", "Bearer mydata::"+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	info := map[string]any{}
	json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	a.mu.Lock()
	a.userinfos = append(a.userinfos, info)
	a.mu.Unlock()
	uid, _ := info["uid"].(string)
	if uid != citizenA {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Write(a.pack(map[string]string{"household.json": `{"household":"PAYLOAD-MYDATA-` + uid + `"}`, "household.csv": "member\n" + uid + "\n"}))
}

// pack builds the package: the files, manifest.json with their SHA-256, and manifest.json.p7s, a detached
// CMS signature over the manifest.
func (a *agencyDPAPI) pack(files map[string]string) []byte {
	type entry struct {
		Name   string `json:"name"`
		SHA256 string `json:"sha256"`
	}
	var m struct {
		Files []entry `json:"files"`
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, data := range files {
		sum := sha256.Sum256([]byte(data))
		m.Files = append(m.Files, entry{name, hex.EncodeToString(sum[:])})
		w, _ := zw.Create(name)
		io.WriteString(w, data)
	}
	manifest, _ := json.Marshal(m)
	sd, err := pkcs7.NewSignedData(manifest)
	if err != nil {
		a.t.Error(err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSigner(a.cert, a.key, pkcs7.SignerInfoConfig{}); err != nil {
		a.t.Error(err)
	}
	sd.Detach()
	sig, _ := sd.Finish()
	w, _ := zw.Create("manifest.json")
	w.Write(manifest)
	w, _ = zw.Create("manifest.json.p7s")
	w.Write(sig)
	zw.Close()
	return buf.Bytes()
}

// TestMyDataBackendServesSP runs a DP connector whose dataset is an agency's existing MyData DP-API,
// unchanged, and an SP that fetches it through the real binaries.
func TestMyDataBackendServesSP(t *testing.T) {
	t.Parallel()
	h := StartHub(t, HubOptions{})
	listen := FreeTCP(t)
	agency := newAgencyDPAPI(t, "http://"+listen, "moi.household")
	secretFile := filepath.Join(t.TempDir(), "dp-api.secret")
	os.WriteFile(secretFile, []byte(agency.secret+"\n"), 0o600)
	ds := fmt.Sprintf(`datasets:
  moi.household:
    backend:
      type: mydata
      mydata:
        url: %s/api/v1/household
        method: POST
        resource: moi.household
        signing_cert: %s
        userinfo_fields: [sub, uid]
        api:
          listen: %s
          client_secret_file: %s
`, agency.srv.URL, agency.certFile, listen, secretFile)
	moi := h.EnrolledConnector("moi", "dp1", ConnectorOptions{Roles: "dp", Extra: ds})
	bank := h.EnrolledConnector("bank", "sp1", ConnectorOptions{Roles: "sp"})
	redirect := "http://127.0.0.1:9/callback"
	h.Admin("dataset", "add", "--id", "moi.household", "--name-zh", "戶籍資料", "--name-en", "Household registration", "--dp", "moi/dp1", "--min-aal", "2")
	h.Admin("service", "add", "--id", "bank.card", "--name-zh", "信用卡申辦", "--name-en", "Credit card application", "--sp", "bank/sp1",
		"--datasets", "moi.household", "--purpose", "Check identity", "--terms", "Terms", "--terms-version", "1", "--redirect-uri", redirect)
	Eventually(t, 10*time.Second, "DP key published", func() error {
		if out := h.Admin("--json", "connector", "list"); strings.Count(out, `"hpke_key"`) < 2 {
			return fmt.Errorf("keys so far: %d", strings.Count(out, `"hpke_key"`))
		}
		return nil
	})
	exchange := func(subject string) *ExchangeResult {
		c := h.NewCitizen()
		c.Login(subject, "nhi-card")
		p := NewPKCE()
		code := c.Approve(h.AuthorizeURL("bank.card", redirect, "moi.household", "st", p, nil))
		res, status, body := bank.Exchange(code, p.Verifier, redirect)
		if status != http.StatusOK {
			t.Fatalf("exchange: %d %s", status, body)
		}
		return res
	}

	res := exchange(citizenA)
	st, reason, content := res.Dataset(t, "moi.household")
	if st != "delivered" {
		t.Fatalf("household: %s %s", st, reason)
	}
	zr, err := zip.NewReader(bytes.NewReader(content), int64(len(content)))
	if err != nil {
		t.Fatalf("the SP did not get the agency's zip: %v", err)
	}
	names := map[string]bool{}
	for _, f := range zr.File {
		names[f.Name] = true
	}
	if !names["household.json"] || !names["manifest.json"] || !names["manifest.json.p7s"] {
		t.Errorf("package members: %v", names)
	}
	if ct := res.Datasets[0].ContentType; ct != "application/zip" {
		t.Errorf("content type %q", ct)
	}
	agency.mu.Lock()
	if len(agency.tokens) != 1 || !agency.actives[0] || agency.userinfos[0]["uid"] != citizenA || len(agency.userinfos[0]) != 2 {
		t.Errorf("the DP-API saw tokens %d, active %v, userinfo %v", len(agency.tokens), agency.actives, agency.userinfos)
	}
	spent := agency.tokens[0]
	agency.mu.Unlock()
	// The token served its one call: replayed, and made up, it is not active.
	for _, tok := range []string{spent, "mydata::" + spent, rand.Text()} {
		if agency.introspect(tok) {
			t.Errorf("token %q is active after the transfer", tok)
		}
	}

	// The agency is busy (429): the SP sees "pending", and the retry, with a new token, delivers.
	agency.mu.Lock()
	agency.busy = 1
	agency.mu.Unlock()
	res = exchange(citizenA)
	if st, _, _ := res.Dataset(t, "moi.household"); st != "pending" {
		t.Fatalf("household while the agency is busy: %s", st)
	}
	Eventually(t, 15*time.Second, "delivered on retry", func() error {
		r := bank.GetExchange(res.ID)
		if st, _, _ := r.Dataset(t, "moi.household"); st != "delivered" {
			return fmt.Errorf("household %s", st)
		}
		return nil
	})
	agency.mu.Lock()
	if n := len(agency.tokens); n < 3 || agency.tokens[n-1] == agency.tokens[n-2] {
		t.Errorf("the retry did not come with a fresh token (%d calls)", n)
	}
	agency.mu.Unlock()

	// A citizen the agency does not know: no record.
	if st, _, _ := exchange(citizenB).Dataset(t, "moi.household"); st != "no_record" {
		t.Errorf("unknown citizen: %s", st)
	}
	// A configuration reload (SIGHUP) opens the dataset's backend anew while the old one still holds the
	// listener: it must succeed, and the dataset must still be served.
	if err := syscall.Kill(moi.proc.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 10*time.Second, "reload ok", func() error {
		if !strings.Contains(moi.Metrics(), `mydata_connector_config_reloads_total{result="ok"} 1`+"\n") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	if st, reason, _ := exchange(citizenA).Dataset(t, "moi.household"); st != "delivered" {
		t.Errorf("after a reload: %s %s", st, reason)
	}

	// The DP's audit log has the transfers and no national ID.
	out, err := moi.Audit("export")
	if err != nil || !strings.Contains(out, `"outcome":"delivered"`) || strings.Contains(out, citizenA) {
		t.Errorf("DP audit: %v\n%s", err, out)
	}
}
