package federationtest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/mydatafed/mydata/pkg/hubapi"
)

// clusterFed is a three-node hub cluster with a DP and an SP connector that know every node.
type clusterFed struct {
	*benchFed
	hubs []*Hub
}

// clusterExtra snapshots often, so that a node that joins late catches up from a snapshot.
const clusterRaft = "  snapshot_interval: 1s\n  snapshot_threshold: 200\n"

func startClusterFed(t testing.TB) *clusterFed {
	t.Helper()
	hubs := StartCluster(t, 3, HubOptions{Raft: clusterRaft})
	dir := smallRecords(t, benchSubjects(t, 1200), 64)
	return &clusterFed{benchFed: setupBenchFed(t, hubs[0], dir), hubs: hubs}
}

func (f *clusterFed) leader(t *testing.T) *Hub { return f.leaderOf(t) }

func (f *clusterFed) leaderOf(t testing.TB) *Hub {
	t.Helper()
	var leader *Hub
	Eventually(t, 30*time.Second, "a leader", func() error {
		for _, h := range f.hubs {
			if !h.Running() {
				continue
			}
			var hl hubapi.Health
			if err := getJSON(h.URL()+hubapi.PathHealth, &hl); err != nil {
				continue
			}
			for _, c := range f.hubs {
				if c.NodeID == hl.Leader && c.Running() {
					leader = c
					return nil
				}
			}
		}
		return errors.New("no running node knows a running leader")
	})
	return leader
}

// getJSON reads an unauthenticated hub endpoint (the health check) without checking the server: the
// answer carries no secret and the test only needs the leader's name.
func getJSON(u string, v any) error {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// grant is one citizen's consent, as far as it got.
type grant struct {
	state    string // the OAuth state, unique: how the test finds the consent in each node's database
	code     string
	verifier string
	redeemed bool
}

// grantOn runs authorize → login → consent page → approve on one node's portal; the grant is acknowledged
// when the browser is sent back with a code.
func (fl *benchFlow) grantOn(portal, subject, state string) (grant, error) {
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Transport: fl.transport, Jar: jar, CheckRedirect: noRedirects, Timeout: 30 * time.Second}
	p := NewPKCE()
	q := url.Values{"response_type": {"code"}, "client_id": {benchService}, "redirect_uri": {benchRedirect}, "scope": {benchDataset},
		"state": {state}, "code_challenge": {p.Challenge}, "code_challenge_method": {"S256"}}
	authz := "/oauth/authorize?" + q.Encode()
	resp, err := fl.login(browser, portal, "/login?next="+url.QueryEscape(authz), subject)
	if err != nil {
		return grant{}, err
	}
	page, _, err := fl.get(browser, portal+resp.Header.Get("Location"), http.StatusOK)
	if err != nil {
		return grant{}, fmt.Errorf("authorize: %w", err)
	}
	form, err := ConsentForm(page)
	if err != nil {
		return grant{}, err
	}
	form.Set("decision", "approve")
	_, resp, err = fl.postForm(browser, portal+"/oauth/consent", form, http.StatusFound)
	if err != nil {
		return grant{}, fmt.Errorf("approve: %w", err)
	}
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || back.Query().Get("code") == "" {
		return grant{}, fmt.Errorf("approve sent the browser to %q", resp.Header.Get("Location"))
	}
	return grant{state: state, code: back.Query().Get("code"), verifier: p.Verifier}, nil
}

// redeem hands a code to the SP connector, as the SP's application does; it returns the HTTP status and
// the answer.
func (fl *benchFlow) redeem(g grant) (int, string, error) {
	body, _ := json.Marshal(map[string]string{"code": g.code, "code_verifier": g.verifier, "redirect_uri": benchRedirect})
	req, _ := http.NewRequest(http.MethodPost, fl.spAPI+"/v1/exchanges", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: fl.transport, Timeout: time.Minute}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String(), nil
}

