package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mydatafed/mydata/pkg/configfile/configfiletest"
)

func TestLoad(t *testing.T) {
	base := "org: moi\nname: dp1\ndata_dir: /tmp/c\n"
	tests := []struct{ name, yaml, wantErr string }{
		{"minimal", base, ""},
		{"spire", base + "identity:\n  source: spire\n  spire_socket: unix:///tmp/agent.sock\n", ""},
		{"no org", "name: dp1\n", "org"},
		{"bad name", "org: moi\nname: DP\n", "name"},
		{"unknown key", base + "colour: red\n", `unknown key "colour"`},
		{"bad source", base + "identity:\n  source: vault\n", "identity.source"},
		{"bad socket", base + "identity:\n  source: spire\n  spire_socket: /tmp/x\n", "identity.spire_socket"},
		{"http hub", base + "hub:\n  url: http://hub:8443\n", `hub.url: "http://hub:8443" is not an https:// URL`},
		{"hub list", base + "hub:\n  url: [https://h1:8443, https://h2:8443]\n", ""},
		{"hub list, block style", base + "hub:\n  url:\n    - https://h1:8443\n    - https://h2:8443\n    - https://h3:8443\n", ""},
		{"hub list of one", base + "hub:\n  url: [https://h1:8443]\n", ""},
		{"http hub in list", base + "hub:\n  url: [https://h1:8443, http://x]\n", `hub.url[1]: "http://x" is not an https:// URL`},
		{"hostless hub in list", base + "hub:\n  url: [https://h1:8443, https://h2:8443, https://]\n", `hub.url[2]: "https://" is not an https:// URL`},
		{"hub listed twice", base + "hub:\n  url: [https://h1:8443, https://h2:8443, https://h1:8443/]\n", `hub.url[2]: "https://h1:8443/" repeats hub.url[0]`},
		{"empty hub list", base + "hub:\n  url: []\n", "hub.url: give at least one URL"},
		{"empty hub", base + "hub:\n  url:\n", "hub.url: give at least one URL"},
		{"empty hub string", base + "hub:\n  url: \"\"\n", `hub.url: "" is not an https:// URL`},
		{"hub map", base + "hub:\n  url: {a: b}\n", "line 5: hub.url: give one URL or a list of URLs"},
		{"hub list of lists", base + "hub:\n  url: [[https://h1:8443]]\n", "hub.url: want a string, got a sequence (line 5)"},
		{"bad quic", base + "quic:\n  listen: nope\n", `quic.listen: "nope" is not host:port`},
		// A value of the wrong type is reported by its key, not only by its line.
		{"listen as a list", base + "quic: {listen: [1,2]}\n", "quic.listen: want a string, got a sequence (line 4)"},
		{"datasets as a number", base + "datasets: 5\n", "datasets: want a mapping, got 5 (line 4)"},
		{"duration as a word", base + "quic: {idle_timeout: yes}\n", `quic.idle_timeout: want a duration such as 90s, 10m or 1h, got "yes" (line 4)`},
		{"dataset as a list", base + "datasets:\n  moi.household: [1]\n", "datasets.moi.household: want a mapping, got a sequence (line 5)"},
		{"dataset max_bytes as a word", base + "datasets:\n  moi.household:\n    max_bytes: lots\n", `datasets.moi.household.max_bytes: want a whole number, got "lots" (line 6)`},
		{"nested unknown key", base + "quic:\n  lisen: :7443\n", `quic: unknown key "lisen" (line 5)`},
		{"several type errors", base + "quic:\n  listen: [1]\n  idle_timeout: [1]\n",
			"quic.listen: want a string, got a sequence (line 5); quic.idle_timeout: want a duration such as 90s, 10m or 1h, got a sequence (line 6)"},
		// Listen addresses are checked before anything binds them.
		{"quic port not a number", base + "quic:\n  listen: 127.0.0.1:notaport\n", `quic.listen: "127.0.0.1:notaport": the port "notaport" is not a number from 1 to 65535`},
		{"quic port too large", base + "quic:\n  listen: 127.0.0.1:70000\n", `quic.listen: "127.0.0.1:70000": the port "70000" is not a number`},
		{"quic on every interface", base + "quic:\n  listen: \":7443\"\n", ""},
		{"tcp port not a number", base + "tcp:\n  listen: 127.0.0.1:tls\n", `tcp.listen: "127.0.0.1:tls": the port "tls" is not a number`},
		{"tcp off, bad listen ignored", base + "tcp:\n  enabled: false\n  listen: nope\n", ""},
		{"quic off, tcp on", base + "quic:\n  enabled: false\n", ""},
		{"both transports off", base + "quic:\n  enabled: false\ntcp:\n  enabled: false\n", "quic.enabled, tcp.enabled: both are false"},
		{"tcp enabled as a word", base + "tcp:\n  enabled: sometimes\n", "tcp.enabled: want"},
		{"telemetry port not a number", base + "telemetry:\n  listen: localhost:metrics\n", `telemetry.listen: "localhost:metrics": the port "metrics" is not a number`},
		{"telemetry bad host", base + "telemetry:\n  listen: \"no such host:9444\"\n", `telemetry.listen: "no such host:9444": the host "no such host" is neither`},
		{"exchange port not a number", base + "exchange:\n  listen: 127.0.0.1:http\n", `exchange.listen: "127.0.0.1:http": the port "http" is not a number`},
		{"exchange without port", base + "exchange:\n  listen: 127.0.0.1\n", `exchange.listen: "127.0.0.1" is not host:port`},
		{"exchange on loopback", base + "exchange:\n  listen: 127.0.0.1:8442\n", ""},
		{"tiny interval", base + "directory:\n  sync_interval: 1ms\n", "directory.sync_interval"},
		// The counter page: off by default, so its other keys are checked only with a listener.
		{"counter on loopback", base + "counter:\n  listen: 127.0.0.1:8450\n  staff_file: /etc/mydata/staff\n", ""},
		{"counter keys without a listener", base + "counter:\n  ttl: 1s\n", ""},
		{"counter without staff", base + "counter:\n  listen: 127.0.0.1:8450\n", "counter.staff_file: required"},
		{"counter off loopback without TLS", base + "counter:\n  listen: 0.0.0.0:8450\n  staff_file: /s\n", `counter.listen: "0.0.0.0:8450" is not loopback, so counter.tls_cert and counter.tls_key are required`},
		{"counter off loopback with TLS", base + "counter:\n  listen: 0.0.0.0:8450\n  staff_file: /s\n  tls_cert: /c.pem\n  tls_key: /k.pem\n", ""},
		{"counter cert without key", base + "counter:\n  listen: 127.0.0.1:8450\n  staff_file: /s\n  tls_cert: /c.pem\n", "counter.tls_cert and counter.tls_key: give both or neither"},
		{"counter short ttl", base + "counter:\n  listen: 127.0.0.1:8450\n  staff_file: /s\n  ttl: 1s\n", "counter.ttl: 1s is shorter than the least allowed, 10s"},
		{"counter no lockout", base + "counter:\n  listen: 127.0.0.1:8450\n  staff_file: /s\n  lockout_after: 0\n", "counter.lockout_after: 0 is less than 1"},
		{"counter bad zone", base + "counter:\n  listen: 127.0.0.1:8450\n  staff_file: /s\n  time_zone: Mars/Olympus\n", "counter.time_zone"},
		{"counter bad port", base + "counter:\n  listen: 127.0.0.1:x\n  staff_file: /s\n", `counter.listen: "127.0.0.1:x": the port "x" is not a number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c.yaml")
			os.WriteFile(p, []byte(tt.yaml), 0o644)
			c, err := Load(p)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.ID().String() != "spiffe://mydata.example/org/moi/connector/dp1" {
					t.Fatalf("ID %s", c.ID())
				}
				if len(c.Hub.URLs) == 0 {
					t.Fatal("no hub URL")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestHubURLs(t *testing.T) {
	base := "org: moi\nname: dp1\ndata_dir: /tmp/c\n"
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"default", base, []string{"https://127.0.0.1:8443"}},
		{"one URL", base + "hub:\n  url: https://hub.example:8443\n", []string{"https://hub.example:8443"}},
		{"list", base + "hub:\n  url:\n    - https://h1:8443\n    - https://h2:8443\n", []string{"https://h1:8443", "https://h2:8443"}},
		{"list replaces the default", base + "hub:\n  url: [https://h3:8443]\n", []string{"https://h3:8443"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c.yaml")
			os.WriteFile(p, []byte(tt.yaml), 0o644)
			c, err := Load(p)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(c.Hub.URLs, " ") != strings.Join(tt.want, " ") {
				t.Fatalf("hub URLs %q, want %q", c.Hub.URLs, tt.want)
			}
		})
	}
}

func TestExampleConfigLoads(t *testing.T) {
	if _, err := Load(filepath.Join("..", "..", "..", "conf", "connector.yaml")); err != nil {
		t.Fatal(err)
	}
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte("org: moi\nname: dp1\n"))
	if b, err := os.ReadFile(filepath.Join("..", "..", "..", "conf", "connector.yaml")); err == nil {
		f.Add(b)
	}
	f.Add([]byte("quic: {listen: 1}\n"))
	f.Add([]byte("org: moi\nname: dp1\nhub:\n  url: [https://h1:8443, https://h2:8443]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := Load(p)
		if err == nil && c.Validate() != nil {
			t.Fatal("Load accepted a config that does not validate")
		}
	})
}

// TestExampleConfigDefaults checks that every value conf/connector.yaml shows is the default, unless the file
// marks it as an example.
func TestExampleConfigDefaults(t *testing.T) {
	configfiletest.CheckDefaults(t, filepath.Join("..", "..", "..", "conf", "connector.yaml"), Default())
}
