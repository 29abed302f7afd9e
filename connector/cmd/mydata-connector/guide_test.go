package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestOperatorGuideEnrollment holds the operator guide's onboarding steps 3–7 to one connector and to this
// binary: the connector registered in step 3 and given a token in step 4 is the one configured in step 5,
// enrolled in step 6 (with enroll's own output) and run and checked in step 7.
func TestOperatorGuideEnrollment(t *testing.T) {
	b, err := os.ReadFile("../../../docs/operator-guide.md")
	if err != nil {
		t.Fatal(err)
	}
	guide := string(b)
	start, end := strings.Index(guide, "**3. Register each connector**"), strings.Index(guide, "\n## 3. ")
	if start < 0 || end < start {
		t.Fatal("the operator guide's onboarding steps (section 2, steps 3–7) are not where this test looks")
	}
	steps := guide[start:end]
	find := func(what, re string) []string {
		t.Helper()
		m := regexp.MustCompile(re).FindStringSubmatch(steps)
		if m == nil {
			t.Fatalf("the onboarding steps lack %s (%s)", what, re)
		}
		return m
	}
	add := find("step 3's connector add", `connector add --org (\S+) --name (\S+) --roles \S+ --address \S+:(\d+)`)
	org, name, port := add[1], add[2], add[3]
	tok := find("step 4's token create", `token create --org (\S+) --connector (\S+)`)
	cfg := find("step 5's configuration", `(?m)^trust_domain: (\S+).*\norg: (\S+).*\nname: (\S+).*\ndata_dir: (\S+)`)
	td, dataDir := cfg[1], cfg[4]
	listen := find("step 5's quic.listen", `(?m)^  listen: \S+:(\d+)`)
	if tok[1] != org || tok[2] != name || cfg[2] != org || cfg[3] != name {
		t.Errorf("steps 3–5 name different connectors: add %s/%s, token %s/%s, config %s/%s", org, name, tok[1], tok[2], cfg[2], cfg[3])
	}
	if listen[1] != port {
		t.Errorf("step 5 listens on port %s, step 3 registered port %s", listen[1], port)
	}
	id := fmt.Sprintf("spiffe://%s/org/%s/connector/%s", td, org, name)

	enrolled := find("step 6's enroll output", `(?m)^enrolled .*$`)[0]
	when := find("step 6's expiry", `SVID valid until (\S+),`)[1]
	if want := strings.TrimSuffix(fmt.Sprintf(enrolledFormat, id, when, dataDir+"/identity"), "\n"); enrolled != want {
		t.Errorf("step 6 shows\n\t%s\nenroll prints\n\t%s", enrolled, want)
	}
	serving := find("step 7's serve output", `(?m)^.*msg="connector serving".*$`)[0]
	for _, want := range []string{"spiffe_id=" + id + " ", "quic=0.0.0.0:" + port + " "} {
		if !strings.Contains(serving, want) {
			t.Errorf("step 7's serve output lacks %q:\n\t%s", want, serving)
		}
	}
	if status := find("step 7's status output", `(?m)^spiffe id: +(\S+)$`)[1]; status != id {
		t.Errorf("step 7's status shows %s, not %s", status, id)
	}
}
