// Package configfile decodes the YAML configuration files of both binaries strictly: an unknown key, a value
// of the wrong type or a second document is an error that names the key and its line.
package configfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
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
