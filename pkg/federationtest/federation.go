package federationtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TrustDomain is the trust domain of test federations.
const TrustDomain = "mydata.test"

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// Binaries builds mydata-hub and mydata-connector once per test process and returns their paths. With
// MYDATA_BIN_DIR set it uses the binaries already there instead (what `perf` needs to name symbols in a
// profile of a benchmark; the caller answers for their being current).
func Binaries(t testing.TB) (hub, connector string) {
	t.Helper()
	if dir := os.Getenv("MYDATA_BIN_DIR"); dir != "" {
		return filepath.Join(dir, "mydata-hub"), filepath.Join(dir, "mydata-connector")
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "mydata-bin-")
		if buildErr != nil {
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		if buildErr = touchSources(root); buildErr != nil {
			return
		}
		args := []string{"build", "-o", buildDir + "/"}
		if raceBuild {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./hub/cmd/mydata-hub", "./connector/cmd/mydata-connector")...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "mydata-hub"), filepath.Join(buildDir, "mydata-connector")
}

// touchSources stats every Go source and module file under root. The binaries are built by a `go build`
// that go test does not see, so without this a cached result of these tests would outlive a change to the
// hub or the connector; go test remembers the files a test stats and reruns it when one changes.
func touchSources(root string) error {
	return filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "bin" || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".go") || d.Name() == "go.mod" || d.Name() == "go.sum" || strings.Contains(path, "templates") || strings.Contains(path, "static") {
			_, err = os.Stat(path)
		}
		return err
	})
}

// RemoveBinaries deletes what Binaries built; call it from TestMain after the tests.
func RemoveBinaries() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// handedOut holds the loopback ports FreeTCP and FreeUDP have returned in this process. The kernel may
// hand a port that was just closed to the next caller too, and a hub given the same port for raft and
// its portal fails to start (seen once).
var handedOut = struct {
	sync.Mutex
	ports map[string]bool
}{ports: map[string]bool{}}

// freePort asks the kernel for a free port on the network until it is one not handed out before.
func freePort(t testing.TB, network string) string {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 100 {
		var addr string
		if network == "tcp" {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr = ln.Addr().String()
			ln.Close()
		} else {
			c, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr = c.LocalAddr().String()
			c.Close()
		}
		if !handedOut.ports[network+addr] {
			handedOut.ports[network+addr] = true
			return addr
		}
	}
	t.Fatalf("no fresh %s port after 100 tries", network)
	return ""
}

// FreeTCP returns a loopback TCP address that was free a moment ago and not returned before.
func FreeTCP(t testing.TB) string { return freePort(t, "tcp") }

// FreeUDP returns a loopback UDP address that was free a moment ago and not returned before.
func FreeUDP(t testing.TB) string { return freePort(t, "udp") }

// Process is a started binary whose output goes to a log file.
type Process struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
}

func start(t testing.TB, name, logPath, bin string, args ...string) *Process {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop(t)
		if log, _ := os.ReadFile(logPath); bytes.Contains(log, []byte("WARNING: DATA RACE")) {
			t.Errorf("the race detector found a data race in %s; see %s", name, logPath)
		}
		if t.Failed() {
			t.Logf("--- %s log (%s) ---\n%s", name, logPath, tailFile(logPath, 6000))
		}
	})
	return p
}

