package federationtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Browser helpers for the identity tests.

// setLang makes the tab's requests ask for lang in Accept-Language (the portal's default for a browser
// that has not chosen).
func (tab *Tab) setLang(lang string) {
	tab.tb().Helper()
	tab.Call("Network.enable", nil, nil)
	tab.Call("Network.setExtraHTTPHeaders", map[string]any{"headers": map[string]string{"Accept-Language": lang}}, nil)
}

// phone sets a phone's viewport: 360 CSS pixels wide.
func (tab *Tab) phone() {
	tab.tb().Helper()
	tab.Call("Emulation.setDeviceMetricsOverride", map[string]any{"width": 360, "height": 780, "deviceScaleFactor": 1, "mobile": true}, nil)
}

// checkPhonePage checks the page shown, on a phone's screen (phone), in lang: it is in that language, does
// not scroll sideways at 360 px, and axe-core finds no serious or critical accessibility violation on it.
func (tab *Tab) checkPhonePage(page, lang string) {
	t := tab.tb()
	t.Helper()
	var htmlLang string
	tab.Eval(`document.documentElement.lang`, &htmlLang)
	if htmlLang != lang {
		t.Errorf("%s (%s): the page is in %q", page, tab.URL(), htmlLang)
	}
	var width int
	tab.Eval(`document.documentElement.scrollWidth`, &width)
	if width > 360 {
		var wide []string
		tab.Eval(`[...document.querySelectorAll("body *")].filter(e => e.getBoundingClientRect().right > 360.5).slice(-5)
			.map(e => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + (e.className ? "." + e.className : "") + " right=" + Math.round(e.getBoundingClientRect().right))`, &wide)
		t.Errorf("%s (%s): %d px wide at a 360-px viewport; too wide: %v", page, tab.URL(), width, wide)
	}
	for _, v := range tab.axe() {
		if v.Impact == "serious" || v.Impact == "critical" {
			t.Errorf("%s (%s): axe: %s", page, tab.URL(), v)
		} else {
			t.Logf("%s: axe (not failing): %s", page, v)
		}
	}
}

// addAuthenticator gives the tab a platform authenticator (Chromium's virtual one) that holds passkeys and
// verifies its user.
func (tab *Tab) addAuthenticator() {
	tab.tb().Helper()
	tab.Call("WebAuthn.enable", map[string]any{"enableUI": false}, nil)
	tab.Call("WebAuthn.addVirtualAuthenticator", map[string]any{"options": map[string]any{
		"protocol": "ctap2", "transport": "internal", "hasResidentKey": true, "hasUserVerification": true,
		"isUserVerified": true, "automaticPresenceSimulation": true}}, nil)
}

// clickNav clicks the element with the given id and waits until another page has loaded.
func (tab *Tab) clickNav(id string) {
	tab.tb().Helper()
	tab.Eval(`window.__before = 1`, nil)
	tab.Click(id)
	tab.WaitFor("a new page after clicking #"+id, `!window.__before && document.readyState === "complete"`, 20*time.Second)
}

// post submits a form built in the page, as a page of the portal would, and waits for the answer.
func (tab *Tab) post(action string, fields map[string]string) {
	tab.tb().Helper()
	tab.Eval(fmt.Sprintf(`(() => { window.__before = 1; const f = document.createElement("form"); f.method = "post"; f.action = %s;
		for (const [k, v] of Object.entries(%s)) { const i = document.createElement("input"); i.type = "hidden"; i.name = k; i.value = v; f.append(i) }
		document.body.append(f); f.submit(); return true })()`, jsString(action), jsonJS(fields)), nil)
	tab.WaitFor("the answer to a form posted to "+action, `!window.__before && document.readyState === "complete"`, 20*time.Second)
}

func jsonJS(v map[string]string) string {
	var b strings.Builder
	b.WriteString("{")
	i := 0
	for k, val := range v {
		if i > 0 {
			b.WriteString(",")
		}
		i++
		b.WriteString(jsString(k) + ":" + jsString(val))
	}
	b.WriteString("}")
	return b.String()
}

// status is the HTTP status of the page shown.
func (tab *Tab) status() int {
	var s int
	_ = tab.evalErr(`performance.getEntriesByType("navigation")[0].responseStatus`, &s)
	return s
}

// path is the page's path.
func (tab *Tab) path() string {
	var p string
	_ = tab.evalErr(`location.pathname`, &p)
	return p
}

// formValue is the value of the named field of the form matching selector.
func (tab *Tab) formValue(selector, name string) string {
	var v string
	tab.Eval(fmt.Sprintf(`document.querySelector(%s).elements.namedItem(%s).value`, jsString(selector), jsString(name)), &v)
	return v
}

// ids are the ids of the elements matching selector, in order.
func (tab *Tab) ids(selector string) []string {
	var out []string
	tab.Eval(fmt.Sprintf(`[...document.querySelectorAll(%s)].map(e => e.id || e.value)`, jsString(selector)), &out)
	return out
}

var (
	axeOnce   sync.Once
	axeSource string
	axeErr    error
)

// axeViolation is one axe rule a page breaks, with the elements that break it.
type axeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

func (v axeViolation) String() string {
	return fmt.Sprintf("%s (%s: %s) at %s", v.ID, v.Impact, v.Help, strings.Join(v.Nodes, " | "))
}

// axe runs axe-core (testdata/axe) on the page and returns every violation.
func (tab *Tab) axe() []axeViolation {
	tab.tb().Helper()
	axeOnce.Do(func() {
		var b []byte
		b, axeErr = os.ReadFile(filepath.Join("testdata", "axe", "axe.min.js"))
		axeSource = string(b)
	})
	if axeErr != nil {
		tab.tb().Fatal(axeErr)
	}
	var loaded bool
	tab.Eval(axeSource+"\n;typeof axe === 'object'", &loaded)
	if !loaded {
		tab.tb().Fatal("axe-core did not load")
	}
	var out []axeViolation
	tab.Eval(`axe.run(document, {resultTypes: ["violations"]}).then(r => r.violations.map(v => ({id: v.id, impact: v.impact || "", help: v.help,
		nodes: v.nodes.map(n => n.target.join(" ") + " " + n.html.slice(0, 160))})))`, &out)
	return out
}
