package outbox

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/hashicorp/raft"
	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/hub/internal/keyring"
	"github.com/mydatafed/mydata/hub/internal/notify"
	"github.com/mydatafed/mydata/pkg/hubapi"
)

const alice = "A123456789"

// world is a state machine fed its log directly, its keyring, a real SMTP server that can go down, and an
// SMS gateway.
type world struct {
	t     *testing.T
	f     *fsm.FSM
	keys  *keyring.Keyring
	index uint64
	now   time.Time

	smtpAddr string
	smtp     *smtp.Server
	smtpLn   net.Listener
	mu       sync.Mutex
	mails    []*mail.Message
	bodies   []string
	sms      []map[string]string
	gateway  *httptest.Server
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

type session struct{ w *world }

func (s *session) Mail(string, *smtp.MailOptions) error { return nil }
func (s *session) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *session) Reset()                               {}
func (s *session) Logout() error                        { return nil }
func (s *session) Data(r io.Reader) error {
	m, err := mail.ReadMessage(r)
	if err != nil {
		return err
	}
	var b []byte
	if m.Header.Get("Content-Transfer-Encoding") == "base64" {
		b, _ = io.ReadAll(base64.NewDecoder(base64.StdEncoding, m.Body))
	} else {
		b, _ = io.ReadAll(quotedprintable.NewReader(m.Body))
	}
	s.w.mu.Lock()
	s.w.mails = append(s.w.mails, m)
	s.w.bodies = append(s.w.bodies, string(b))
	s.w.mu.Unlock()
	return nil
}

func (w *world) startSMTP() {
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{w}, nil }))
	srv.Domain = "localhost"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	addr := w.smtpAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		w.t.Fatal(err)
	}
	w.smtpAddr = ln.Addr().String()
	w.smtp, w.smtpLn = srv, ln
	go srv.Serve(ln)
}

// stopSMTP takes the mail server down; closing the listener too, since Serve may not have taken it yet.
func (w *world) stopSMTP() {
	w.smtp.Close()
	w.smtpLn.Close()
}

