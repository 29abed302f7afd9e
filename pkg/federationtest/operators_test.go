package federationtest

import (
	"database/sql"
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	_ "github.com/mattn/go-sqlite3"
)

// TestOperatorRolesAndLog runs the operator lifecycle through the real binaries: the bootstrap
// federation administrator adds an auditor and an applicant, each enrolls with its join token through
// `mydata-hub operator enroll`, the applicant is refused an admin write naming the role it lacks, the
// auditor exports the operator log and verifies it; then a row of the hub's state is edited offline and
// verify names the entry.
func TestOperatorRolesAndLog(t *testing.T) {
	t.Parallel()
	h := StartHub(t, HubOptions{})
	h.Admin("org", "add", "--code", "nccu", "--name-zh", "國立政治大學", "--name-en", "National Chengchi University", "--type", "university")
	h.Admin("operator", "add", "--name", "aud", "--roles", "auditor")
	h.Admin("operator", "add", "--name", "app", "--roles", "applicant:nccu")

	enroll := func(name string) (dir, token string) {
		t.Helper()
		token = strings.TrimSpace(h.Admin("operator", "join-token", "--name", name, "--ttl", "10m"))
		dir = filepath.Join(t.TempDir(), name)
		out, err := Run(h.Bin, "operator", "enroll", "--hub", h.URL(), "--token", token, "--name", name, "--dir", dir)
		if err != nil || !strings.Contains(out, "spiffe://"+TrustDomain+"/operator/"+name) {
			t.Fatalf("enroll %s: %s %v", name, out, err)
		}
		// The token is spent.
		if _, err := Run(h.Bin, "operator", "enroll", "--hub", h.URL(), "--token", token, "--name", name, "--dir", dir+"-again"); err == nil ||
			!strings.Contains(err.Error(), "unknown or already used") {
			t.Fatalf("second enrollment with one token: %v", err)
		}
		return dir, token
	}
	audDir, audToken := enroll("aud")
	appDir, _ := enroll("app")
	as := func(dir string, args ...string) (string, error) {
		// No --config: the credential directory holds the hub's URL.
		return Run(h.Bin, append([]string{"admin", "--credentials", dir}, args...)...)
	}

	// The applicant reads the catalogue but may not change the registry.
	if out, err := as(appDir, "org", "list"); err != nil || !strings.Contains(out, "國立政治大學") {
		t.Fatalf("applicant lists orgs: %s %v", out, err)
	}
	_, err := as(appDir, "org", "add", "--code", "evil", "--name-zh", "x", "--name-en", "x", "--type", "other")
	if err == nil || !strings.Contains(err.Error(), "HTTP 403") || !strings.Contains(err.Error(), "needs the role federation-admin") {
		t.Fatalf("applicant adds an org: %v", err)
	}
	if _, err := as(audDir, "operator", "add", "--name", "x", "--roles", "auditor"); err == nil || !strings.Contains(err.Error(), "federation-admin") {
		t.Fatalf("auditor adds an operator: %v", err)
	}
	if _, err := as(appDir, "audit", "export"); err == nil || !strings.Contains(err.Error(), "federation-admin, auditor") {
		t.Fatalf("applicant exports the log: %v", err)
	}

	// The auditor exports the log: who did what, with no token in it.
	out, err := as(audDir, "--json", "audit", "export", "--since", "1h")
	if err != nil {
		t.Fatal(err)
	}
	var entries []struct {
		Seq     int64             `json:"seq"`
		Actor   string            `json:"actor"`
		Roles   []string          `json:"roles"`
		Op      string            `json:"op"`
		Params  map[string]string `json:"params"`
		Outcome string            `json:"outcome"`
		After   string            `json:"after"`
	}
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var orgAdd int64
	ops := map[string]int{}
	for _, e := range entries {
		ops[e.Op]++
		if e.Op == "org add" {
			orgAdd = e.Seq
			if e.Actor != "spiffe://"+TrustDomain+"/operator/admin" || e.Roles[0] != "federation-admin" || e.Params["code"] != "nccu" || !strings.Contains(e.After, "國立政治大學") {
				t.Fatalf("org add entry %+v", e)
			}
		}
	}
	if ops["org add"] != 1 || ops["operator add"] != 2 || ops["operator join-token"] != 2 || ops["operator enroll"] != 2 || ops["audit export"] != 1 {
		t.Fatalf("ops %v in\n%s", ops, out)
	}
	if strings.Contains(out, audToken) || strings.Contains(out, strings.Split(audToken, ".")[1]) {
		t.Fatal("the export holds a join token")
	}
	csv, err := as(audDir, "audit", "export", "--format", "csv")
	if err != nil || !strings.HasPrefix(csv, "seq,at,actor,roles,op,") || !strings.Contains(csv, "operator enroll") {
		t.Fatalf("csv: %s %v", csv, err)
	}
	if out, err := as(audDir, "audit", "verify"); err != nil || !strings.Contains(out, "verifies") {
		t.Fatalf("verify: %s %v", out, err)
	}

	// Offline, someone with the state file rewrites who the organisation was added for.
	h.Stop()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(h.DataDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := db.Exec(`UPDATE oplog SET params = '{"code":"someone-else","type":"university"}' WHERE seq = ?`, orgAdd)
	if n, _ := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("tamper: %v (%d rows)", err, n)
	}
	db.Close()
	h.Start()
	out, err = as(audDir, "audit", "verify")
	if err == nil || !strings.Contains(err.Error(), "does not verify") || !strings.Contains(err.Error(), "entry "+strconv.FormatInt(orgAdd, 10)+": ") {
		t.Fatalf("verify after tampering: %s %v", out, err)
	}
}
