package federationtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// SPIREVersion is the SPIRE release that .ci/spire/build.sh builds.
const SPIREVersion = "1.13.3"

const (
	spireStartTimeout    = 60 * time.Second
	spireRegisterTimeout = 60 * time.Second
	spireCommandTimeout  = 30 * time.Second
	spireStopTimeout     = 10 * time.Second
	logTailBytes         = 8 << 10
	// maxSocketPath stays under the 104–108 byte limit of a unix socket path.
	maxSocketPath = 100
)

// SPIREBinaries returns the directories' spire-server and spire-agent paths:
// it looks in $SPIRE_BIN, then $HOME/.cache/mydata-spire/bin, then $PATH.
// ok is false when they are not present. .ci/spire/build.sh builds them.
func SPIREBinaries() (server, agent string, ok bool) {
	var dirs []string
	if d := os.Getenv("SPIRE_BIN"); d != "" {
		dirs = append(dirs, d)
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, ".cache", "mydata-spire", "bin"))
	}
	for _, d := range dirs {
		s, a := filepath.Join(d, "spire-server"), filepath.Join(d, "spire-agent")
		if isExecutable(s) && isExecutable(a) {
			return s, a, true
		}
	}
	s, err1 := exec.LookPath("spire-server")
	a, err2 := exec.LookPath("spire-agent")
	if err1 == nil && err2 == nil {
		return s, a, true
	}
	return "", "", false
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// SPIREConfig configures StartSPIRE.
type SPIREConfig struct {
	TrustDomain string // e.g. "mydata.test"
	// UpstreamCert is a PEM file: an intermediate CA certificate issued by
	// the hub's root (the disk UpstreamAuthority's cert_file_path). It may
	// hold further intermediates after it, up to (not including) the root.
	// It must be a CA (basic constraints, IsCA) and, because SPIRE checks it
	// with Go's default x509 verification, carry either no extended key
	// usage or one that allows serverAuth. It should outlive SPIRE's CA TTL
	// (24h, more for long SVIDTTLs), or SPIRE's signing CA is cut short.
	UpstreamCert string
	// UpstreamKey is a PEM file: the private key of UpstreamCert
	// (key_file_path), EC or RSA, PKCS#1, SEC 1 or PKCS#8.
	UpstreamKey string
	// UpstreamBundle is a PEM file: the hub's root CA (bundle_file_path), so
	// that SPIRE's trust bundle is the hub root.
	UpstreamBundle string
	// SVIDTTL is default_x509_svid_ttl; 0 means 1h.
	SVIDTTL time.Duration
}

// SPIRE is a running SPIRE server and agent started by StartSPIRE.
type SPIRE struct {
	// SocketPath is the agent's Workload API unix socket.
	SocketPath string
	// ServerSocketPath is the server's admin API unix socket (the
	// -socketPath of spire-server's command line).
	ServerSocketPath string
	// TrustDomain is the configured trust domain.
	TrustDomain spiffeid.TrustDomain
	// AgentID is the SPIFFE ID given to the agent (an alias of its
	// join-token ID), the parent of entries made by Register.
	AgentID spiffeid.ID
	// Dir holds the configuration, data and logs of both processes.
	Dir string

	serverBin string
	server    *spireProcess
	agent     *spireProcess
}

// WorkloadAPIAddr is SocketPath as a Workload API address ("unix://..."),
// for go-spiffe's workloadapi.WithAddr.
func (s *SPIRE) WorkloadAPIAddr() string { return "unix://" + s.SocketPath }

