package federationtest

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// enrollOperator has the bootstrap administrator add an operator with roles, and the operator enroll with
// its join token through `mydata-hub operator enroll`; it returns the credential directory.
func enrollOperator(t *testing.T, h *Hub, name, roles string) string {
	t.Helper()
	h.Admin("operator", "add", "--name", name, "--roles", roles)
	token := strings.TrimSpace(h.Admin("operator", "join-token", "--name", name, "--ttl", "10m"))
	dir := filepath.Join(t.TempDir(), name)
	if out, err := Run(h.Bin, "operator", "enroll", "--hub", h.URL(), "--token", token, "--name", name, "--dir", dir); err != nil {
		t.Fatalf("enroll %s: %s %v", name, out, err)
	}
	return dir
}

var applicationIDRe = regexp.MustCompile(`application (app-[a-z0-9]+) `)

// TestApplicationLifecycle runs applications through the real binaries: a university applies to join,
// the Ministry of Education's reviewer refuses (the administrator cannot decide on it then), it applies
// again and is approved by both; its applicant files a service for sandbox and then pilot (with a test
// subject, kept as a keyed hash), each through the authority and the administrator; operators without the
// role are refused naming it; every step is in the operator log.
func TestApplicationLifecycle(t *testing.T) {
	t.Parallel()
	h := StartHub(t, HubOptions{})
	moe := enrollOperator(t, h, "moe", "reviewer:education")
	fsc := enrollOperator(t, h, "fsc", "reviewer:financial")
	aud := enrollOperator(t, h, "aud", "auditor")
	as := func(dir string, args ...string) (string, error) {
		return Run(h.Bin, append([]string{"admin", "--credentials", dir}, args...)...)
	}
	must := func(dir string, args ...string) string {
		t.Helper()
		out, err := as(dir, args...)
		if err != nil {
			t.Fatalf("%v: %s %v", args, out, err)
		}
		return out
	}
	idOf := func(out string) string {
		t.Helper()
		m := applicationIDRe.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no application id in %q", out)
		}
		return m[1]
	}
	orgArgs := []string{"application", "submit", "org", "--code", "nccu", "--name-zh", "國立政治大學", "--name-en", "National Chengchi University", "--type", "university"}

	// The application arrives by letter: the administrator files it; it waits for the Ministry of Education.
	out := h.Admin(orgArgs...)
	first := idOf(out)
	if !strings.Contains(out, "waiting for reviewer:education") {
		t.Fatalf("filed: %s", out)
	}
	if _, err := as(fsc, "application", "review", "--id", first, "--approve", "--reason", "ok"); err == nil || !strings.Contains(err.Error(), "needs the role reviewer:education") {
		t.Fatalf("the FSC reviews a university: %v", err)
	}
	// The FSC's reviewer does not even see it.
	if _, err := as(fsc, "application", "show", "--id", first); err == nil || !strings.Contains(err.Error(), "HTTP 404") {
		t.Fatalf("the FSC reads a university's application: %v", err)
	}
	if _, err := h.AdminErr("application", "decide", "--id", first, "--approve", "--reason", "ok"); err == nil || !strings.Contains(err.Error(), "reviewer:education first") {
		t.Fatalf("the administrator decides before the authority: %v", err)
	}
	if out := must(moe, "application", "review", "--id", first, "--refuse", "--reason", "教育部不同意：資安查核未完成"); !strings.Contains(out, "is now refused") {
		t.Fatalf("refused: %s", out)
	}
	// The authority's refusal goes straight back to the applicant: nothing left to decide.
	if _, err := h.AdminErr("application", "decide", "--id", first, "--approve", "--reason", "ok"); err == nil || !strings.Contains(err.Error(), "refused already") {
		t.Fatalf("the administrator decides after the refusal: %v", err)
	}
	if _, err := h.AdminErr("org", "list"); err != nil {
		t.Fatal(err)
	} else if strings.Contains(h.Admin("org", "list"), "nccu") {
		t.Fatal("a refused organisation was added")
	}

	second := idOf(h.Admin(orgArgs...))
	must(moe, "application", "review", "--id", second, "--approve", "--reason", "同意")
	if _, err := as(moe, "application", "decide", "--id", second, "--approve", "--reason", "x"); err == nil || !strings.Contains(err.Error(), "needs the role federation-admin") {
		t.Fatalf("a reviewer decides: %v", err)
	}
	if out := h.Admin("application", "decide", "--id", second, "--approve", "--reason", "資格符合"); !strings.Contains(out, "is now approved") {
		t.Fatalf("approved: %s", out)
	}
	if !strings.Contains(h.Admin("org", "list"), "國立政治大學") {
		t.Fatal("the approved organisation is not registered")
	}

	// Its applicant files a service for sandbox: through the authority and the administrator.
	app := enrollOperator(t, h, "nccu-app", "applicant:nccu")
	h.Admin("org", "add", "--code", "moi", "--name-zh", "內政部", "--name-en", "Ministry of the Interior", "--type", "central-agency")
	h.Admin("connector", "add", "--org", "moi", "--name", "dp1", "--roles", "dp", "--address", "127.0.0.1:1")
	h.Admin("connector", "add", "--org", "nccu", "--name", "sp1", "--roles", "sp", "--address", "127.0.0.1:2")
	h.Admin("dataset", "add", "--id", "moi.household", "--name-zh", "戶籍資料", "--name-en", "Household registration", "--dp", "moi/dp1")
	svc := []string{"--id", "nccu.aid", "--name-zh", "助學金申請", "--name-en", "Student aid", "--sp", "nccu/sp1", "--datasets", "moi.household",
		"--purpose", "核定助學金資格", "--terms", "資料僅用於本次申請", "--terms-version", "1", "--redirect-uri", "https://aid.nccu.example/cb"}
	if _, err := as(app, append([]string{"application", "submit", "service", "--stage", "pilot", "--test-subject", "A123456789"}, svc...)...); err == nil ||
		!strings.Contains(err.Error(), "may apply for sandbox") {
		t.Fatalf("pilot first: %v", err)
	}
	if _, err := as(aud, append([]string{"application", "submit", "service", "--stage", "sandbox"}, svc...)...); err == nil ||
		!strings.Contains(err.Error(), "needs one of the roles federation-admin, applicant") {
		t.Fatalf("the auditor files: %v", err)
	}
	sandbox := idOf(must(app, append([]string{"application", "submit", "service", "--stage", "sandbox"}, svc...)...))
	if out := must(moe, "application", "show", "--id", sandbox); !strings.Contains(out, "核定助學金資格") || !strings.Contains(out, "within the limit of 5") {
		t.Fatalf("the reviewer's view: %s", out)
	}
	must(moe, "application", "review", "--id", sandbox, "--approve", "--reason", "服務目的正當")
	h.Admin("application", "decide", "--id", sandbox, "--approve", "--reason", "同意沙盒測試")
	stage := func() string {
		var ss []struct{ ID, Stage string }
		if err := json.Unmarshal([]byte(h.Admin("--json", "service", "list")), &ss); err != nil || len(ss) != 1 {
			t.Fatalf("services %+v %v", ss, err)
		}
		return ss[0].Stage
	}
	if s := stage(); s != "sandbox" {
		t.Fatalf("stage %q after the sandbox application", s)
	}

	// Pilot, with a test subject the hub keeps only as a keyed hash.
	pilot := idOf(must(app, append([]string{"application", "submit", "service", "--stage", "pilot", "--test-subject", "A123456789"}, svc...)...))
	must(moe, "application", "review", "--id", pilot, "--approve", "--reason", "ok")
	h.Admin("application", "decide", "--id", pilot, "--approve", "--reason", "ok")
	if s := stage(); s != "pilot" {
		t.Fatalf("stage %q after the pilot application", s)
	}
	shown := must(app, "--json", "application", "show", "--id", pilot)
	if !strings.Contains(shown, `"test_subjects": 1`) || strings.Contains(shown, "A123456789") {
		t.Fatalf("pilot as shown: %s", shown)
	}
	// The applicant sees its own organisation's applications only; the reviewer its sector's.
	if out := must(app, "application", "list"); strings.Count(out, "app-") != 4 {
		t.Fatalf("applicant's list: %s", out)
	}
	if out := must(fsc, "application", "list"); strings.Count(out, "app-") != 0 {
		t.Fatalf("the FSC's list: %s", out)
	}

	// Every step is in the operator log, refusals included, and no national ID.
	log := must(aud, "--json", "audit", "export")
	var entries []struct {
		Op      string `json:"op"`
		Outcome string `json:"outcome"`
		Actor   string `json:"actor"`
	}
	if err := json.Unmarshal([]byte(log), &entries); err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, e := range entries {
		count[e.Op+" "+e.Outcome]++
	}
	want := map[string]int{"application submit ok": 4, "application submit refused": 1, "application review ok": 4, "application review refused": 1,
		"application decide ok": 3, "application decide refused": 2}
	for k, n := range want {
		if count[k] != n {
			t.Errorf("%s: %d entries, want %d (%v)", k, count[k], n, count)
		}
	}
	if strings.Contains(log, "A123456789") {
		t.Fatal("the operator log holds a national ID")
	}
	if out, err := as(aud, "audit", "verify"); err != nil || !strings.Contains(out, "verifies") {
		t.Fatalf("verify: %s %v", out, err)
	}
	// The changes of the period, as the auditor reports them: refusals and reads left out.
	changes := must(aud, "report", "changes", "--from", time.Now().AddDate(0, 0, -1).Format(time.DateOnly))
	if !strings.HasPrefix(changes, "seq,at,actor,roles,op,params,before,after\n") || strings.Count(changes, ",application decide,") != 3 ||
		strings.Contains(changes, "audit export") {
		t.Fatalf("changes report:\n%s", changes)
	}
	if _, err := as(app, "report", "changes", "--from", "2026-01-01"); err == nil || !strings.Contains(err.Error(), "HTTP 403") {
		t.Fatalf("an applicant reports the changes: %v", err)
	}
}
