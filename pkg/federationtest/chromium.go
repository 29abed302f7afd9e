package federationtest

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ChromiumPath is where Debian's chromium package puts the browser.
const ChromiumPath = "/usr/bin/chromium"

// Browser is a headless Chromium driven over the DevTools protocol. It talks over
// --remote-debugging-pipe (NUL-separated JSON on file descriptors 3 and 4) rather than a WebSocket: no
// port to find or race for, no dependency, and the browser dies with its pipes.
type Browser struct {
	t       testing.TB
	cmd     *exec.Cmd
	in      *os.File // our end of the browser's fd 3
	done    chan struct{}
	logPath string

	mu      sync.Mutex
	nextID  int64
	waiting map[int64]chan cdpReply
	readErr error
}

type cdpReply struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

type cdpMessage struct {
	ID        int64           `json:"id"`
	Method    string          `json:"method"`
	SessionID string          `json:"sessionId"`
	Params    json.RawMessage `json:"params"`
	cdpReply
}

// StartBrowser starts a headless Chromium with a fresh profile; it skips the test when Chromium is not
// installed, and stops the browser when the test ends.
func StartBrowser(t testing.TB) *Browser {
	t.Helper()
	if _, err := os.Stat(ChromiumPath); err != nil {
		t.Skip("chromium not installed: apt-get install chromium")
	}
	dir := t.TempDir()
	toBrowser, browserIn, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	browserOut, fromBrowser, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	b := &Browser{t: t, in: browserIn, done: make(chan struct{}), waiting: map[int64]chan cdpReply{}, logPath: filepath.Join(dir, "chromium.log")}
	logf, err := os.Create(b.logPath)
	if err != nil {
		t.Fatal(err)
	}
	// The flags keep a browser on a closed network from waiting on services it cannot reach.
	b.cmd = exec.Command(ChromiumPath, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-default-apps",
		"--disable-extensions", "--mute-audio", "--hide-scrollbars", "--window-size=1200,900",
		"--user-data-dir="+filepath.Join(dir, "profile"), "--remote-debugging-pipe", "about:blank")
	b.cmd.ExtraFiles = []*os.File{toBrowser, fromBrowser} // fds 3 and 4 in the browser
	b.cmd.Stdout, b.cmd.Stderr = logf, logf
	// A group of its own, so that close can stop the renderers and helpers with the browser.
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	toBrowser.Close()
	fromBrowser.Close()
	go func() {
		b.cmd.Wait()
		logf.Close()
		close(b.done)
	}()
	go b.read(browserOut)
	// Registered after t.TempDir, so it runs first: the profile is not removed under a running browser.
	t.Cleanup(b.close)

	var v struct {
		Product string `json:"product"`
	}
	b.call("", "Browser.getVersion", nil, &v)
	t.Logf("browser: %s", v.Product)
	return b
}

// read dispatches the browser's answers to their callers; events are not needed by these tests.
func (b *Browser) read(out *os.File) {
	defer out.Close()
	r := bufio.NewReaderSize(out, 1<<20)
	var err error
	for {
		var msg []byte
		msg, err = r.ReadBytes(0)
		if err != nil {
			break
		}
		var m cdpMessage
		if json.Unmarshal(msg[:len(msg)-1], &m) != nil || m.ID == 0 {
			continue
		}
		b.mu.Lock()
		ch := b.waiting[m.ID]
		delete(b.waiting, m.ID)
		b.mu.Unlock()
		if ch != nil {
			ch <- m.cdpReply
		}
	}
	b.mu.Lock()
	b.readErr = fmt.Errorf("the browser closed its pipe: %v", err)
	for id, ch := range b.waiting {
		close(ch)
		delete(b.waiting, id)
	}
	b.mu.Unlock()
}

// call sends one command and waits for its answer, failing the test on an error.
func (b *Browser) call(session, method string, params, result any) {
	b.t.Helper()
	if err := b.callErr(session, method, params, result); err != nil {
		b.t.Fatalf("%s: %v\n--- chromium log ---\n%s", method, err, tailFile(b.logPath, 3000))
	}
}

