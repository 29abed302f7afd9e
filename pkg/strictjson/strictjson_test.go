package strictjson

import (
	"strings"
	"testing"
)

func TestUnmarshal(t *testing.T) {
	type T struct {
		A int `json:"a"`
	}
	tests := []struct{ in, err string }{
		{`{"a":1}`, ""},
		{`{"a":1,"b":2}`, "unknown field"},
		{`{"a":1}{}`, "trailing"},
		{`{"a":"x"}`, "invalid JSON"},
		{`{"a":` + strings.Repeat("1", 100) + `}`, "larger than"},
	}
	for _, tt := range tests {
		var v T
		err := Unmarshal([]byte(tt.in), 64, &v)
		if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("%s: %v, want %q", tt.in, err, tt.err)
		}
	}
	var v T
	if err := Decode(strings.NewReader(`{"a":2}`), 64, &v); err != nil || v.A != 2 {
		t.Fatalf("Decode: %v %v", v, err)
	}
}
