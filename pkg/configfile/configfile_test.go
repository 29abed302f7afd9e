package configfile

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

type sample struct {
	Name  string        `yaml:"name"`
	TTL   time.Duration `yaml:"ttl"`
	Inner struct {
		Port   int      `yaml:"port"`
		Listen string   `yaml:"listen"`
		On     bool     `yaml:"on"`
		Hosts  []string `yaml:"hosts"`
	} `yaml:"inner"`
	Sets map[string]struct {
		Max int64 `yaml:"max"`
	} `yaml:"sets"`
}

func TestDecode(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string
		check   func(sample) bool
	}{
		{"", "", func(s sample) bool { return s.Name == "default" }},
		{"name: x\nttl: 90s\ninner:\n  port: 3\n", "", func(s sample) bool { return s.Name == "x" && s.TTL == 90*time.Second && s.Inner.Port == 3 }},
		{"nme: x\n", `unknown key "nme"`, nil},
		{"inner:\n  prt: 3\n", `unknown key "prt"`, nil},
		{"name: x\n---\nname: y\n", "more than one YAML document", nil},
		// Every error names its key, with its whole path, and keeps the line.
		{"nme: x\n", `unknown key "nme" (line 1)`, nil},
		{"inner:\n  prt: 3\n", `inner: unknown key "prt" (line 2)`, nil},
		{"ttl: soon\n", `ttl: want a duration such as 90s, 10m or 1h, got "soon" (line 1)`, nil},
		{"name: x\ninner:\n  listen: [1, 2]\n", "inner.listen: want a string, got a sequence (line 3)", nil},
		{"inner: {listen: {a: b}}\n", "inner.listen: want a string, got a mapping (line 1)", nil},
		{"inner:\n  port: eighty\n", `inner.port: want a whole number, got "eighty" (line 2)`, nil},
		{"inner:\n  on: maybe\n", `inner.on: want true or false, got "maybe" (line 2)`, nil},
		{"inner:\n  hosts: [a, [b]]\n", "inner.hosts[1]: want a string, got a sequence (line 2)", nil},
		{"inner:\n  hosts: a\n", `inner.hosts: want a sequence, got "a" (line 2)`, nil},
		{"inner: 5\n", "inner: want a mapping, got 5 (line 1)", nil},
		{"sets: 5\n", "sets: want a mapping, got 5 (line 1)", nil},
		{"sets:\n  a:\n    max: 1\n  b:\n    max: [1]\n", "sets.b.max: want a whole number, got a sequence (line 5)", nil},
		{"sets:\n  a:\n    mx: 1\n", `sets.a: unknown key "mx" (line 3)`, nil},
		{"- 1\n", "want a mapping, got a sequence (line 1)", nil},
		{"ttl: [1]\ninner:\n  port: x\ncolour: red\n",
			`ttl: want a duration such as 90s, 10m or 1h, got a sequence (line 1); inner.port: want a whole number, got "x" (line 3); unknown key "colour" (line 4)`, nil},
		{"inner: &a {port: 1}\nsets: {x: *a}\n", `sets.x: unknown key "port" (line 1)`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			s := sample{Name: "default"}
			err := Decode([]byte(tt.in), &s)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !tt.check(s) {
				t.Fatalf("got %+v, %v", s, err)
			}
		})
	}
}

func TestCheckListen(t *testing.T) {
	tests := []struct{ addr, wantErr string }{
		{"127.0.0.1:7443", ""},
		{"0.0.0.0:7443", ""},
		{":7443", ""}, // every interface
		{"[::1]:8443", ""},
		{"[fe80::1%eth0]:8443", ""},
		{"localhost:9444", ""},
		{"hub-1.mydata.example:8443", ""},
		{"127.0.0.1:65535", ""},
		{"127.0.0.1:0", ""}, // a free port, as tests bind
		{"127.0.0.1:notaport", `the port "notaport" is not a number from 1 to 65535`},
		{"127.0.0.1:65536", `the port "65536" is not a number from 1 to 65535`},
		{"127.0.0.1:-1", `the port "-1" is not a number`},
		{"127.0.0.1:+80", `the port "+80" is not a number`},
		{"127.0.0.1:", `the port "" is not a number`},
		{"nowhere", `"nowhere" is not host:port`},
		{"127.0.0.1", "is not host:port"},
		{"", "is not host:port"},
		{"bad host:80", `the host "bad host" is neither an IP address nor a host name`},
		{"-x:80", `the host "-x" is neither`},
		{"a..b:80", `the host "a..b" is neither`},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			err := CheckListen("quic.listen", tt.addr)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "quic.listen: ") {
				t.Fatalf("err = %v, want quic.listen: …%s", err, tt.wantErr)
			}
		})
	}
}

// FuzzDecode checks that naming the keys never panics and never turns a bad file into a good one.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{"name: x\n", "inner: {listen: [1, 2]}\n", "sets: {a: {max: x}}\n", "- 1\n", "inner: &a {port: 1}\nsets: {x: *a}\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var plain sample
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		plainErr := dec.Decode(&plain)
		var s sample
		err := Decode(data, &s)
		if plainErr != nil && !errors.Is(plainErr, io.EOF) && err == nil {
			t.Fatalf("Decode accepted what yaml.v3 refused: %v", plainErr)
		}
	})
}
