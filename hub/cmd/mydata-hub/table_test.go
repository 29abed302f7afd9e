package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

func TestDisplayWidth(t *testing.T) {
	for _, c := range []struct {
		s    string
		want int
	}{
		{"moi", 3},
		{"內政部", 6},
		{"財政部財政資訊中心", 18},
		{"Ｆｕｌｌ", 8}, // fullwidth Latin
		{"ｶﾅ", 2},   // halfwidth katakana
		{"e\u0301", 1},
		{"示範銀行 Demo", 13},
		{"", 0},
	} {
		if got := displayWidth(c.s); got != c.want {
			t.Errorf("displayWidth(%q) = %d, want %d", c.s, got, c.want)
		}
	}
}

// TestTableAlignsChinese: the column after a Chinese name starts at the same terminal column on every
// line, which text/tabwriter (counting runes) got wrong.
func TestTableAlignsChinese(t *testing.T) {
	var out bytes.Buffer
	w := newTable(&out)
	fmt.Fprintln(w, "CODE\tNAME (ZH)\tNAME (EN)")
	fmt.Fprintln(w, "moi\t內政部\tMinistry of the Interior")
	fmt.Fprintln(w, "fia\t財政部財政資訊中心\tFiscal Information Agency")
	fmt.Fprintln(w, "demobank\t示範銀行 Demo\tDemo Bank")
	fmt.Fprintln(w, "(a line without cells)")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 5 || lines[4] != "(a line without cells)" {
		t.Fatalf("%q", out.String())
	}
	var cols []int
	for _, l := range lines[:4] {
		i := strings.LastIndex(l, "  ")
		cols = append(cols, displayWidth(l[:i+2]))
	}
	for i, c := range cols {
		if c != cols[0] {
			t.Fatalf("line %d: the last column starts at %d, line 0 at %d:\n%s", i, c, cols[0], out.String())
		}
	}
	if want := 8 + 2 + 18 + 2; cols[0] != want {
		t.Fatalf("last column at %d, want %d:\n%s", cols[0], want, out.String())
	}
}
