package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
		{"bad listen", "api:\n  listen: nowhere\n", "api.listen"},
		{"short svid", "ca:\n  svid_ttl: 1s\n", "ca.svid_ttl"},
		{"bad duration", "ca:\n  svid_ttl: tomorrow\n", "cannot unmarshal"},
		{"token ttls", "tokens:\n  default_ttl: 9h\n  max_ttl: 1h\n", "tokens.default_ttl"},
		{"bad log", "log:\n  format: xml\n", "log.format"},
		{"unspecified advertise", "raft:\n  listen: 0.0.0.0:8300\n", "raft.advertise"},
		{"bad url", "api:\n  public_url: http://x\n", "api.public_url"},
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
