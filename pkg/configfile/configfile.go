// Package configfile decodes the YAML configuration files of both binaries strictly: an unknown key, a value
// of the wrong type or a second document is an error that names the key and its line.
package configfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// unknownField rewrites yaml.v3's "field x not found in type struct {...}", which names a Go type, into
// words about the file.
var unknownField = regexp.MustCompile(`field (\S+) not found in type [^\n]*`)

// MaxSize bounds a configuration file; anything larger is a mistake, not a config.
const MaxSize = 1 << 20

// Decode decodes data into dst, which holds the defaults on entry.
func Decode(data []byte, dst any) error {
	if len(data) > MaxSize {
		return fmt.Errorf("config is %d bytes, more than the %d allowed", len(data), MaxSize)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(dst); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file keeps the defaults
		}
		// yaml.v3 names the line and the Go type but not the key: find the keys by walking the document
		// along dst's type.
		var te *yaml.TypeError
		if errors.As(err, &te) {
			if msgs := explain(data, reflect.TypeOf(dst)); len(msgs) > 0 {
				return errors.New(strings.Join(msgs, "; "))
			}
		}
		return errors.New(unknownField.ReplaceAllString(err.Error(), `unknown key "$1"`))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("config holds more than one YAML document")
	}
	return nil
}

// Load reads and decodes the file at path into dst.
func Load(path string, dst any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	if err := Decode(data, dst); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// Min is a duration setting and the least value it may take.
type Min struct {
	Key          string
	Value, Least time.Duration
}

// CheckMinimums reports the first setting shorter than it may be, by key.
func CheckMinimums(ms []Min) error {
	for _, m := range ms {
		if m.Value < m.Least {
			return fmt.Errorf("%s: %s is shorter than the least allowed, %s", m.Key, m.Value, m.Least)
		}
	}
	return nil
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// explain decodes data again, one value at a time along t, and says of each value that does not decode
// which key it is under: "quic.listen: want a string, got a sequence (line 3)", or
// `quic: unknown key "lisen" (line 3)`.
func explain(data []byte, t reflect.Type) []string {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		return nil
	}
	w := walker{budget: 100000}
	w.walk(&doc, t, "")
	return w.msgs
}

// walker gathers the messages; budget bounds the nodes visited, aliases included.
type walker struct {
	msgs   []string
	budget int
}

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	if w.budget--; w.budget < 0 {
		return
	}
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) > 0 {
			w.walk(n.Content[0], t, path)
		}
		return
	}
	for t.Kind() == reflect.Pointer && !t.Implements(unmarshalerType) {
		t = t.Elem()
	}
	if !t.Implements(unmarshalerType) && !reflect.PointerTo(t).Implements(unmarshalerType) {
		switch {
		case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
			fields := yamlFields(t)
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				f, ok := fields[k.Value]
				if !ok {
					w.msgs = append(w.msgs, fmt.Sprintf("%sunknown key %q (line %d)", prefix(path), k.Value, k.Line))
					continue
				}
				w.walk(n.Content[i+1], f, join(path, k.Value))
			}
			return
		case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String && n.Kind == yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				w.walk(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value))
			}
			return
		case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
			for i, e := range n.Content {
				w.walk(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
			}
			return
		}
	}
	err := n.Decode(reflect.New(t).Interface())
	if err == nil {
		return
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		w.msgs = append(w.msgs, prefix(path)+err.Error())
		return
	}
	for _, e := range te.Errors {
		w.msgs = append(w.msgs, prefix(path)+describe(e, n.Line, t))
	}
}

// yamlFields maps the keys of struct t to their types, as yaml.v3 names them.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(","+opts+",", ",inline,") && f.Type.Kind() == reflect.Struct {
			for k, v := range yamlFields(f.Type) {
				m[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = f.Type
	}
	return m
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func prefix(path string) string {
	if path == "" {
		return ""
	}
	return path + ": "
}

// typeError is yaml.v3's message for a value of the wrong type.
var typeError = regexp.MustCompile("^line (\\d+): cannot unmarshal !!(\\w+)(?: `(.*)`)? into (.+)$")

// describe turns yaml.v3's "line 3: cannot unmarshal !!seq into string" into "want a string, got a
// sequence (line 3)". t is the type decoded into, which may hold the one the message names.
func describe(msg string, line int, t reflect.Type) string {
	m := typeError.FindStringSubmatch(msg)
	if m == nil {
		if l, rest, ok := strings.Cut(msg, ": "); ok && strings.HasPrefix(l, "line ") {
			return fmt.Sprintf("%s (%s)", rest, l)
		}
		return fmt.Sprintf("%s (line %d)", msg, line)
	}
	var got string
	switch m[2] {
	case "seq":
		got = "a sequence"
	case "map":
		got = "a mapping"
	case "str":
		got = strconv.Quote(m[3])
	default:
		got = m[3]
	}
	return fmt.Sprintf("want %s, got %s (line %s)", want(m[4], t), got, m[1])
}

// want says in words what a Go type named typ takes; t, if it has that name, helps with named types.
func want(typ string, t reflect.Type) string {
	if t.String() == typ {
		switch t.Kind() {
		case reflect.Struct, reflect.Map:
			return "a mapping"
		case reflect.Slice, reflect.Array:
			return "a sequence"
		}
	}
	switch {
	case typ == "string":
		return "a string"
	case typ == "bool":
		return "true or false"
	case typ == "time.Duration":
		return "a duration such as 90s, 10m or 1h"
	case strings.HasPrefix(typ, "int") || strings.HasPrefix(typ, "uint"):
		return "a whole number"
	case strings.HasPrefix(typ, "float"):
		return "a number"
	case strings.HasPrefix(typ, "[]"):
		return "a sequence"
	case strings.HasPrefix(typ, "map[") || strings.HasPrefix(typ, "struct"):
		return "a mapping"
	}
	return "a value of type " + typ
}

// hostName is a DNS name (underscores tolerated, as resolvers do).
var hostName = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$`)

// CheckListen checks the listen address addr of setting key before anything binds it: host:port, the host
// an IP address, a host name, or empty for every interface, and the port a number from 1 to 65535 (0, a
// free port chosen at bind, is let through for tests).
func CheckListen(key, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s: %q is not host:port", key, addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%s: %q: the port %q is not a number from 1 to 65535", key, addr, port)
	}
	if host == "" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err != nil && (len(host) > 253 || !hostName.MatchString(host)) {
		return fmt.Errorf("%s: %q: the host %q is neither an IP address nor a host name", key, addr, host)
	}
	return nil
}
