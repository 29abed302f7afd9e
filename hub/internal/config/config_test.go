package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mydatafed/mydata/pkg/configfile/configfiletest"
)

func TestLoad(t *testing.T) {
	tests := []struct {
		name, yaml, wantErr string
	}{
		{"defaults", "data_dir: /tmp/x\n", ""},
		{"full", "trust_domain: mydata.test\nnode_id: h1\ndata_dir: /tmp/x\napi:\n  listen: 127.0.0.1:1\nca:\n  svid_ttl: 1h\n", ""},
		{"unknown key", "data_dir: /tmp/x\ncolour: blue\n", `unknown key "colour"`},
		{"bad trust domain", "trust_domain: 'Not A Domain'\n", "trust_domain"},
		{"bad node", "node_id: Hub_1\n", "node_id"},
		{"bad listen", "api:\n  listen: nowhere\n", `api.listen: "nowhere" is not host:port`},
		{"listen port not a number", "api:\n  listen: 127.0.0.1:notaport\n", `api.listen: "127.0.0.1:notaport": the port "notaport" is not a number from 1 to 65535`},
		{"listen port too large", "raft:\n  listen: 127.0.0.1:65536\n  advertise: 127.0.0.1:8300\n", `raft.listen: "127.0.0.1:65536": the port "65536" is not`},
		{"telemetry listen bad host", "telemetry:\n  listen: bad host:9443\n", `telemetry.listen: "bad host:9443": the host "bad host" is neither`},
		{"portal listen without port", "portal:\n  listen: 127.0.0.1\n", `portal.listen: "127.0.0.1" is not host:port`},
		{"listen on every interface", "api:\n  listen: \":8443\"\n  public_url: https://hub.example:8443\n", ""},
		{"listen on a host name", "api:\n  listen: localhost:8443\n", ""},
		{"short svid", "ca:\n  svid_ttl: 1s\n", "ca.svid_ttl"},
		{"bad duration", "ca:\n  svid_ttl: tomorrow\n", `ca.svid_ttl: want a duration such as 90s, 10m or 1h, got "tomorrow" (line 2)`},
		// A value of the wrong type is reported by its key, not only by its line.
		{"duration as a list", "raft: {hold_timeout: [1]}\n", "raft.hold_timeout: want a duration such as 90s, 10m or 1h, got a sequence (line 1)"},
		{"section as a list", "api: [1, 2]\n", "api: want a mapping, got a sequence (line 1)"},
		{"bool as a string", "raft:\n  bootstrap: maybe\n", `raft.bootstrap: want true or false, got "maybe" (line 2)`},
		{"nested unknown key", "raft:\n  hold_timout: 1s\n", `raft: unknown key "hold_timout" (line 2)`},
		{"token ttls", "tokens:\n  default_ttl: 9h\n  max_ttl: 1h\n", "tokens.default_ttl"},
		{"bad log", "log:\n  format: xml\n", "log.format"},
		{"unspecified advertise", "raft:\n  listen: 0.0.0.0:8300\n", "raft.advertise"},
		{"bad url", "api:\n  public_url: http://x\n", "api.public_url"},
		{"liveness off", "directory:\n  down_after: 0s\n", ""},
		{"short down_after", "directory:\n  down_after: 1s\n", "directory.down_after: 1s is shorter than 3s (0 turns connector liveness off)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "hub.yaml")
			os.WriteFile(p, []byte(tt.yaml), 0o644)
			c, err := Load(p)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.API.PublicURL == "" || c.Raft.Advertise == "" {
					t.Fatal("derived values not filled")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestExampleConfigLoads(t *testing.T) {
	p := filepath.Join("..", "..", "..", "conf", "hub.yaml")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("conf/hub.yaml missing: %v", err)
	}
	if _, err := Load(p); err != nil {
		t.Fatal(err)
	}
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte("data_dir: /tmp/x\n"))
	if b, err := os.ReadFile(filepath.Join("..", "..", "..", "conf", "hub.yaml")); err == nil {
		f.Add(b)
	}
	f.Add([]byte("api: [1, 2]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "hub.yaml")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := Load(p)
		if err == nil && c.Validate() != nil {
			t.Fatal("Load accepted a config that does not validate")
		}
	})
}

// TestExampleConfigDefaults checks that every value conf/hub.yaml shows is the default, unless the file marks
// it as an example.
func TestExampleConfigDefaults(t *testing.T) {
	configfiletest.CheckDefaults(t, filepath.Join("..", "..", "..", "conf", "hub.yaml"), Default())
}