func (b *Browser) callErr(session, method string, params, result any) error {
	b.mu.Lock()
	if b.readErr != nil {
		b.mu.Unlock()
		return b.readErr
	}
	b.nextID++
	id := b.nextID
	ch := make(chan cdpReply, 1)
	b.waiting[id] = ch
	b.mu.Unlock()

	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if session != "" {
		msg["sessionId"] = session
	}
	data, _ := json.Marshal(msg)
	if _, err := b.in.Write(append(data, 0)); err != nil {
		return fmt.Errorf("write to the browser: %w", err)
	}
	select {
	case reply, ok := <-ch:
		if !ok {
			return b.readErr
		}
		if reply.Error != nil {
			return fmt.Errorf("%s (%d)", reply.Error.Message, reply.Error.Code)
		}
		if result != nil {
			return json.Unmarshal(reply.Result, result)
		}
		return nil
	case <-time.After(30 * time.Second):
		b.mu.Lock()
		delete(b.waiting, id)
		b.mu.Unlock()
		return errors.New("no answer within 30s")
	}
}

func (b *Browser) close() {
	_ = b.callErr("", "Browser.close", nil, nil)
	b.in.Close() // the browser also quits when its pipe closes
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		b.t.Logf("chromium did not quit within 10s; killing it")
	}
	// Whatever is left of the group (nothing, normally) goes before the profile directory is removed.
	_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
	<-b.done
}

// Tab is one page in the browser.
type Tab struct {
	b       *Browser
	session string
	// context is the tab's own browser context (profile): cookies and downloads are per tab.
	context string
	// t is the test the tab reports to; the browser's when nil.
	t testing.TB
}

// For is the same tab reporting to t, a subtest say: a failure must stop the test whose goroutine runs.
func (tab *Tab) For(t testing.TB) *Tab {
	c := *tab
	c.t = t
	return &c
}

func (tab *Tab) tb() testing.TB {
	if tab.t != nil {
		return tab.t
	}
	return tab.b.t
}

// Call sends a DevTools command to the tab's page and decodes its result into result (which may be nil),
// failing the test on an error.
func (tab *Tab) Call(method string, params, result any) {
	tab.tb().Helper()
	if err := tab.b.callErr(tab.session, method, params, result); err != nil {
		tab.tb().Fatalf("%s: %v\n--- chromium log ---\n%s", method, err, tailFile(tab.b.logPath, 3000))
	}
}