func newWorld(t *testing.T) *world {
	t.Helper()
	dir := t.TempDir()
	f, err := fsm.Open(filepath.Join(dir, "state.db"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	w := &world{t: t, f: f, now: time.Now()}
	kek, _, err := keyring.LoadOrCreateKEK(filepath.Join(dir, "kek"))
	if err != nil {
		t.Fatal(err)
	}
	w.keys, _ = keyring.New(kek, f)
	if err := w.keys.Ensure(w.apply); err != nil {
		t.Fatal(err)
	}
	w.startSMTP()
	t.Cleanup(func() { w.smtp.Close() })
	w.gateway = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var body map[string]string
		_ = json.NewDecoder(r.Body).Decode(&body)
		w.mu.Lock()
		w.sms = append(w.sms, body)
		w.mu.Unlock()
		rw.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(w.gateway.Close)
	for _, cmd := range []fsm.Command{
		&fsm.OrgAdd{Code: "moi", NameZh: "內政部", NameEn: "Ministry of the Interior", Type: "central-agency", Now: w.now},
		&fsm.OrgAdd{Code: "bank", NameZh: "示範銀行", NameEn: "Demo Bank", Type: "financial-institution", Now: w.now},
		&fsm.ConnectorAdd{Org: "moi", Name: "dp1", Roles: []string{"dp"}, Address: "127.0.0.1:7001", Now: w.now},
		&fsm.ConnectorAdd{Org: "bank", Name: "sp1", Roles: []string{"sp"}, Address: "127.0.0.1:7002", Now: w.now},
		&fsm.DatasetAdd{Dataset: fsm.Dataset{ID: "moi.household", NameZh: "戶籍資料", NameEn: "Household registration", DPOrg: "moi", DPConnector: "dp1", MinAAL: 1}, Now: w.now},
		&fsm.ServiceAdd{Service: fsm.Service{ID: "bank.loan", NameZh: "貸款申請", NameEn: "Loan application", SPOrg: "bank", SPConnector: "sp1", Modes: []string{"online"},
			Datasets: []string{"moi.household"}, Purpose: "p", Terms: "t", TermsVersion: "1", RedirectURIs: []string{"https://bank.example/cb"}}, Now: w.now},
	} {
		if err := w.apply(cmd); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// contact gives alice verified addresses, sealed as the portal seals them.
func (w *world) contact(lang string, email, sms bool) {
	h, _ := w.keys.LookupHash(alice)
	e, _ := w.keys.SealSubject("alice@example.tw", "contact email")
	p, _ := w.keys.SealSubject("+886912345678", "contact sms")
	if err := w.apply(&fsm.ContactSet{Contact: fsm.Contact{SubjectHash: h, EmailSealed: e, EmailVerifiedAt: w.now, PhoneSealed: p, PhoneVerifiedAt: w.now,
		Lang: lang, NotifyEmail: email, NotifySMS: sms, UpdatedAt: w.now}}); err != nil {
		w.t.Fatal(err)
	}
}

// use records a consent of alice's and its use, as the consent service and the redemption do.
func (w *world) use(id string) { w.useIn(id, "") }

func (w *world) useIn(id, mode string) {
	h, _ := w.keys.LookupHash(alice)
	sealed, _ := w.keys.SealSubject(alice, id)
	c := fsm.Consent{ID: id, Service: "bank.loan", Subject: h, SubjectSealed: sealed, Datasets: []string{"moi.household"}, TermsVersion: "1", AAL: 2,
		LoginMethod: "nhi-card", RedirectURI: "https://bank.example/cb", CodeChallenge: strings.Repeat("a", 43), CreatedAt: w.now, ExpiresAt: w.now.Add(time.Hour),
		Mode: mode}
	if err := w.apply(&fsm.ConsentRecord{Consent: c, Approve: true, CodeHash: "h-" + id, CodeExpiresAt: w.now.Add(time.Minute), Now: w.now}); err != nil {
		w.t.Fatal(err)
	}
	if err := w.apply(&fsm.ConsentUse{ID: id, Now: w.now}); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) outbox() *Outbox {
	port, _ := strconv.Atoi(w.smtpAddr[strings.LastIndex(w.smtpAddr, ":")+1:])
	tokenFile := filepath.Join(w.t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("gateway-token"), 0o600)
	sender, err := notify.New(notify.Config{Mail: notify.MailConfig{Host: "127.0.0.1", Port: port, From: "MyData <no-reply@mydata.test>", StartTLS: "none", Timeout: 2 * time.Second},
		SMS: notify.SMSConfig{URL: w.gateway.URL, TokenFile: tokenFile}})
	if err != nil {
		w.t.Fatal(err)
	}
	tmpl, err := notify.LoadTemplates("")
	if err != nil {
		w.t.Fatal(err)
	}
	o, err := New(Config{State: w.f, Keys: w.keys, Apply: w.apply, Sender: sender, Templates: tmpl, PortalURL: "https://mydata.test",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return w.now }})
	if err != nil {
		w.t.Fatal(err)
	}
	return o
}

func (w *world) counts() (int, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.mails), len(w.sms)
}

func TestOneNoticePerUseAndChannel(t *testing.T) {
	w := newWorld(t)
	w.contact("en", true, true)
	w.use("c1")
	o := w.outbox()
	if err := o.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if m, s := w.counts(); m != 1 || s != 1 {
		t.Fatalf("%d mails, %d texts after one use", m, s)
	}
	subject, _ := new(mime.WordDecoder).DecodeHeader(w.mails[0].Header.Get("Subject"))
	all := subject + "\n" + w.bodies[0] + "\n" + w.sms[0]["text"]
	for _, want := range []string{"Household registration", "Demo Bank", "https://mydata.test/history"} {
		if !strings.Contains(all, want) {
			t.Errorf("the notice lacks %q:\n%s", want, all)
		}
	}
	if w.sms[0]["to"] != "+886912345678" || w.mails[0].Header.Get("To") == "" {
		t.Errorf("addressed to %q / %q", w.sms[0]["to"], w.mails[0].Header.Get("To"))
	}
	// Nothing is sent twice, however often the outbox looks.
	for range 3 {
		o.Once(context.Background())
	}
	if m, s := w.counts(); m != 1 || s != 1 {
		t.Fatalf("%d mails, %d texts after looking again", m, s)
	}
	for _, id := range []string{"use:c1:email", "use:c1:sms"} {
		if e, _ := w.f.OutboxOf(id); e == nil || e.State != fsm.OutboxSent {
			t.Errorf("%s: %+v", id, e)
		}
	}
}

func TestNoticeInTheCitizensLanguage(t *testing.T) {
	w := newWorld(t)
	w.contact("zh-TW", true, false)
	w.use("c1")
	w.outbox().Once(context.Background())
	if m, s := w.counts(); m != 1 || s != 0 {
		t.Fatalf("%d mails, %d texts: only mail was chosen", m, s)
	}
	if !strings.Contains(w.bodies[0], "戶籍資料") || !strings.Contains(w.bodies[0], "示範銀行") {
		t.Errorf("the Chinese notice lacks the dataset's Chinese name:\n%s", w.bodies[0])
	}
}

func TestNoContactNoNotice(t *testing.T) {
	w := newWorld(t)
	w.use("c1")
	if e, _ := w.f.OutboxOf("use:c1:email"); e != nil {
		t.Fatalf("a notice was queued for a citizen without contacts: %+v", e)
	}
	w.contact("en", false, false)
	w.use("c2")
	if e, _ := w.f.OutboxOf("use:c2:email"); e != nil {
		t.Fatalf("a notice was queued for a citizen who turned them off: %+v", e)
	}
}

func TestRetriedWhenTheServerComesBack(t *testing.T) {
	w := newWorld(t)
	w.contact("en", true, false)
	w.stopSMTP()
	w.use("c1")
	o := w.outbox()
	o.Once(context.Background())
	e, _ := w.f.OutboxOf("use:c1:email")
	if e.State != fsm.OutboxPending || e.Attempts != 1 || !e.NextAt.After(w.now) || e.LastError == "" {
		t.Fatalf("after a failed attempt: %+v", e)
	}
	// Not before its time.
	w.startSMTP()
	o.Once(context.Background())
	if m, _ := w.counts(); m != 0 {
		t.Fatal("retried before the backoff")
	}
	w.now = e.NextAt
	o.Once(context.Background())
	if m, _ := w.counts(); m != 1 {
		t.Fatalf("%d mails after the server came back", m)
	}
	if e, _ := w.f.OutboxOf("use:c1:email"); e.State != fsm.OutboxSent || e.Attempts != 2 {
		t.Errorf("after the retry: %+v", e)
	}
}

func TestAttemptLostInALeaderChangeIsNotRepeated(t *testing.T) {
	w := newWorld(t)
	w.contact("en", true, false)
	w.use("c1")
	// The old leader claimed the attempt and died before recording its outcome.
	if err := w.apply(&fsm.OutboxClaim{ID: "use:c1:email", Attempt: 1, At: w.now}); err != nil {
		t.Fatal(err)
	}
	o := w.outbox()
	o.recover()
	o.Once(context.Background())
	if m, _ := w.counts(); m != 0 {
		t.Fatal("a possibly sent notice was sent again")
	}
	if e, _ := w.f.OutboxOf("use:c1:email"); e.State != fsm.OutboxFailed {
		t.Errorf("in flight at a leader change: %+v", e)
	}
	// A claim for an attempt already made is refused: two leaders cannot both send.
	if err := w.apply(&fsm.OutboxClaim{ID: "use:c1:email", Attempt: 1, At: w.now}); err == nil {
		t.Error("a second claim of the same attempt was accepted")
	}
}

func TestPermanentFailureIsNotRetried(t *testing.T) {
	w := newWorld(t)
	w.contact("en", false, true)
	w.gateway.Config.Handler = http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { rw.WriteHeader(http.StatusBadRequest) })
	w.use("c1")
	w.outbox().Once(context.Background())
	if e, _ := w.f.OutboxOf("use:c1:sms"); e.State != fsm.OutboxFailed {
		t.Errorf("after a permanent refusal: %+v", e)
	}
}

func TestCounterUseSaysCounter(t *testing.T) {
	w := newWorld(t)
	w.contact("en", true, false)
	w.useIn("c1", "counter")
	w.outbox().Once(context.Background())
	if m, _ := w.counts(); m != 1 || !strings.Contains(strings.ToLower(w.bodies[0]), "counter") {
		t.Fatalf("%d mails; the notice of a counter use:\n%s", m, w.bodies)
	}
}

// A download is notified as the citizen's own download; a dataset its agency prepares later gets a "ready"
// notice when the agency said it would be ready, not before, and once.
func TestDownloadNotices(t *testing.T) {
	w := newWorld(t)
	w.contact("en", true, false)
	h, _ := w.keys.LookupHash(alice)
	if err := w.apply(&fsm.DownloadRecord{Consent: fsm.Consent{ID: "d1", Subject: h, Datasets: []string{"moi.household"}, AAL: 2, LoginMethod: "nhi-card",
		Mode: hubapi.ModeDownload}, Now: w.now}); err != nil {
		t.Fatal(err)
	}
	if err := w.apply(&fsm.DownloadPending{ConsentID: "d1", Dataset: "moi.household", ReadyAt: w.now.Add(10 * time.Minute), Now: w.now}); err != nil {
		t.Fatal(err)
	}
	o := w.outbox()
	o.Once(context.Background())
	if m, _ := w.counts(); m != 1 || !strings.Contains(w.bodies[0], "you downloaded the following personal data") {
		t.Fatalf("%d mails; the notice of a download:\n%s", m, w.bodies)
	}
	w.now = w.now.Add(11 * time.Minute)
	o.Once(context.Background())
	o.Once(context.Background())
	if m, _ := w.counts(); m != 2 || !strings.Contains(w.bodies[1], "ready") || !strings.Contains(w.bodies[1], "https://mydata.test/download/d1") ||
		!strings.Contains(w.bodies[1], "Household registration") {
		t.Fatalf("%d mails; the ready notice:\n%s", m, w.bodies)
	}
}

// TestApplicantToldOfDecisions: an organisation's joining application names a contact; the FSC's refusal
// of the first reaches it by mail through the SMTP server, in Chinese and English with the reason; the
// second, approved, is mailed too, and the address becomes the organisation's, where the news of a later
// application without an address of its own goes. An application without any address is not mailed.
func TestApplicantToldOfDecisions(t *testing.T) {
	w := newWorld(t)
	admin := fsm.Actor{SPIFFEID: "spiffe://t/operator/admin", Roles: []string{fsm.RoleFederationAdmin}}
	fsc := fsm.Actor{SPIFFEID: "spiffe://t/operator/fsc", Roles: []string{fsm.RoleReviewer + ":financial"}}
	join := func(id, code, contact string) {
		t.Helper()
		err := w.apply(&fsm.ApplicationSubmit{Application: fsm.Application{ID: id, Kind: fsm.ApplyOrg, ContactEmail: contact,
			OrgInfo: &fsm.OrgAdd{Code: code, NameZh: "合作銀行", NameEn: "Cooperative Bank", Type: "financial-institution"}}, Actor: admin, Now: w.now})
		if err != nil {
			t.Fatal(err)
		}
	}
	decide := func(cmd fsm.Command) {
		t.Helper()
		if err := w.apply(cmd); err != nil {
			t.Fatal(err)
		}
	}
	o := w.outbox()
	join("app-j1", "coop", "it@coop.example.tw")
	decide(&fsm.ApplicationReview{ID: "app-j1", Actor: fsc, Approve: false, Reason: "資安查核未完成 security audit pending", Now: w.now})
	join("app-j2", "coop", "it@coop.example.tw")
	decide(&fsm.ApplicationReview{ID: "app-j2", Actor: fsc, Approve: true, Reason: "ok", Now: w.now})
	decide(&fsm.ApplicationDecide{ID: "app-j2", Actor: admin, Approve: true, Reason: "歡迎加入", Now: w.now})
	// A stage application without an address of its own: to the organisation's.
	decide(&fsm.ConnectorAdd{Org: "coop", Name: "sp1", Roles: []string{"sp"}, Address: "127.0.0.1:7003", Now: w.now})
	decide(&fsm.ApplicationSubmit{Application: fsm.Application{ID: "app-j3", Kind: fsm.ApplyService, Stage: "sandbox",
		Service: &fsm.Service{ID: "coop.loan", NameZh: "貸款", NameEn: "Loan", SPOrg: "coop", SPConnector: "sp1", Modes: []string{"online"},
			Datasets: []string{"moi.household"}, Purpose: "p", Terms: "t", TermsVersion: "1", RedirectURIs: []string{"https://coop.example/cb"}}}, Actor: admin, Now: w.now})
	decide(&fsm.ApplicationReview{ID: "app-j3", Actor: fsc, Approve: true, Reason: "ok", Now: w.now})
	decide(&fsm.ApplicationDecide{ID: "app-j3", Actor: admin, Approve: false, Reason: "條款不完整 terms incomplete", Now: w.now})
	// The bank has no contact: nothing queued for its application.
	decide(&fsm.ApplicationSubmit{Application: fsm.Application{ID: "app-j4", Kind: fsm.ApplyService, Stage: "sandbox",
		Service: &fsm.Service{ID: "bank.card", NameZh: "卡", NameEn: "Card", SPOrg: "bank", SPConnector: "sp1", Modes: []string{"online"},
			Datasets: []string{"moi.household"}, Purpose: "p", Terms: "t", TermsVersion: "1", RedirectURIs: []string{"https://bank.example/cb"}}}, Actor: admin, Now: w.now})
	decide(&fsm.ApplicationReview{ID: "app-j4", Actor: fsc, Approve: false, Reason: "no", Now: w.now})
	if err := o.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if m, _ := w.counts(); m != 3 {
		t.Fatalf("%d mails, want 3", m)
	}
	for i, want := range []struct{ subject, body string }{
		{"主管機關未同意", "資安查核未完成 security audit pending"},
		{"已核准", "歡迎加入"},
		{"refused", "條款不完整 terms incomplete"},
	} {
		m := w.mails[i]
		subject, _ := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
		if to, err := m.Header.AddressList("To"); err != nil || len(to) != 1 || to[0].Address != "it@coop.example.tw" || !strings.Contains(subject, want.subject) {
			t.Errorf("mail %d: to %q, subject %q", i, m.Header.Get("To"), subject)
		}
		for _, s := range []string{want.body, "合作銀行", "Cooperative Bank", "app-j"} {
			if !strings.Contains(w.bodies[i], s) {
				t.Errorf("mail %d lacks %q:\n%s", i, s, w.bodies[i])
			}
		}
	}
	if e, _ := w.f.OutboxOf("application:app-j3/refused:email"); e == nil || e.State != fsm.OutboxSent {
		t.Fatalf("outbox row: %+v", e)
	}
	t.Logf("the authority's refusal as sent:\n%s", w.bodies[0])
}
