package federationtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// taipei is the federation's calendar zone (UTC+8, no daylight saving time).
var taipei = time.FixedZone("Asia/Taipei", 8*60*60)

// noticeCalendar makes calendar files for this year and the next with a holiday on the first weekday after
// today (Taipei), and finds the first day a termination filed today may take effect: 7 working days after,
// the holiday not counted.
func noticeCalendar(t *testing.T) (files []string, holiday, effective time.Time) {
	t.Helper()
	y, m, d := time.Now().In(taipei).Date()
	today := time.Date(y, m, d, 0, 0, 0, 0, taipei)
	weekend := func(d time.Time) bool { return d.Weekday() == time.Saturday || d.Weekday() == time.Sunday }
	holiday = today.AddDate(0, 0, 1)
	for weekend(holiday) {
		holiday = holiday.AddDate(0, 0, 1)
	}
	days := map[int][]string{today.Year(): nil, today.Year() + 1: nil}
	days[holiday.Year()] = append(days[holiday.Year()], holiday.Format(time.DateOnly)+" holiday 測試假日")
	for year, lines := range days {
		if len(lines) == 0 {
			// Every file names a day: the first Monday of June, say.
			jun := time.Date(year, 6, 1, 0, 0, 0, 0, taipei)
			for jun.Weekday() != time.Monday {
				jun = jun.AddDate(0, 0, 1)
			}
			lines = []string{jun.Format(time.DateOnly) + " holiday 端午節"}
			if jun.Year() == holiday.Year() {
				t.Fatal("unexpected")
			}
		}
		path := filepath.Join(t.TempDir(), fmt.Sprint(year)+".txt")
		if err := os.WriteFile(path, []byte("# working-day calendar\n"+strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, path)
	}
	workday := func(d time.Time) bool { return !weekend(d) && !d.Equal(holiday) }
	// The last filing day of an effective day E: 7 working days back from the day before E.
	deadline := func(e time.Time) time.Time {
		for left := 7; left > 0; {
			e = e.AddDate(0, 0, -1)
			if workday(e) {
				left--
			}
		}
		return e
	}
	effective = today.AddDate(0, 0, 1)
	for deadline(effective).Before(today) {
		effective = effective.AddDate(0, 0, 1)
	}
	return files, holiday, effective
}

// TestTerminationOnNotice: the operator loads the working-day calendar; a termination of a service filed
// one day short of 7 working days (a holiday among them) is refused, filed for the next day it is
// approved and scheduled; the lifecycle job (its clock moved, MYDATA_LIFECYCLE_CLOCK_OFFSET) leaves it
// alone the evening before and puts it into effect on its day: the hub refuses the service's codes and
// every DP's directory withdraws it within seconds. A dataset's new name and an organisation's leaving,
// filed by the CLI for the same day, are announced in Chromium (both languages, desktop and 360 px) and
// take effect with it: the leaving organisation's connector is revoked in the DP's directory. An emergency suspension of a dataset takes effect at
// once. Not parallel: the hub takes the clock offset from the environment.
func TestTerminationOnNotice(t *testing.T) {
	files, holiday, effective := noticeCalendar(t)
	evening := effective.Add(-time.Hour)
	t.Setenv("MYDATA_LIFECYCLE_CLOCK_OFFSET", time.Until(evening).Round(time.Second).String())
	mail := startMailSink(t)
	_, mailPort, _ := strings.Cut(mail.addr, ":")
	h := StartHub(t, HubOptions{Notify: fmt.Sprintf("  mail: {host: 127.0.0.1, port: %s, from: \"MyData <noreply@mydata.test>\", start_tls: none, timeout: 10s}\n", mailPort)})
	redirect := "http://127.0.0.1:9/callback"
	moi := h.EnrolledConnector("moi", "dp1", ConnectorOptions{Roles: "dp", Extra: DatasetsYAML(FileDataset(t, "moi.household", map[string]string{citizenA: `{"household":"A"}`}))})
	bank := h.EnrolledConnector("bank", "sp1", ConnectorOptions{Roles: "sp"})
	h.Admin("dataset", "add", "--id", "moi.household", "--name-zh", "戶籍資料", "--name-en", "Household registration", "--dp", "moi/dp1", "--min-aal", "2")
	h.Admin("service", "add", "--id", "bank.card", "--name-zh", "信用卡申辦", "--name-en", "Credit card application", "--sp", "bank/sp1",
		"--datasets", "moi.household", "--purpose", "p", "--terms", "t", "--terms-version", "1", "--redirect-uri", redirect)
	Eventually(t, 10*time.Second, "DP key published", func() error {
		if !strings.Contains(h.Admin("--json", "connector", "list"), `"hpke_key"`) {
			return errors.New("no key yet")
		}
		return nil
	})
	terminate := func(day time.Time) (string, error) {
		return h.AdminErr("application", "submit", "terminate", "--service", "bank.card", "--effective-on", day.Format(time.DateOnly))
	}
	if _, err := terminate(effective); err == nil || !strings.Contains(err.Error(), "no working-day calendar") {
		t.Fatalf("before the calendar is loaded: %v", err)
	}
	for _, f := range files {
		h.Admin("calendar", "load", f)
	}
	if out := h.Admin("calendar", "show", "--year", fmt.Sprint(holiday.Year())); !strings.Contains(out, holiday.Format(time.DateOnly)) {
		t.Fatalf("calendar: %s", out)
	}
	if _, err := terminate(effective.AddDate(0, 0, -1)); err == nil || !strings.Contains(err.Error(), "at least 7 working days ahead") {
		t.Fatalf("a day short: %v", err)
	}
	out, err := terminate(effective)
	if err != nil {
		t.Fatal(err)
	}
	id := applicationIDRe.FindStringSubmatch(out)[1]
	if out := h.Admin("application", "decide", "--id", id, "--approve", "--reason", "依申請終止"); !strings.Contains(out, "scheduled for "+effective.Format(time.DateOnly)) {
		t.Fatalf("approved: %s", out)
	}
	// On the same day the agency's dataset takes a new name, and a cooperative bank leaves the federation.
	coop := h.EnrolledConnector("coop", "sp2", ConnectorOptions{Roles: "sp"})
	h.Admin("service", "add", "--id", "coop.loan", "--name-zh", "貸款申辦", "--name-en", "Loan application", "--sp", "coop/sp2",
		"--datasets", "moi.household", "--purpose", "p", "--terms", "t", "--terms-version", "1", "--redirect-uri", redirect)
	for _, args := range [][]string{
		{"change", "dataset", "--effective-on", effective.Format(time.DateOnly), "--id", "moi.household", "--name-zh", "戶籍謄本", "--name-en", "Household transcript",
			"--dp", "moi/dp1", "--min-aal", "2", "--contact-email", "it@moi.example.tw"},
		{"terminate", "--org", "coop", "--effective-on", effective.Format(time.DateOnly)},
		{"change", "org", "--effective-on", effective.Format(time.DateOnly), "--code", "moi", "--name-zh", "內政部戶政司", "--name-en", "Department of Household Registration",
			"--type", "central-agency", "--contact-email", "hr@moi.example.tw"},
	} {
		out, err := h.AdminErr(append([]string{"application", "submit"}, args...)...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		id := applicationIDRe.FindStringSubmatch(out)[1]
		h.Admin("application", "decide", "--id", id, "--approve", "--reason", "依申請")
	}
	// A citizen agrees now, told on the consent page, as on the catalogue, that the service ends; the code is
	// good until the termination takes effect.
	notice := "the service “Credit card application” ends; from " + effective.Format(time.DateOnly) + " it is no longer offered"
	citizen := h.NewCitizen()
	if page := citizen.Get("/catalogue"); !strings.Contains(page.Body, notice) {
		t.Fatalf("the catalogue does not announce the termination: %s", page.Body)
	}
	citizen.Login(citizenA, "nhi-card")
	p := NewPKCE()
	authURL := h.AuthorizeURL("bank.card", redirect, "moi.household", "st", p, nil)
	if page := citizen.GetFollow(authURL); !strings.Contains(page.Body, notice) {
		t.Fatalf("the consent page does not announce the termination: %s", page.Body)
	}
	code := citizen.Approve(authURL)
	// A code for the leaving bank's service too, good until the day.
	coopPKCE := NewPKCE()
	coopCode := citizen.Approve(h.AuthorizeURL("coop.loan", redirect, "moi.household", "st2", coopPKCE, nil))
	// The agency's contact hears its change is approved, for its day.
	mail.wait(t, "it@moi.example.tw", "takes effect on "+effective.Format(time.DateOnly))
	t.Run("pages", func(t *testing.T) {
		viewAnnouncements(t, h, authURL, map[string][]string{
			"zh-TW": {"「信用卡申辦」服務將自 " + effective.Format(time.DateOnly) + " 起終止", "「戶籍資料」資料將自 " + effective.Format(time.DateOnly) + " 起變更", "名稱改為「戶籍謄本」",
				"將自 " + effective.Format(time.DateOnly) + " 起更名為「內政部戶政司」"},
			"en": {notice, "the data “Household registration” changes on " + effective.Format(time.DateOnly), "its name becomes “Household transcript”",
				"Test agency moi: from " + effective.Format(time.DateOnly) + " its name is “Department of Household Registration”"},
		})
	})

	withdrawn := func(c *Connector) string {
		var signed struct {
			Payload []byte `json:"payload"`
		}
		var doc struct {
			Withdrawn []struct{ On, ID, Status string } `json:"withdrawn"`
		}
		raw, err := os.ReadFile(filepath.Join(c.DataDir(), "directory.json"))
		if err != nil || json.Unmarshal(raw, &signed) != nil || json.Unmarshal(signed.Payload, &doc) != nil {
			t.Fatalf("stored directory: %v", err)
		}
		var out []string
		for _, w := range doc.Withdrawn {
			out = append(out, w.On+" "+w.ID+" "+w.Status)
		}
		return strings.Join(out, ",")
	}
	// The evening before, the job leaves it be.
	time.Sleep(7 * time.Second)
	if w := withdrawn(moi); w != "" {
		t.Fatalf("withdrawn the evening before: %s", w)
	}
	// Its day: the job puts it into effect, the hub issues nothing for it, the DP's directory withdraws it.
	h.Stop()
	t.Setenv("MYDATA_LIFECYCLE_CLOCK_OFFSET", time.Until(effective.Add(time.Minute)).Round(time.Second).String())
	h.Start()
	took := Eventually(t, 30*time.Second, "the DP's directory withdraws the service", func() error {
		// The service ends, and so does the leaving organisation's.
		if w := withdrawn(moi); w != "service bank.card terminated,service coop.loan terminated" {
			return fmt.Errorf("withdrawn: %q", w)
		}
		return nil
	})
	t.Logf("the termination reached the DP %s after the hub restarted on its day", took)
	// The cooperative bank's connector is revoked in every peer's directory; the dataset has its new name.
	Eventually(t, 30*time.Second, "the DP's directory revokes the leaving organisation's connector", func() error {
		raw, err := os.ReadFile(filepath.Join(moi.DataDir(), "directory.json"))
		if err != nil {
			return err
		}
		var signed struct {
			Payload []byte `json:"payload"`
		}
		var doc struct {
			Connectors []struct{ Org, Name, Status string } `json:"connectors"`
		}
		if err := json.Unmarshal(raw, &signed); err != nil {
			return err
		}
		if err := json.Unmarshal(signed.Payload, &doc); err != nil {
			return err
		}
		for _, c := range doc.Connectors {
			if c.Org == coop.Org && c.Name == coop.Name && c.Status == "revoked" {
				return nil
			}
		}
		return fmt.Errorf("coop/sp2 not revoked: %+v", doc.Connectors)
	})
	if _, status, body := coop.Exchange(coopCode, coopPKCE.Verifier, redirect); status == http.StatusOK {
		t.Fatalf("the leaving organisation's connector exchanged a code after its day: %d %s", status, body)
	}
	if out := h.Admin("dataset", "list"); !strings.Contains(out, "Household transcript") {
		t.Fatalf("the dataset's change did not take effect:\n%s", out)
	}
	if out := h.Admin("org", "list"); !strings.Contains(out, "Department of Household Registration") || !regexp.MustCompile(`(?m)^coop +central-agency +terminated `).MatchString(out) {
		t.Fatalf("the organisations' change and termination did not take effect:\n%s", out)
	}
	// The mail saying it took effect is queued for the lifecycle job's (moved) time, days ahead of the
	// outbox's clock: the fsm and outbox tests cover it (TestDatasetChange, TestApplicantToldOfDecisions).
	if _, status, body := bank.Exchange(code, p.Verifier, redirect); status == http.StatusOK || !strings.Contains(body, "terminated") {
		t.Fatalf("exchange for a terminated service: %d %s", status, body)
	}
	if out := h.Admin("application", "show", "--id", id); !strings.Contains(out, "approved") {
		t.Fatalf("effected application: %s", out)
	}
	log := h.Admin("audit", "export")
	if !strings.Contains(log, "application effect") {
		t.Fatalf("the hub's action is not in the operator log:\n%s", log)
	}

	// An emergency suspension of the dataset: at once.
	h.Admin("suspend", "--dataset", "moi.household", "--reason", "資安事件")
	Eventually(t, 15*time.Second, "the DP's directory withdraws the dataset", func() error {
		if w := withdrawn(moi); !strings.Contains(w, "dataset moi.household suspended") {
			return fmt.Errorf("withdrawn: %q", w)
		}
		return nil
	})
}

// viewAnnouncements opens the catalogue and a consent page while changes are announced, in Traditional
// Chinese and English, on a desktop's and a phone's screen: each page names every announcement (want, by
// language), does not scroll sideways at 360 px, and axe finds nothing serious on it. The screenshots go to
// $MYDATA_SCREENSHOTS when it is set, for a person to look at.
func viewAnnouncements(t *testing.T, h *Hub, authPath string, want map[string][]string) {
	t.Helper()
	skipWithoutChromium(t)
	browser := StartBrowser(t)
	shot := screenshots(t)
	for _, lang := range []string{"zh-TW", "en"} {
		t.Run(lang, func(t *testing.T) {
			// One tab a language, logged in once: the catalogue on a desktop's screen and a phone's, then the
			// consent page on a phone's and a desktop's.
			tab := browser.NewTab().For(t)
			tab.setLang(lang)
			look := func(page, screen string) {
				t.Helper()
				shown := tab.Text(".announce-list")
				for _, w := range want[lang] {
					if !strings.Contains(shown, w) {
						t.Errorf("%s (%s, %s) does not announce %q: %q", page, lang, screen, w, shown)
					}
				}
				if screen == "phone" {
					tab.checkPhonePage(page, lang)
				}
				shot(tab, "announce-"+page+"-"+lang+"-"+screen)
			}
			tab.Navigate(h.PortalURL() + "/catalogue")
			look("catalogue", "desktop")
			tab.phone()
			tab.Navigate(h.PortalURL() + "/catalogue")
			look("catalogue", "phone")
			tab.Navigate(h.PortalURL() + "/login?next=" + url.QueryEscape(authPath))
			tab.Type("subject", citizenA)
			tab.Select("method", "nhi-card")
			tab.clickNav("login")
			if tab.Text("#approve") == "" {
				t.Fatalf("no consent page: %s\n%s", tab.URL(), tab.Text("main"))
			}
			look("consent", "phone")
			tab.Call("Emulation.clearDeviceMetricsOverride", nil, nil)
			look("consent", "desktop")
		})
	}
}

// wait waits for a message to to whose body holds want.
func (m *mailSink) wait(t testing.TB, to, want string) {
	t.Helper()
	Eventually(t, 30*time.Second, "a message to "+to+" saying "+want, func() error {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, msg := range m.msgs {
			if msg.to == to && strings.Contains(msg.body, want) {
				return nil
			}
		}
		return fmt.Errorf("%d messages so far", len(m.msgs))
	})
}