// NewTab opens a blank tab in a browser context of its own, like a separate person's browser: tabs share
// no cookies.
func (b *Browser) NewTab() *Tab {
	b.t.Helper()
	var ctx struct {
		BrowserContextID string `json:"browserContextId"`
	}
	b.call("", "Target.createBrowserContext", map[string]any{"disposeOnDetach": true}, &ctx)
	var target struct {
		TargetID string `json:"targetId"`
	}
	b.call("", "Target.createTarget", map[string]any{"url": "about:blank", "browserContextId": ctx.BrowserContextID}, &target)
	var att struct {
		SessionID string `json:"sessionId"`
	}
	b.call("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att)
	tab := &Tab{b: b, session: att.SessionID, context: ctx.BrowserContextID}
	b.call(tab.session, "Page.enable", nil, nil)
	b.call(tab.session, "Runtime.enable", nil, nil)
	return tab
}

// AllowDownloads saves what the tab's pages download into dir, as a browser asked "save" would.
func (tab *Tab) AllowDownloads(dir string) {
	tab.tb().Helper()
	tab.b.call("", "Browser.setDownloadBehavior", map[string]any{"behavior": "allow", "downloadPath": dir, "browserContextId": tab.context}, nil)
}

// Navigate loads url and waits until the page has loaded.
func (tab *Tab) Navigate(url string) {
	tab.tb().Helper()
	var res struct {
		ErrorText string `json:"errorText"`
	}
	tab.Call("Page.navigate", map[string]any{"url": url}, &res)
	if res.ErrorText != "" {
		tab.tb().Fatalf("navigate to %s: %s", url, res.ErrorText)
	}
	tab.WaitFor("page "+url+" loaded", `document.readyState === "complete" && location.href !== "about:blank"`, 15*time.Second)
}

// evalErr runs a JavaScript expression in the page and decodes its value into out.
func (tab *Tab) evalErr(expr string, out any) error {
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	if err := tab.b.callErr(tab.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &res); err != nil {
		return err
	}
	if e := res.ExceptionDetails; e != nil {
		return fmt.Errorf("%s %s", e.Text, e.Exception.Description)
	}
	if out == nil || len(res.Result.Value) == 0 {
		return nil
	}
	return json.Unmarshal(res.Result.Value, out)
}

// Eval runs a JavaScript expression in the page, fails the test on an exception, and decodes its value
// into out (which may be nil).
func (tab *Tab) Eval(expr string, out any) {
	tab.tb().Helper()
	if err := tab.evalErr(expr, out); err != nil {
		tab.tb().Fatalf("eval %s: %v", expr, err)
	}
}

// WaitFor polls a JavaScript condition until it is true. Errors count as "not yet": while a page
// navigates, its old context goes away under the poll.
func (tab *Tab) WaitFor(what, cond string, timeout time.Duration) {
	tab.tb().Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		var ok bool
		if last = tab.evalErr("!!("+cond+")", &ok); last == nil && ok {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	tab.tb().Fatalf("%s: not true within %s (%s; last error %v); the page is at %s:\n%s", what, timeout, cond, last, tab.URL(), tab.Text("body"))
}

// URL is the page's address.
func (tab *Tab) URL() string {
	var u string
	_ = tab.evalErr("location.href", &u)
	return u
}

// Text is the text of the first element matching a CSS selector, or "" when there is none.
func (tab *Tab) Text(selector string) string {
	var s string
	_ = tab.evalErr(fmt.Sprintf(`(document.querySelector(%s) || {}).innerText || ""`, jsString(selector)), &s)
	return s
}

// Attr is an attribute of the element with the given id, or "" when there is none.
func (tab *Tab) Attr(id, attr string) string {
	var s string
	_ = tab.evalErr(fmt.Sprintf(`(document.getElementById(%s) || {getAttribute(){return ""}}).getAttribute(%s) || ""`, jsString(id), jsString(attr)), &s)
	return s
}

// Type focuses the element with the given id, clears it and types text as keyboard input would.
func (tab *Tab) Type(id, text string) {
	tab.tb().Helper()
	tab.Eval(fmt.Sprintf(`(() => { const e = document.getElementById(%s); if (!e) throw new Error("no element #" + %[1]s); e.focus(); e.select && e.select(); return true })()`, jsString(id)), nil)
	tab.Call("Input.insertText", map[string]any{"text": text}, nil)
}

// Select picks an option of a <select> by its value.
func (tab *Tab) Select(id, value string) {
	tab.tb().Helper()
	var ok bool
	tab.Eval(fmt.Sprintf(`(() => { const e = document.getElementById(%s); if (!e || ![...e.options].some(o => o.value === %s)) return false;
		e.value = %[2]s; e.dispatchEvent(new Event("change", {bubbles: true})); return true })()`, jsString(id), jsString(value)), &ok)
	if !ok {
		tab.tb().Fatalf("no option %q in #%s", value, id)
	}
}

// Click clicks the element with the given id with the mouse, at its centre, as a person would.
func (tab *Tab) Click(id string) {
	tab.tb().Helper()
	// Measured before the page's stylesheet has loaded, the element moves under the pointer, and on a loaded
	// machine the click lands beside it (a consent page's approve button once, under -race).
	tab.WaitFor("the page loaded before a click on #"+id, `document.readyState === "complete"`, 30*time.Second)
	var box struct{ X, Y float64 }
	tab.Eval(fmt.Sprintf(`(() => { const e = document.getElementById(%s); if (!e) throw new Error("no element #" + %[1]s);
		e.scrollIntoView({block: "center"}); const r = e.getBoundingClientRect(); return {X: r.x + r.width / 2, Y: r.y + r.height / 2} })()`, jsString(id)), &box)
	for _, typ := range []string{"mousePressed", "mouseReleased"} {
		tab.Call("Input.dispatchMouseEvent", map[string]any{"type": typ, "x": box.X, "y": box.Y, "button": "left", "clickCount": 1}, nil)
	}
}

// Screenshot saves a PNG of the whole page.
func (tab *Tab) Screenshot(path string) {
	tab.tb().Helper()
	var metrics struct {
		CSSContentSize struct{ Width, Height float64 } `json:"cssContentSize"`
	}
	tab.Call("Page.getLayoutMetrics", nil, &metrics)
	var shot struct {
		Data string `json:"data"`
	}
	tab.Call("Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true,
		"clip": map[string]any{"x": 0, "y": 0, "width": metrics.CSSContentSize.Width, "height": metrics.CSSContentSize.Height, "scale": 1}}, &shot)
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil {
		tab.tb().Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		tab.tb().Fatal(err)
	}
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s) // escapes quotes, <, >, &, U+2028 and U+2029
	return string(b)
}
