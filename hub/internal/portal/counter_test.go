package portal

import (
	"encoding/base64"
	"html"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mydatafed/mydata/hub/internal/fsm"
)

// counterWorld is the portal world with a counter service whose datasets need level 2.
func counterWorld(t *testing.T) *world {
	w := newWorld(t, "")
	if err := w.apply(&fsm.ServiceAdd{Service: fsm.Service{ID: "bank.counter", NameZh: "臨櫃開戶", NameEn: "Account at the counter", SPOrg: "bank", SPConnector: "sp1",
		Modes: []string{"counter"}, Datasets: []string{"moi.household", "moi.records"}, Purpose: "Know who you are.", Terms: "Counter terms.", TermsVersion: "2"}, Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return w
}

var codeOnPage = regexp.MustCompile(`id="code"[^>]*>([A-Z0-9]{4}) ([A-Z0-9]{4})<`)

func TestCounterPages(t *testing.T) {
	for _, tc := range []struct {
		lang                                              string
		title, asks, badAgent, codeTitle, counted, cancel string
	}{
		{"en", "Show your data at a counter", "The counter of Demo Bank will receive", "The agent&#39;s national ID number is not valid",
			"Your counter code", "Counter verification", "Cancel a counter code"},
		{"zh-TW", "臨櫃核驗免檢據", "示範銀行 的櫃檯將向下列機關取得您的資料", "代辦人的身分證統一編號格式錯誤",
			"您的臨櫃代碼", "臨櫃核驗", "取消臨櫃代碼"},
	} {
		t.Run(tc.lang, func(t *testing.T) {
			w := counterWorld(t)
			b := w.browser()
			b.lang = tc.lang
			list := b.get("/counter")
			if list.status != http.StatusOK || !strings.Contains(list.body, tc.title) || !strings.Contains(list.body, `href="/counter/bank.counter"`) || strings.Contains(list.body, "bank.loan") {
				t.Fatalf("list: %d %s", list.status, list.body)
			}
			// Not logged in, then too weak a login: to the login page, which asks for the level the datasets need.
			if r := b.get("/counter/bank.counter"); r.status != http.StatusSeeOther || r.location != "/login?next=%2Fcounter%2Fbank.counter" {
				t.Fatalf("without a session: %d %q", r.status, r.location)
			}
			b.login(alice, "otp", "/counter/bank.counter")
			if r := b.get("/counter/bank.counter"); r.status != http.StatusSeeOther {
				t.Fatalf("a level-1 session reached the counter page: %d", r.status)
			}
			if r := b.get("/login?next=%2Fcounter%2Fbank.counter"); !strings.Contains(r.body, `id="stepup"`) {
				t.Fatalf("no step-up page:\n%s", r.body)
			}
			b.login(alice, "nhi-card", "/counter/bank.counter")
			page := b.get("/counter/bank.counter")
			for _, want := range []string{tc.asks, "Know who you are.", "Counter terms.", "moi.records", `name="agent_id"`, "20"} {
				if !strings.Contains(page.body, want) {
					t.Errorf("counter page lacks %q", want)
				}
			}
			// A bad agent is refused with the page shown again, the values kept.
			f := form(page.body, "/counter/bank.counter")
			f.Set("agent_id", "B123456789")
			f.Set("agent_name", "Agent")
			if r := b.post("/counter/bank.counter", f); r.status != http.StatusBadRequest || !strings.Contains(r.body, tc.badAgent) || !strings.Contains(r.body, `value="B123456789"`) {
				t.Fatalf("bad agent: %d\n%s", r.status, r.body)
			}
			for _, agent := range [][2]string{{bob, ""}, {alice, "Me"}} {
				f.Set("agent_id", agent[0])
				f.Set("agent_name", agent[1])
				if r := b.post("/counter/bank.counter", f); r.status != http.StatusBadRequest {
					t.Fatalf("agent %v accepted: %d", agent, r.status)
				}
			}
			// Another session's form is refused.
			other := w.browser()
			other.login(alice, "nhi-card", "/history")
			if r := other.post("/counter/bank.counter", f); r.status != http.StatusForbidden {
				t.Fatalf("another session's form: %d", r.status)
			}
			f.Set("agent_id", bob)
			f.Set("agent_name", "王小明")
			got := b.post("/counter/bank.counter", f)
			m := codeOnPage.FindStringSubmatch(got.body)
			if got.status != http.StatusOK || m == nil || !strings.Contains(got.body, tc.codeTitle) || !strings.Contains(got.body, "王小明") {
				t.Fatalf("code page: %d\n%s", got.status, got.body)
			}
			// The expiry in the portal's zone (the test's CST, UTC+8).
			if want := w.now.Add(20 * time.Minute).In(time.FixedZone("CST", 8*3600)).Format("15:04"); !strings.Contains(got.body, want) {
				t.Errorf("code page lacks the expiry %s", want)
			}
			qr := regexp.MustCompile(`src="data:image/svg&#43;xml;base64,([^"]+)"`).FindStringSubmatch(got.body)
			if qr == nil {
				t.Fatal("no QR code image")
			}
			if svg, err := base64.StdEncoding.DecodeString(html.UnescapeString(qr[1])); err != nil || !strings.HasPrefix(string(svg), "<svg") {
				t.Fatalf("QR code image: %v %.40q", err, svg)
			}
			// The same page agreed again makes no second code.
			if r := b.post("/counter/bank.counter", f); r.status != http.StatusConflict {
				t.Fatalf("second agreement on one page: %d", r.status)
			}
			// The history shows it, with a cancel that asks first.
			hist := b.get("/history")
			if !strings.Contains(hist.body, tc.counted) || !strings.Contains(hist.body, `data-state="granted"`) {
				t.Fatalf("history:\n%s", hist.body)
			}
			id := regexp.MustCompile(`id="revoke-([^"]+)"`).FindStringSubmatch(hist.body)
			if id == nil {
				t.Fatal("no cancel link")
			}
			confirm := b.get("/consents/" + id[1] + "/revoke")
			if !strings.Contains(confirm.body, tc.cancel) {
				t.Fatalf("cancel page:\n%s", confirm.body)
			}
			if r := b.post("/consents/"+id[1]+"/revoke", form(confirm.body, "/consents/"+id[1]+"/revoke")); r.status != http.StatusSeeOther {
				t.Fatalf("cancel: %d", r.status)
			}
			if k, _ := w.f.Consent(id[1]); k.State != fsm.ConsentRevoked {
				t.Fatalf("after cancel: %s", k.State)
			}
			if hist := b.get("/history"); !strings.Contains(hist.body, `data-state="revoked"`) || strings.Contains(hist.body, `id="revoke-`) {
				t.Fatalf("history after cancel:\n%s", hist.body)
			}
		})
	}
}

func TestCounterUnknownService(t *testing.T) {
	w := counterWorld(t)
	b := w.browser()
	b.login(alice, "nhi-card", "/history")
	// An online-only service is no counter service.
	for _, id := range []string{"bank.loan", "nope"} {
		if r := b.get("/counter/" + id); r.status != http.StatusNotFound {
			t.Errorf("%s: %d", id, r.status)
		}
	}
}

func TestQRCode(t *testing.T) {
	svg, err := qrSVG("ABCD2345")
	if err != nil {
		t.Fatal(err)
	}
	// Version 1 (21 modules) and a quiet zone of 4 on each side; the three finder patterns' corners are dark.
	if !strings.Contains(svg, `viewBox="0 0 29 29"`) {
		t.Fatalf("not a version-1 code with its quiet zone: %.80s", svg)
	}
	for _, corner := range []string{"M4 4h1", "M24 4h1", "M4 24h1"} {
		if !strings.Contains(svg, corner) {
			t.Errorf("finder corner %s missing", corner)
		}
	}
}
