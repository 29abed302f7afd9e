package configfiletest

import (
	"strings"
	"testing"
	"time"
)

type sample struct {
	Name  string `yaml:"name"`
	Inner struct {
		Listen string        `yaml:"listen"`
		Wait   time.Duration `yaml:"wait"`
		Hosts  []string      `yaml:"hosts"`
	} `yaml:"inner"`
	Sets map[string]int `yaml:"sets"`
}

func TestDifferences(t *testing.T) {
	var def sample
	def.Name = "x"
	def.Inner.Listen = "127.0.0.1:1"
	def.Inner.Wait = time.Minute
	tests := []struct {
		name, yaml string
		want       []string // keys that differ
	}{
		{"all defaults", "name: x\ninner:\n  listen: 127.0.0.1:1\n  wait: 60s\n  hosts: []\n", nil},
		{"another spelling of a duration", "inner:\n  wait: 1m\n", nil},
		{"empty", "", nil},
		{"a value that is not the default", "name: y\ninner:\n  listen: 127.0.0.1:2\n", []string{"name", "inner.listen"}},
		{"marked", "name: y  " + Marker + "\ninner:\n  listen: 127.0.0.1:2 " + Marker + ", for an SP\n", nil},
		{"marked section", "sets:  " + Marker + "\n  a: 1\n", nil},
		{"unmarked section", "sets:\n  a: 1\n", []string{"sets.a"}},
		{"another comment is no marker", "name: y  # e.g. y\n", []string{"name"}},
		{"a list", "inner:\n  hosts: [a]\n", []string{"inner.hosts"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diffs, err := Differences([]byte(tt.yaml), def)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range diffs {
				got = append(got, d.Key)
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Fatalf("differences %v, want %v", diffs, tt.want)
			}
		})
	}
}

func TestDifferenceSaysWhatToDo(t *testing.T) {
	var def sample
	diffs, err := Differences([]byte("name: y\n"), def)
	if err != nil || len(diffs) != 1 {
		t.Fatal(diffs, err)
	}
	want := `name (line 1): the file shows y, the default is "";`
	if s := diffs[0].String(); !strings.Contains(s, want) || !strings.Contains(s, Marker) {
		t.Fatalf("%s, want %s… and the marker", s, want)
	}
}

func TestMissing(t *testing.T) {
	var def sample
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"every key", "name: x\ninner:\n  listen: a\n  wait: 1s\n  hosts: []\nsets: {}\n", nil},
		{"every key, some marked", "name: y  " + Marker + "\ninner:\n  listen: a\n  wait: 1s\n  hosts: []\nsets:  " + Marker + "\n  a: 1\n", nil},
		{"keys left out", "name: x\ninner:\n  listen: a\n", []string{"inner.wait", "inner.hosts", "sets"}},
		{"a section left out", "name: x\nsets: {}\n", []string{"inner"}},
		{"empty", "", []string{"name", "inner", "sets"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Missing([]byte(tt.yaml), def)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Fatalf("missing %v, want %v", got, tt.want)
			}
		})
	}
}