// consentsByState reads a node's state database: every consent's state, by OAuth state, with how many
// rows each OAuth state has.
func consentsByState(t *testing.T, h *Hub) map[string][]string {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(h.DataDir(), "state.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT oauth_state, state FROM consents`)
	if err != nil {
		t.Fatalf("%s: %v", h.NodeID, err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var st, s string
		if err := rows.Scan(&st, &s); err != nil {
			t.Fatal(err)
		}
		out[st] = append(out[st], s)
	}
	return out
}

// TestClusterSurvivesLeaderKill: 1000 consents granted through every node's portal and redeemed by the SP
// connector, while the leader is killed with SIGKILL part-way. Every acknowledged grant is on every
// surviving node, once; no code is redeemed twice; a new leader takes over and the cluster keeps serving.
func TestClusterSurvivesLeaderKill(t *testing.T) {
	// In parallel with the other cluster test: both spend most of their time waiting for elections.
	t.Parallel()
	f := startClusterFed(t)
	fl := newBenchFlow(f.benchFed, 64)
	subjects := benchSubjects(t, 1200)
	const total, workers = 1000, 12
	var (
		mu       sync.Mutex
		acked    []grant
		failures []string
		next     atomic.Int64
		killed   atomic.Bool
		wg       sync.WaitGroup
	)
	victim := f.leader(t)
	killAt := int64(total / 3)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= total {
					return
				}
				if i == killAt {
					victim.Kill()
					killed.Store(true)
				}
				h := f.hubs[i%int64(len(f.hubs))]
				if h == victim && killed.Load() {
					h = f.hubs[(i+1)%int64(len(f.hubs))]
					if h == victim {
						h = f.hubs[(i+2)%int64(len(f.hubs))]
					}
				}
				g, err := fl.grantOn(h.PortalURL(), subjects[i], fmt.Sprintf("op-%d", i))
				if err != nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("grant %d on %s: %v", i, h.NodeID, err))
					mu.Unlock()
					continue
				}
				status, body, err := fl.redeem(g)
				g.redeemed = err == nil && status == http.StatusOK && delivered(body)
				mu.Lock()
				acked = append(acked, g)
				if !g.redeemed {
					failures = append(failures, fmt.Sprintf("redeem %d: %d %v %.200s", i, status, err, body))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("%d of %d grants acknowledged; %d failures (requests in flight on the killed node, or answered 'outcome unknown')", len(acked), total, len(failures))
	for i, f := range failures {
		if i < 3 || strings.HasPrefix(f, "redeem") && i < 40 {
			if len(f) > 400 {
				f = f[:400]
			}
			t.Log(f)
		}
	}
	// Failures may only be the few requests caught by the kill.
	if len(failures) > total/20 {
		t.Fatalf("%d failures of %d", len(failures), total)
	}
	leader := f.leader(t)
	if leader == victim {
		t.Fatal("the killed node still leads")
	}
	var survivors []*Hub
	for _, h := range f.hubs {
		if h != victim {
			survivors = append(survivors, h)
		}
	}
	// Every acknowledged grant on every survivor, exactly once; every redeemed one used.
	for _, h := range survivors {
		Eventually(t, 30*time.Second, h.NodeID+" holds every acknowledged grant", func() error {
			byState := consentsByState(t, h)
			for _, g := range acked {
				rows := byState[g.state]
				switch {
				case len(rows) == 0:
					return fmt.Errorf("grant %s missing", g.state)
				case len(rows) > 1:
					t.Fatalf("%s: grant %s recorded %d times", h.NodeID, g.state, len(rows))
				case g.redeemed && rows[0] != "used":
					return fmt.Errorf("grant %s redeemed but %s", g.state, rows[0])
				}
			}
			return nil
		})
	}
	// No code is redeemed twice: every redeemed code, presented again, is refused.
	n := 0
	for _, g := range acked {
		if !g.redeemed || n >= 40 {
			continue
		}
		n++
		if status, body, err := fl.redeem(g); err != nil || status == http.StatusOK && delivered(body) {
			t.Fatalf("code of %s redeemed twice: %d %v %.200s", g.state, status, err, body)
		}
	}
	// And it keeps serving, through the survivors' portals.
	for i := range 10 {
		h := survivors[i%len(survivors)]
		g, err := fl.grantOn(h.PortalURL(), subjects[total+i], fmt.Sprintf("after-%d", i))
		if err != nil {
			t.Fatalf("after the kill, on %s: %v", h.NodeID, err)
		}
		if status, body, err := fl.redeem(g); err != nil || status != http.StatusOK || !delivered(body) {
			t.Fatalf("after the kill: %d %v %.300s", status, err, body)
		}
	}
}

// TestClusterMembership: a minority refuses writes and says so; a dead node is replaced by a fresh one
// that catches up from a snapshot; a node that lost its disk joins again; sessions and login hints work
// across nodes; no national ID is in clear in any node's files or in a backup.
func TestClusterMembership(t *testing.T) {
	t.Parallel()
	parent := t
	f := startClusterFed(t)
	fl := newBenchFlow(f.benchFed, 64)
	subjects := benchSubjects(t, 1200)
	for i := range 30 {
		h := f.hubs[i%3]
		g, err := fl.grantOn(h.PortalURL(), subjects[i], fmt.Sprintf("m-%d", i))
		// On a loaded machine an election can happen here on its own: the citizen is told to try again
		// (503), and does.
		for try := 0; try < 3 && err != nil && strings.Contains(err.Error(), "503"); try++ {
			time.Sleep(2 * time.Second)
			g, err = fl.grantOn(h.PortalURL(), subjects[i], fmt.Sprintf("m-%d-%d", i, try))
		}
		if err != nil {
			t.Fatal(err)
		}
		if status, body, err := fl.redeem(g); err != nil || status != http.StatusOK {
			t.Fatalf("%d %v %.300s", status, err, body)
		}
	}

	t.Run("a session and a login hint made through one node work on another", func(t *testing.T) {
		a, b := f.hubs[0].NewCitizen(), f.hubs[1].NewCitizen()
		a.Login(subjects[0], benchMethod)
		u, _ := url.Parse(a.Hub.PortalURL())
		b.Client.Jar.SetCookies(mustURL(t, b.Hub.PortalURL()), a.Client.Jar.Cookies(u))
		// The pages show the citizen's ID masked (A12*****89).
		masked := subjects[0][:3] + "*****" + subjects[0][8:]
		if p := b.Get("/history"); p.Status != http.StatusOK || !strings.Contains(p.Body, masked) {
			t.Fatalf("the session from %s is not accepted by %s: %d", a.Hub.NodeID, b.Hub.NodeID, p.Status)
		}
		hint := sealLoginHint(t, f.sp, benchService, subjects[0])
		for _, h := range f.hubs {
			c := h.NewCitizen()
			c.Login(subjects[0], benchMethod)
			p := c.Get(h.AuthorizeURL(benchService, benchRedirect, benchDataset, "x", NewPKCE(), url.Values{"login_hint": {hint}}))
			if p.Status != http.StatusOK || !strings.Contains(p.Body, `id="approve"`) {
				t.Fatalf("a login hint sealed once does not open on %s: %d %s", h.NodeID, p.Status, p.Location)
			}
		}
	})

	t.Run("no national ID in clear on any node's disk or in a backup", func(t *testing.T) {
		backup := filepath.Join(t.TempDir(), "cluster.backup")
		if out, err := Run(f.hubs[1].Bin, "backup", "--config", f.hubs[1].ConfigPath, "--out", backup); err != nil {
			t.Fatalf("backup: %v %s", err, out)
		}
		files := []string{backup}
		for _, h := range f.hubs {
			filepath.WalkDir(h.DataDir(), func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return nil
				}
				// Everything the hub writes is its user's alone: raft's WAL and snapshots included.
				if info, err := d.Info(); err == nil && info.Mode().Perm()&0o077 != 0 {
					t.Errorf("%s has mode %v; the hub's files are 0600 and its directories 0700", p, info.Mode().Perm())
				}
				if d.Type().IsRegular() {
					files = append(files, p)
				}
				return nil
			})
		}
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err != nil {
				continue // a snapshot being replaced
			}
			for _, id := range subjects[:30] {
				if bytes.Contains(b, []byte(id)) {
					t.Errorf("%s holds the national ID %s in clear", p, id)
				}
			}
		}
		// The backup holds gzip: look inside it too.
		if err := scanBackup(backup, subjects[:30]); err != nil {
			t.Error(err)
		}
		// Restored onto a fresh node, the cluster's records are there and found by the citizen's ID:
		// the backup carries the cluster key that opens the keyring's lookup keys.
		fresh := NewHub(t, HubOptions{NodeID: "restored-1"})
		if out, err := Run(fresh.Bin, "restore", "--config", fresh.ConfigPath, "--in", backup); err != nil {
			t.Fatalf("restore: %v %s", err, out)
		}
		fresh.Start()
		c := fresh.NewCitizen()
		c.Login(subjects[3], benchMethod)
		if p := c.Get("/history"); p.Status != http.StatusOK || strings.Count(p.Body, `id="consent-`) != 1 {
			t.Fatalf("history of a citizen on the restored hub: %d\n%.500s", p.Status, p.Body)
		}
		fresh.Stop()
	})

	t.Run("a node cut off from the majority refuses writes and says so", func(t *testing.T) {
		f.hubs[1].Stop()
		f.hubs[2].Stop()
		lone := f.hubs[0]
		c := lone.NewCitizen()
		c.Login(subjects[40], benchMethod)
		p := c.Get(lone.AuthorizeURL(benchService, benchRedirect, benchDataset, "minority", NewPKCE(), nil))
		if p.Status != http.StatusOK {
			t.Fatalf("consent page on the lone node: %d", p.Status)
		}
		form, _ := ConsentForm(p.Body)
		form.Set("decision", "approve")
		start := time.Now()
		r := c.Post("/oauth/consent", form)
		if r.Status != http.StatusServiceUnavailable || !strings.Contains(r.Body, "cannot record your decision") {
			t.Fatalf("a grant on a minority: %d %.300s", r.Status, r.Body)
		}
		t.Logf("the minority refused after %s", time.Since(start))
		if _, err := lone.AdminErr("org", "add", "--code", "minority", "--name-zh", "x", "--name-en", "x", "--type", "other"); err == nil ||
			!strings.Contains(err.Error(), "no hub leader") {
			t.Fatalf("an admin write on a minority: %v", err)
		}
		resp, err := http.Get("http://" + lone.Telem + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Error("a node without a majority says it is ready")
			}
		}
		f.hubs[1].Start()
		f.hubs[2].Start()
		// The lone node led; it steps down, and the three elect again.
		for _, h := range f.hubs {
			WaitHTTP(t, "http://"+h.Telem+"/readyz", 30*time.Second)
		}
	})

	t.Run("replace a dead node; a node that lost its disk joins again", func(t *testing.T) {
		dead := f.hubs[2]
		dead.Kill()
		Eventually(t, 30*time.Second, "remove the dead node", func() error {
			_, err := f.hubs[0].AdminErr("cluster", "remove", "--node", dead.NodeID)
			return err
		})
		// On the parent test: it must outlive this subtest, as a member of the cluster.
		fresh := NewHub(parent, HubOptions{NodeID: "hub-4", Raft: clusterRaft})
		fresh.Join(f.hubs[1])
		Eventually(t, 60*time.Second, "hub-4 caught up", func() error {
			if len(consentsByState(t, fresh)) < 30 {
				return errors.New("not yet")
			}
			return nil
		})
		if out := f.hubs[0].Admin("cluster", "status"); !strings.Contains(out, "hub-4") || !strings.Contains(out, "removed") {
			t.Errorf("status after replace:\n%s", out)
		}
		// The removed node's id is never admitted again.
		if _, err := dead.AdminErr("cluster", "status"); err == nil {
			t.Log("(the dead node's admin answered: it is not running, so this is its stale config)")
		}
		// Three voters again before hub-2 goes, or hub-1 alone would be a minority.
		WaitVoters(t, f.hubs[0], 3)
		// hub-2 loses its disk and joins again under its own id.
		lost := f.hubs[1]
		lost.Stop()
		if err := os.RemoveAll(lost.DataDir()); err != nil {
			t.Fatal(err)
		}
		var tok string
		Eventually(t, 30*time.Second, "a join token", func() error {
			out, err := f.hubs[0].AdminErr("cluster", "join-token")
			tok = strings.TrimSpace(out)
			return err
		})
		lost.Start("--join", f.hubs[0].URL(), "--token", tok)
		Eventually(t, 60*time.Second, "hub-2 caught up again", func() error {
			if len(consentsByState(t, lost)) < 30 {
				return errors.New("not yet")
			}
			return nil
		})
		WaitVoters(t, f.hubs[0], 3)
	})

	t.Run("a revocation reaches the connectors within 10 s while the hub node they use is down", func(t *testing.T) {
		if err := f.sp.Ping(f.dp); err != nil {
			t.Fatalf("before: %v", err)
		}
		// hub-1 is the first URL of both connectors.
		f.hubs[0].Kill()
		var via *Hub
		for _, h := range f.hubs[1:] {
			if h.Running() {
				via = h
				break
			}
		}
		Eventually(t, 30*time.Second, "suspend through a survivor", func() error {
			_, err := via.AdminErr("connector", "suspend", "--org", f.dp.Org, "--name", f.dp.Name)
			return err
		})
		took := Eventually(t, 10*time.Second, "the SP refuses the suspended DP", func() error {
			if err := f.sp.Ping(f.dp); err == nil {
				return errors.New("still accepted")
			}
			return nil
		})
		t.Logf("the suspension reached the SP connector %s after it was recorded, with its first hub node down", took)
	})
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// scanBackup looks for any of ids in clear in every entry of a hub backup.
func scanBackup(path string, ids []string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if bytes.Contains(b, []byte(id)) {
				return fmt.Errorf("the backup's %s holds the national ID %s in clear", h.Name, id)
			}
		}
	}
}

