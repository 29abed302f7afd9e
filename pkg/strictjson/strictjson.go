// Package strictjson decodes JSON from untrusted parties strictly: a size limit checked before parsing, no
// unknown fields, no trailing data.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Decode reads one JSON value of at most max bytes from r into v.
func Decode(r io.Reader, max int64, v any) error {
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	return Unmarshal(data, max, v)
}

// Unmarshal decodes data, of at most max bytes, into v.
func Unmarshal(data []byte, max int64, v any) error {
	if int64(len(data)) > max {
		return fmt.Errorf("body is larger than %d bytes", max)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	if dec.More() {
		return errors.New("invalid JSON: trailing data after the object")
	}
	return nil
}