// StartSPIRE starts a spire-server and a spire-agent (join-token node
// attestation) in t.TempDir(), on free loopback ports, waits until both are
// healthy, and stops them at t.Cleanup. It fails the test on error.
//
// The server uses the disk UpstreamAuthority with cfg's upstream CA, so its
// signing CA, and every SVID, chains to cfg.UpstreamBundle; a sqlite3
// datastore; the memory KeyManager; and the join_token NodeAttestor. The
// agent uses the join_token NodeAttestor and the unix WorkloadAttestor.
// Their output goes to server.log and agent.log in Dir; the last lines are
// logged when the test fails.
func StartSPIRE(t testing.TB, cfg SPIREConfig) *SPIRE {
	t.Helper()
	serverBin, agentBin, ok := SPIREBinaries()
	if !ok {
		t.Fatal("federationtest: spire-server/spire-agent not found: run .ci/spire/build.sh")
	}
	td, err := spiffeid.TrustDomainFromString(cfg.TrustDomain)
	if err != nil {
		t.Fatalf("federationtest: trust domain %q: %v", cfg.TrustDomain, err)
	}
	for _, f := range []struct{ name, path string }{
		{"UpstreamCert", cfg.UpstreamCert}, {"UpstreamKey", cfg.UpstreamKey}, {"UpstreamBundle", cfg.UpstreamBundle},
	} {
		if f.path == "" {
			t.Fatalf("federationtest: SPIREConfig.%s is empty", f.name)
		}
		if _, err := os.Stat(f.path); err != nil {
			t.Fatalf("federationtest: SPIREConfig.%s: %v", f.name, err)
		}
	}
	svidTTL := cfg.SVIDTTL
	if svidTTL <= 0 {
		svidTTL = time.Hour
	}
	// SPIRE warns unless ca_ttl is at least 6 times the SVID TTL.
	caTTL := max(24*time.Hour, 6*svidTTL)

	dir := t.TempDir()
	sockDir := filepath.Join(dir, "sock")
	if len(filepath.Join(sockDir, "workload.sock")) > maxSocketPath {
		// t.TempDir() embeds the test name; keep the sockets' paths short.
		d, err := os.MkdirTemp("", "spire")
		if err != nil {
			t.Fatalf("federationtest: %v", err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		sockDir = d
	}
	s := &SPIRE{
		SocketPath:       filepath.Join(sockDir, "workload.sock"),
		ServerSocketPath: filepath.Join(sockDir, "server.sock"),
		TrustDomain:      td,
		AgentID:          spiffeid.RequireFromPath(td, "/mydata-test/agent"),
		Dir:              dir,
		serverBin:        serverBin,
	}
	for _, d := range []string{sockDir, filepath.Join(dir, "server"), filepath.Join(dir, "agent")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatalf("federationtest: %v", err)
		}
	}
	ports, err := freeLoopbackPorts(3)
	if err != nil {
		t.Fatalf("federationtest: %v", err)
	}
	serverPort, serverHealthPort, agentHealthPort := ports[0], ports[1], ports[2]

	// Server.
	serverConf := filepath.Join(dir, "server.conf")
	writeFile(t, serverConf, fmt.Sprintf(`server {
    bind_address = "127.0.0.1"
    bind_port = "%d"
    socket_path = %q
    trust_domain = %q
    data_dir = %q
    log_level = "DEBUG"
    default_x509_svid_ttl = %q
    ca_ttl = %q
    experimental {
        # Load new registration entries within a second (default 5s).
        cache_reload_interval = "1s"
    }
}

plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
            connection_string = %q
        }
    }
    KeyManager "memory" {
        plugin_data {}
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
    UpstreamAuthority "disk" {
        plugin_data {
            cert_file_path = %q
            key_file_path = %q
            bundle_file_path = %q
        }
    }
}

health_checks {
    listener_enabled = true
    bind_address = "127.0.0.1"
    bind_port = "%d"
    live_path = "/live"
    ready_path = "/ready"
}
`, serverPort, s.ServerSocketPath, td.Name(), filepath.Join(dir, "server"), svidTTL, caTTL,
		filepath.Join(dir, "server", "datastore.sqlite3"),
		absPath(t, cfg.UpstreamCert), absPath(t, cfg.UpstreamKey), absPath(t, cfg.UpstreamBundle),
		serverHealthPort))
	s.server = startProcess(t, "spire-server", filepath.Join(dir, "server.log"), serverBin, "run", "-config", serverConf)
	t.Cleanup(func() { s.server.stop(t) })
	s.waitReady(t, s.server, serverHealthPort)

	// Join token, with the alias AgentID, and the bootstrap bundle.
	out := s.serverCommand(t, "token", "generate", "-spiffeID", s.AgentID.String(), "-ttl", "600", "-output", "json")
	var token struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(out, &token); err != nil || token.Value == "" {
		s.fatalf(t, "federationtest: spire-server token generate: unexpected output %q (%v)", out, err)
	}
	bundlePEM := s.serverCommand(t, "bundle", "show", "-format", "pem")
	bundleFile := filepath.Join(dir, "agent", "bootstrap-bundle.pem")
	writeFile(t, bundleFile, string(bundlePEM))

	// Agent.
	agentConf := filepath.Join(dir, "agent.conf")
	writeFile(t, agentConf, fmt.Sprintf(`agent {
    server_address = "127.0.0.1"
    server_port = "%d"
    socket_path = %q
    trust_domain = %q
    trust_bundle_path = %q
    data_dir = %q
    log_level = "DEBUG"
    join_token = %q
    experimental {
        # Fetch new registration entries every second (default 5s).
        sync_interval = "1s"
    }
}

plugins {
    KeyManager "memory" {
        plugin_data {}
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
    WorkloadAttestor "unix" {
        plugin_data {}
    }
}

health_checks {
    listener_enabled = true
    bind_address = "127.0.0.1"
    bind_port = "%d"
    live_path = "/live"
    ready_path = "/ready"
}
`, serverPort, s.SocketPath, td.Name(), bundleFile, filepath.Join(dir, "agent"), token.Value, agentHealthPort))
	s.agent = startProcess(t, "spire-agent", filepath.Join(dir, "agent.log"), agentBin, "run", "-config", agentConf)
	t.Cleanup(func() { s.agent.stop(t) })
	s.waitReady(t, s.agent, agentHealthPort)

	// Cleanups run last-in first-out: this one runs before the processes
	// stop, while their logs are complete.
	t.Cleanup(func() {
		if t.Failed() {
			s.logTails(t)
		}
	})
	return s
}

// Register creates a registration entry for spiffeID (full spiffe://...
// URI) with parent the agent's ID (AgentID) and selector unix:uid:<this
// process's uid>, and waits until the agent serves it on the Workload API.
// Registering an ID that already has such an entry is not an error.
func (s *SPIRE) Register(t testing.TB, spiffeID string) {
	t.Helper()
	id, err := spiffeid.FromString(spiffeID)
	if err != nil {
		t.Fatalf("federationtest: Register(%q): %v", spiffeID, err)
	}
	out := s.serverCommand(t, "entry", "create",
		"-parentID", s.AgentID.String(),
		"-spiffeID", id.String(),
		"-selector", "unix:uid:"+strconv.Itoa(os.Getuid()),
		"-output", "json")
	var resp struct {
		Results []struct {
			Status struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"status"`
		} `json:"results"`
	}
	if err := json.Unmarshal(out, &resp); err != nil || len(resp.Results) != 1 {
		s.fatalf(t, "federationtest: spire-server entry create: unexpected output %q (%v)", out, err)
	}
	const grpcAlreadyExists = 6
	if st := resp.Results[0].Status; st.Code != 0 && st.Code != grpcAlreadyExists {
		s.fatalf(t, "federationtest: spire-server entry create %s: code %d: %s", id, st.Code, st.Message)
	}

	deadline := time.Now().Add(spireRegisterTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		svids, err := workloadapi.FetchX509SVIDs(ctx, workloadapi.WithAddr(s.WorkloadAPIAddr()))
		cancel()
		if err == nil {
			for _, svid := range svids {
				if svid.ID == id {
					return
				}
			}
			err = fmt.Errorf("%d SVIDs served, none for %s", len(svids), id)
		}
		lastErr = err
		time.Sleep(250 * time.Millisecond)
	}
	s.fatalf(t, "federationtest: the agent did not serve %s within %v: %v", id, spireRegisterTimeout, lastErr)
}

// serverCommand runs "spire-server <command> <subcommand> -socketPath
// <admin socket> <flags>" and returns its standard output; it fails the
// test if the command fails.
func (s *SPIRE) serverCommand(t testing.TB, command, subcommand string, flags ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), spireCommandTimeout)
	defer cancel()
	args := append([]string{command, subcommand, "-socketPath", s.ServerSocketPath}, flags...)
	cmd := exec.CommandContext(ctx, s.serverBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		s.fatalf(t, "federationtest: spire-server %s: %v\nstdout: %s\nstderr: %s",
			strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes()
}

// waitReady polls p's health check until it reports ready, p exits, or
// spireStartTimeout passes.
func (s *SPIRE) waitReady(t testing.TB, p *spireProcess, port int) {
	t.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d/ready", port)
	client := &http.Client{Timeout: 2 * time.Second}
	start := time.Now()
	deadline := start.Add(spireStartTimeout)
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			s.fatalf(t, "federationtest: %s exited before it was ready: %v", p.name, p.err)
		default:
		}
		resp, err := client.Get(url)
		if err == nil {
			body := make([]byte, 512)
			n, _ := resp.Body.Read(body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Logf("federationtest: %s ready after %v", p.name, time.Since(start).Round(time.Millisecond))
				return
			}
			last = fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(body[:n]))
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.fatalf(t, "federationtest: %s not ready within %v (last health check: %s)", p.name, spireStartTimeout, last)
}

// fatalf logs the tails of the SPIRE logs, then fails the test.
func (s *SPIRE) fatalf(t testing.TB, format string, args ...any) {
	t.Helper()
	s.logTails(t)
	t.Fatalf(format, args...)
}

func (s *SPIRE) logTails(t testing.TB) {
	t.Helper()
	for _, p := range []*spireProcess{s.server, s.agent} {
		if p != nil {
			t.Logf("federationtest: last lines of %s (%s):\n%s", p.name, p.logPath, tail(p.logPath, logTailBytes))
		}
	}
}

type spireProcess struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	err     error         // Wait's result, set before done is closed
	once    sync.Once
}

func startProcess(t testing.TB, name, logPath, bin string, args ...string) *spireProcess {
	t.Helper()
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("federationtest: %v", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = filepath.Dir(logPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("federationtest: starting %s: %v", name, err)
	}
	logFile.Close() // the child has its own descriptor
	p := &spireProcess{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p
}

// stop ends the process: SIGTERM, then SIGKILL after spireStopTimeout.
func (p *spireProcess) stop(t testing.TB) {
	p.once.Do(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(spireStopTimeout):
			t.Logf("federationtest: %s did not stop within %v of SIGTERM; killing it", p.name, spireStopTimeout)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// freeLoopbackPorts returns n distinct TCP ports that were free on
// 127.0.0.1 a moment ago.
func freeLoopbackPorts(n int) ([]int, error) {
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatalf("federationtest: %v", err)
	}
}

func absPath(t testing.TB, path string) string {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatalf("federationtest: %v", err)
	}
	return abs
}

// tail returns about the last n bytes of the file at path, from a line
// start.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	off := max(fi.Size()-n, 0)
	buf := make([]byte, fi.Size()-off)
	k, err := f.ReadAt(buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Sprintf("(%v)", err)
	}
	buf = buf[:k]
	if off > 0 {
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		}
	}
	return string(buf)
}
