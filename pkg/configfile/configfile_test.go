package configfile

import (
	"strings"
	"testing"
	"time"
)

type sample struct {
	Name  string        `yaml:"name"`
	TTL   time.Duration `yaml:"ttl"`
	Inner struct {
		Port int `yaml:"port"`
	} `yaml:"inner"`
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
		{"ttl: soon\n", "cannot unmarshal", nil},
		{"name: x\n---\nname: y\n", "more than one YAML document", nil},
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