// delivered says whether an exchange answer delivered its one dataset.
func delivered(body string) bool {
	var r ExchangeResult
	return json.Unmarshal([]byte(body), &r) == nil && len(r.Datasets) == 1 && r.Datasets[0].Status == "delivered"
}

// BenchmarkFailover measures, per operation, the time from SIGKILL of the leader of a three-node cluster to
// the first consent granted through a surviving node's portal (failover-ms), then restarts the killed node
// and waits for three voters before the next kill. With raft's default timeouts (heartbeat and election
// timeouts 1 s) the followers notice the leader is gone after 1 to 2 s and elect within a few hundred ms;
// writes in between wait for the new leader (raft.hold_timeout).
func BenchmarkFailover(b *testing.B) {
	hubs := StartCluster(b, 3, HubOptions{})
	for _, h := range hubs {
		quietLogs(b, h.ConfigPath)
	}
	subjects := benchSubjects(b, 200)
	f := &clusterFed{benchFed: setupBenchFed(b, hubs[0], smallRecords(b, subjects, 64)), hubs: hubs}
	fl := newBenchFlow(f.benchFed, 64)
	var took []time.Duration
	i := 0
	for b.Loop() {
		b.StopTimer()
		victim := f.leaderOf(b)
		var survivor *Hub
		for _, h := range hubs {
			if h != victim {
				survivor = h
				break
			}
		}
		b.StartTimer()
		start := time.Now()
		victim.Kill()
		for {
			i++
			if _, err := fl.grantOn(survivor.PortalURL(), subjects[i%len(subjects)], fmt.Sprintf("f-%d", i)); err == nil {
				break
			}
			if time.Since(start) > time.Minute {
				b.Fatal("no grant a minute after the leader was killed")
			}
			time.Sleep(10 * time.Millisecond)
		}
		took = append(took, time.Since(start))
		b.StopTimer()
		victim.Start()
		WaitVoters(b, survivor, 3)
		b.StartTimer()
	}
	slices.Sort(took)
	b.ReportMetric(millis(took[len(took)/2]), "failover-ms")
	b.ReportMetric(millis(took[len(took)-1]), "failover-max-ms")
}