// Kill ends the process at once with SIGKILL, as a machine that dies would, and waits for it.
func (p *Process) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Stop stops the process with SIGTERM, then SIGKILL after 10 s.
func (p *Process) Stop(t testing.TB) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Logf("%s did not stop on SIGTERM; killing it", p.Name)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Exited says whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Run runs a binary to completion and returns its stdout; stderr is in the error.
func Run(bin string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %v: %s", filepath.Base(bin), strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// WaitHTTP polls url until it answers 200 or the timeout passes.
func WaitHTTP(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not ready after %s: %s", url, timeout, last)
}

// Eventually polls cond until it returns nil or the timeout passes, and returns how long it took.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < timeout {
		if err = cond(); err == nil {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not true after %s: %v", what, timeout, err)
	return 0
}

// HubOptions adjusts a test hub.
type HubOptions struct {
	// Extra is appended to the generated YAML (keys not set by the harness).
	Extra string
	// NodeID is the node's id; hub-1 if empty.
	NodeID string
	// Raft holds more keys of the raft section, as YAML lines indented by two spaces.
	Raft string
	// Identity holds more keys of the identity section (where dev_login is on), as YAML lines indented by
	// two spaces.
	Identity string
	// Notify is the notify section's keys, as YAML lines indented by two spaces; none if empty.
	Notify string
	// PortalListen is the portal's address; a fresh loopback port if empty.
	PortalListen string
	// PortalPublicURL is portal.public_url, e.g. http://localhost:<port> (a secure context, as WebAuthn
	// wants); the hub's default if empty.
	PortalPublicURL string
}

// Hub is a hub node run as a process.
type Hub struct {
	Bin, ConnectorBin string
	NodeID            string
	Dir               string
	ConfigPath        string
	API, Raft, Telem  string
	Portal            string
	// Cluster is every node of the hub's cluster, this one included; connectors get all their URLs.
	Cluster []*Hub
	proc    *Process
	t       testing.TB
}

// NewHub writes a hub configuration with fresh loopback ports under a new temporary directory.
func NewHub(t testing.TB, opts HubOptions) *Hub {
	t.Helper()
	hubBin, connBin := Binaries(t)
	if opts.NodeID == "" {
		opts.NodeID = "hub-1"
	}
	h := &Hub{Bin: hubBin, ConnectorBin: connBin, NodeID: opts.NodeID, Dir: t.TempDir(), t: t}
	h.Cluster = []*Hub{h}
	h.API, h.Raft, h.Telem = FreeTCP(t), FreeTCP(t), FreeTCP(t)
	if h.Portal = opts.PortalListen; h.Portal == "" {
		h.Portal = FreeTCP(t)
	}
	h.ConfigPath = filepath.Join(h.Dir, "hub.yaml")
	portal := ""
	if opts.PortalPublicURL != "" {
		portal = "  public_url: " + opts.PortalPublicURL + "\n"
	}
	notify := ""
	if opts.Notify != "" {
		notify = "notify:\n" + opts.Notify
	}
	yaml := fmt.Sprintf("trust_domain: %s\nnode_id: %s\ndata_dir: %s\napi:\n  listen: %s\nraft:\n  listen: %s\n%stelemetry:\n  listen: %s\nportal:\n  listen: %s\n%sidentity:\n  dev_login: true\n%s%slog:\n  level: debug\n%s",
		TrustDomain, opts.NodeID, filepath.Join(h.Dir, "data"), h.API, h.Raft, opts.Raft, h.Telem, h.Portal, portal, opts.Identity, notify, opts.Extra)
	if err := os.WriteFile(h.ConfigPath, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return h
}

// StartHub makes and starts a hub and waits until it is ready.
func StartHub(t testing.TB, opts HubOptions) *Hub {
	h := NewHub(t, opts)
	h.Start()
	return h
}

// Start starts (or restarts) the hub process and waits until it is ready.
func (h *Hub) Start(extra ...string) {
	h.t.Helper()
	h.StartNoWait(extra...)
	WaitHTTP(h.t, "http://"+h.Telem+"/readyz", 60*time.Second)
}

// StartNoWait starts the hub process and returns at once.
func (h *Hub) StartNoWait(extra ...string) {
	h.t.Helper()
	h.proc = start(h.t, h.NodeID, filepath.Join(h.Dir, "hub.log"), h.Bin, append([]string{"serve", "--config", h.ConfigPath}, extra...)...)
}

// Join starts the hub as a new node of via's cluster, with a fresh node join token, and waits until it is
// ready. Every node's Cluster then lists it.
func (h *Hub) Join(via *Hub) {
	h.t.Helper()
	tok := strings.TrimSpace(via.Admin("cluster", "join-token"))
	h.Start("--join", via.URL(), "--token", tok)
	cluster := append(via.Cluster[:len(via.Cluster):len(via.Cluster)], h)
	for _, n := range cluster {
		n.Cluster = cluster
	}
}

// StartCluster starts n hub nodes, hub-1 to hub-n: the first makes the cluster, each other joins it
// through the node before it. It waits until every node is a voter.
func StartCluster(t testing.TB, n int, opts HubOptions) []*Hub {
	t.Helper()
	var hubs []*Hub
	for i := range n {
		o := opts
		o.NodeID = fmt.Sprintf("hub-%d", i+1)
		h := NewHub(t, o)
		if i == 0 {
			h.Start()
		} else {
			h.Join(hubs[i-1])
		}
		hubs = append(hubs, h)
	}
	WaitVoters(t, hubs[0], n)
	return hubs
}

// WaitVoters waits until the cluster h belongs to has n voters.
func WaitVoters(t testing.TB, h *Hub, n int) {
	t.Helper()
	Eventually(t, 60*time.Second, "every node a voter", func() error {
		var st struct {
			Servers []struct {
				Suffrage string `json:"suffrage"`
			} `json:"servers"`
		}
		out := h.Admin("--json", "cluster", "status")
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return err
		}
		voters := 0
		for _, s := range st.Servers {
			if s.Suffrage == "voter" {
				voters++
			}
		}
		if voters != n {
			return fmt.Errorf("%d voters:\n%s", voters, out)
		}
		return nil
	})
}

// Kill ends the hub process with SIGKILL.
func (h *Hub) Kill() { h.proc.Kill() }

// Pid is the hub process's id.
func (h *Hub) Pid() int { return h.proc.Pid() }

// Running says whether the hub process is running.
func (h *Hub) Running() bool { return h.proc != nil && !h.proc.Exited() }

// Stop stops the hub process.
func (h *Hub) Stop() { h.proc.Stop(h.t) }

// URLs are the API URLs of every node of the hub's cluster.
func (h *Hub) URLs() []string {
	var out []string
	for _, n := range h.Cluster {
		out = append(out, n.URL())
	}
	return out
}

// URL is the hub API's base URL.
func (h *Hub) URL() string { return "https://" + h.API }

// DataDir is the hub's data directory.
func (h *Hub) DataDir() string { return filepath.Join(h.Dir, "data") }

// Admin runs `mydata-hub admin` and fails the test on error.
func (h *Hub) Admin(args ...string) string {
	h.t.Helper()
	out, err := h.AdminErr(args...)
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

// AdminErr runs `mydata-hub admin` and returns its error.
func (h *Hub) AdminErr(args ...string) (string, error) {
	return Run(h.Bin, append([]string{"admin", "--config", h.ConfigPath}, args...)...)
}

// Token creates a join token for a connector.
func (h *Hub) Token(org, name string, extra ...string) string {
	h.t.Helper()
	return strings.TrimSpace(h.Admin(append([]string{"token", "create", "--org", org, "--connector", name}, extra...)...))
}

// AddOrg registers an organisation if it is not there yet.
func (h *Hub) AddOrg(code string) {
	h.t.Helper()
	if strings.Contains(h.Admin("org", "list"), "\n"+code+" ") {
		return
	}
	h.Admin("org", "add", "--code", code, "--name-zh", "測試機關 "+code, "--name-en", "Test agency "+code, "--type", "central-agency")
}

// ConnectorOptions adjusts a test connector.
type ConnectorOptions struct {
	Roles string
	Extra string
	// RegisteredQUIC is the QUIC address registered at the hub, which peers dial, if not the one the
	// connector listens on (a relay in front of it, say).
	RegisteredQUIC string
	// TCPOff leaves out tcp.listen and the registered TCP address (Extra may then set tcp.*).
	TCPOff bool
}

// Connector is a connector run as a process.
type Connector struct {
	Hub        *Hub
	Org, Name  string
	Dir        string
	ConfigPath string
	QUIC       string
	// TCP is the connector's tcp.listen and registered TCP address, empty with TCPOff.
	TCP   string
	Telem string
	// API is the local exchange API's address.
	API  string
	proc *Process
	t    testing.TB
}

// AddConnector registers a connector at the hub (and its organisation) and writes its configuration.
func (h *Hub) AddConnector(org, name string, opts ConnectorOptions) *Connector {
	h.t.Helper()
	if opts.Roles == "" {
		opts.Roles = "dp,sp"
	}
	c := &Connector{Hub: h, Org: org, Name: name, Dir: filepath.Join(h.Dir, "connector-"+org+"-"+name), t: h.t}
	c.QUIC, c.Telem, c.API = FreeUDP(h.t), FreeTCP(h.t), FreeTCP(h.t)
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		h.t.Fatal(err)
	}
	h.AddOrg(org)
	registered := c.QUIC
	if opts.RegisteredQUIC != "" {
		registered = opts.RegisteredQUIC
	}
	add := []string{"connector", "add", "--org", org, "--name", name, "--roles", opts.Roles, "--address", registered}
	tcp := ""
	if !opts.TCPOff {
		c.TCP = FreeTCP(h.t)
		add = append(add, "--tcp-address", c.TCP)
		tcp = "tcp:\n  listen: " + c.TCP + "\n"
	}
	h.Admin(add...)
	c.ConfigPath = filepath.Join(c.Dir, "connector.yaml")
	yaml := fmt.Sprintf("trust_domain: %s\norg: %s\nname: %s\ndata_dir: %s\nhub:\n  url: [%s]\nquic:\n  listen: %s\n%stelemetry:\n  listen: %s\nexchange:\n  listen: %s\nlog:\n  level: debug\n%s",
		TrustDomain, org, name, filepath.Join(c.Dir, "data"), strings.Join(h.URLs(), ", "), c.QUIC, tcp, c.Telem, c.API, opts.Extra)
	if err := os.WriteFile(c.ConfigPath, []byte(yaml), 0o644); err != nil {
		h.t.Fatal(err)
	}
	return c
}

// EnrolledConnector registers, enrolls and starts a connector.
func (h *Hub) EnrolledConnector(org, name string, opts ConnectorOptions) *Connector {
	h.t.Helper()
	c := h.AddConnector(org, name, opts)
	if _, err := c.Enroll(h.Token(org, name)); err != nil {
		h.t.Fatal(err)
	}
	c.Start()
	return c
}

// Enroll runs `mydata-connector enroll`.
func (c *Connector) Enroll(token string, extra ...string) (string, error) {
	return Run(c.Hub.ConnectorBin, append([]string{"enroll", "--config", c.ConfigPath, "--token", token}, extra...)...)
}

// Start starts the connector and waits until it is ready (it holds a valid directory).
func (c *Connector) Start() {
	c.t.Helper()
	c.proc = start(c.t, c.Org+"/"+c.Name, filepath.Join(c.Dir, "connector.log"), c.Hub.ConnectorBin, "serve", "--config", c.ConfigPath)
	WaitHTTP(c.t, "http://"+c.Telem+"/readyz", 30*time.Second)
}

// Stop stops the connector.
func (c *Connector) Stop() { c.proc.Stop(c.t) }

// DataDir is the connector's data directory.
func (c *Connector) DataDir() string { return filepath.Join(c.Dir, "data") }

// Status runs `mydata-connector status` with extra arguments.
func (c *Connector) Status(extra ...string) (string, error) {
	return Run(c.Hub.ConnectorBin, append([]string{"status", "--config", c.ConfigPath}, extra...)...)
}

// Ping runs `status --peer` against another connector.
func (c *Connector) Ping(peer *Connector) error {
	_, err := c.Status("--peer", peer.Org+"/"+peer.Name)
	return err
}

// ID is the connector's SPIFFE ID.
func (c *Connector) ID() string {
	return fmt.Sprintf("spiffe://%s/org/%s/connector/%s", TrustDomain, c.Org, c.Name)
}

// Metrics fetches the connector's /metrics text.
func (c *Connector) Metrics() string { return fetch(c.t, "http://"+c.Telem+"/metrics") }

// Metrics fetches the hub's /metrics text.
func (h *Hub) Metrics() string { return fetch(h.t, "http://"+h.Telem+"/metrics") }

func fetch(t testing.TB, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return b.String()
}
