// Package configfiletest checks the example configuration files in conf/ against the binaries' defaults.
package configfiletest

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// Marker is the comment that marks a value of an example file as an illustration rather than the default,
// at the end of the value's line (or of its key's line, for a whole section).
const Marker = "# example, not the default"

// Difference is a value of an example file that is not the default, though not marked as an example.
type Difference struct {
	Key  string
	Line int
	// File is the value as written; Default the default, as YAML.
	File, Default string
}

func (d Difference) String() string {
	return fmt.Sprintf("%s (line %d): the file shows %s, the default is %s; fix the value, or end its line with %q",
		d.Key, d.Line, d.File, d.Default, Marker)
}

// Differences decodes each value of the YAML document data that is not marked with Marker, alone, over
// defaults (a struct, not a pointer), and reports those that change it. Every key of the file is checked,
// whether or not it is a leaf, since every value must be either the default or marked.
func Differences(data []byte, defaults any) ([]Difference, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	want, err := yaml.Marshal(defaults)
	if err != nil {
		return nil, err
	}
	var diffs []Difference
	var walk func(n *yaml.Node, path []string) error
	walk = func(n *yaml.Node, path []string) error {
		if n.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if marked(k) || marked(v) {
				continue
			}
			p := append(append([]string(nil), path...), k.Value)
			if v.Kind == yaml.MappingNode && len(v.Content) > 0 {
				if err := walk(v, p); err != nil {
					return err
				}
				continue
			}
			got := reflect.New(reflect.TypeOf(defaults))
			got.Elem().Set(reflect.ValueOf(defaults))
			if err := nest(p, v).Decode(got.Interface()); err != nil {
				return fmt.Errorf("%s (line %d): %w", strings.Join(p, "."), v.Line, err)
			}
			gotYAML, err := yaml.Marshal(got.Elem().Interface())
			if err != nil {
				return err
			}
			if !bytes.Equal(gotYAML, want) {
				file, _ := yaml.Marshal(v)
				diffs = append(diffs, Difference{Key: strings.Join(p, "."), Line: v.Line,
					File: strings.TrimSpace(string(file)), Default: lookup(want, p)})
			}
		}
		return nil
	}
	return diffs, walk(doc.Content[0], nil)
}

func marked(n *yaml.Node) bool {
	return strings.HasPrefix(strings.TrimSpace(n.LineComment), Marker)
}

// nest is the document that holds v under the keys of path.
func nest(path []string, v *yaml.Node) *yaml.Node {
	n := v
	for i := len(path) - 1; i >= 0; i-- {
		n = &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: path[i]}, n}}
	}
	return n
}

// lookup is the value under path in the YAML document y, as YAML.
func lookup(y []byte, path []string) string {
	var m map[string]any
	if err := yaml.Unmarshal(y, &m); err != nil {
		return "?"
	}
	var cur any = m
	for _, k := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return "nothing"
		}
		cur = mm[k]
	}
	out, _ := yaml.Marshal(cur)
	return strings.TrimSpace(string(out))
}

// Missing lists the keys of defaults, by their paths ("quic.listen"), that the YAML document data does not
// have: an example file must show every key the binary takes. A section the file has as a whole (marked
// or not, e.g. a map of examples) counts for the keys under it only if the default has none of its own.
func Missing(data []byte, defaults any) ([]string, error) {
	var file yaml.Node
	if err := yaml.Unmarshal(data, &file); err != nil {
		return nil, err
	}
	want, err := yaml.Marshal(defaults)
	if err != nil {
		return nil, err
	}
	var def yaml.Node
	if err := yaml.Unmarshal(want, &def); err != nil {
		return nil, err
	}
	var fileRoot *yaml.Node
	if len(file.Content) > 0 {
		fileRoot = file.Content[0]
	}
	var missing []string
	var walk func(d, f *yaml.Node, path []string)
	walk = func(d, f *yaml.Node, path []string) {
		for i := 0; i+1 < len(d.Content); i += 2 {
			k, v := d.Content[i].Value, d.Content[i+1]
			p := append(append([]string(nil), path...), k)
			fv := child(f, k)
			switch {
			case fv == nil:
				missing = append(missing, strings.Join(p, "."))
			case v.Kind == yaml.MappingNode && len(v.Content) > 0:
				walk(v, fv, p)
			}
		}
	}
	if len(def.Content) > 0 {
		walk(def.Content[0], fileRoot, nil)
	}
	return missing, nil
}

// child is the value under key in the mapping n, or nil.
func child(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// CheckDefaults fails t for every value of the example file at path that differs from defaults and is not
// marked with Marker, for every key of defaults the file does not show, and if the file does not explain
// the convention.
func CheckDefaults(t testing.TB, path string, defaults any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(Marker)) {
		t.Errorf("%s does not say how it marks a value that is not the default (%q)", path, Marker)
	}
	diffs, err := Differences(data, defaults)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for _, d := range diffs {
		t.Errorf("%s: %s", path, d)
	}
	missing, err := Missing(data, defaults)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for _, k := range missing {
		t.Errorf("%s: the binary takes %s, which the file does not show (with its default, or an example marked %q)", path, k, Marker)
	}
}
