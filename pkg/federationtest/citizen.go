package federationtest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// Citizen is a browser driving the hub's portal over HTTP, as a person would: it keeps cookies and stops
// at every redirect so a test can look at it.
type Citizen struct {
	Hub    *Hub
	Client *http.Client
	t      testing.TB
}

// NewCitizen makes a browser with an empty cookie jar.
func (h *Hub) NewCitizen() *Citizen {
	jar, _ := cookiejar.New(nil)
	return &Citizen{Hub: h, t: h.t, Client: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

// PortalURL is the portal's base URL.
func (h *Hub) PortalURL() string { return "http://" + h.Portal }

// Page is a fetched page or redirect.
type Page struct {
	Status   int
	Body     string
	Location string
}

func (c *Citizen) do(req *http.Request) Page {
	c.t.Helper()
	// The tests read the English pages; a browser without a preference gets Chinese.
	req.Header.Set("Accept-Language", "en")
	resp, err := c.Client.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return Page{Status: resp.StatusCode, Body: string(b), Location: resp.Header.Get("Location")}
}

// Get fetches a portal path (or an absolute URL).
func (c *Citizen) Get(path string) Page {
	c.t.Helper()
	if !strings.HasPrefix(path, "http") {
		path = c.Hub.PortalURL() + path
	}
	req, _ := http.NewRequest(http.MethodGet, path, nil)
	return c.do(req)
}

// Post submits a form to a portal path.
func (c *Citizen) Post(path string, form url.Values) Page {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.Hub.PortalURL()+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.do(req)
}

// Login logs in with the development login, as a browser does: the login page first, for its CSRF token.
func (c *Citizen) Login(subject, method string) {
	c.t.Helper()
	page := c.Get("/login?next=/history")
	form, err := FormFields(page.Body, "/login")
	if err != nil {
		c.t.Fatalf("login page: %v (%d)", err, page.Status)
	}
	form.Set("subject", subject)
	form.Set("method", method)
	p := c.Post("/login", form)
	if p.Status != http.StatusSeeOther {
		c.t.Fatalf("login as %s: %d %s", subject, p.Status, p.Body)
	}
}

// GetFollow fetches a portal path and follows the portal's redirects to its own pages (to the login page,
// back from it), stopping at the first page or at a redirect that leaves the portal.
func (c *Citizen) GetFollow(path string) Page {
	c.t.Helper()
	p := c.Get(path)
	for i := 0; i < 5 && p.Location != "" && strings.HasPrefix(p.Location, "/") && !strings.HasPrefix(p.Location, "//"); i++ {
		p = c.Get(p.Location)
	}
	return p
}

// PKCE is a code verifier and its S256 challenge.
type PKCE struct{ Verifier, Challenge string }

// NewPKCE makes a fresh verifier.
func NewPKCE() PKCE {
	b := make([]byte, 32)
	rand.Read(b)
	v := base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(v))
	return PKCE{Verifier: v, Challenge: base64.RawURLEncoding.EncodeToString(sum[:])}
}

// AuthorizeURL builds an authorization request.
func (h *Hub) AuthorizeURL(clientID, redirect, scope, state string, p PKCE, extra url.Values) string {
	q := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect}, "scope": {scope},
		"state": {state}, "code_challenge": {p.Challenge}, "code_challenge_method": {"S256"}}
	for k, v := range extra {
		q[k] = v
	}
	return "/oauth/authorize?" + q.Encode()
}

// hiddenInput is a hidden field of a form as the portal's templates write them.
var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// FormFields are the hidden fields of the form on page that posts to action.
func FormFields(page, action string) (url.Values, error) {
	i := strings.Index(page, `action="`+action+`"`)
	if i < 0 {
		return nil, fmt.Errorf("no form posting to %s: %.300s", action, page)
	}
	end := strings.Index(page[i:], "</form>")
	if end < 0 {
		return nil, fmt.Errorf("the form posting to %s does not end", action)
	}
	form := url.Values{}
	for _, m := range hiddenInput.FindAllStringSubmatch(page[i:i+end], -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	return form, nil
}

// ConsentForm is what a browser posts from a consent page: its hidden fields (the signed request and its
// CSRF token), without the decision.
func ConsentForm(page string) (url.Values, error) {
	if !strings.Contains(page, `action="/oauth/consent"`) {
		return nil, fmt.Errorf("not a consent page: %.300s", page)
	}
	return FormFields(page, "/oauth/consent")
}

// Decide answers the consent page p and returns where the hub sends the browser.
func (c *Citizen) Decide(p Page, approve bool) *url.URL {
	c.t.Helper()
	form, err := ConsentForm(p.Body)
	if err != nil {
		c.t.Fatalf("%v (%d)", err, p.Status)
	}
	decision := "deny"
	if approve {
		decision = "approve"
	}
	form.Set("decision", decision)
	r := c.Post("/oauth/consent", form)
	if r.Status != http.StatusFound {
		c.t.Fatalf("consent decision: %d %s", r.Status, r.Body)
	}
	u, err := url.Parse(r.Location)
	if err != nil {
		c.t.Fatal(err)
	}
	return u
}

// Approve runs the whole citizen side: authorize, consent page, approve; it returns the code.
func (c *Citizen) Approve(authorizeURL string) string {
	c.t.Helper()
	p := c.GetFollow(authorizeURL)
	if p.Status != http.StatusOK || !strings.Contains(p.Body, `id="approve"`) {
		c.t.Fatalf("authorize did not show the consent page: %d %s %s", p.Status, p.Location, p.Body)
	}
	u := c.Decide(p, true)
	code := u.Query().Get("code")
	if code == "" {
		c.t.Fatalf("no code in %s", u)
	}
	return code
}

func (c *Citizen) String() string { return fmt.Sprintf("citizen at %s", c.Hub.PortalURL()) }
