package counter

import (
	"bytes"
	"io/fs"
	"os"
	"regexp"
	"strings"
	"testing"
)

func TestViewKind(t *testing.T) {
	for ct, want := range map[string]string{
		"application/json": viewJSON, "application/json; charset=utf-8": viewJSON, "application/ld+json": viewJSON,
		"text/csv": viewCSV, "text/csv; charset=utf-8": viewCSV, "application/pdf": viewPDF, "text/plain": viewText,
		"text/html": viewOther, "application/xml": viewOther, "": viewOther, "garbage;;": viewOther,
	} {
		if got := viewKind(ct); got != want {
			t.Errorf("%q: %s, want %s", ct, got, want)
		}
	}
}

// render lays a node out as the page would, for comparing.
func renderNode(t *testing.T, n *node) string {
	t.Helper()
	var b bytes.Buffer
	tmpl, err := parseTemplates()
	if err != nil {
		t.Fatal(err)
	}
	if err := tmpl[langEn].ExecuteTemplate(&b, "node", n); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestRenderJSON(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"object", `{"b":"2","a":1}`, `<dl><dt>a</dt><dd>1</dd><dt>b</dt><dd>2</dd></dl>`},
		{"numbers keep their digits", `{"n":12345678901234567890,"f":1.50}`, `<dl><dt>f</dt><dd>1.50</dd><dt>n</dt><dd>12345678901234567890</dd></dl>`},
		{"array of objects is a table", `[{"y":2024,"v":"a"},{"y":2025,"w":true}]`,
			`<div class="scroll" tabindex="0"><table><thead><tr><th scope="col">v</th><th scope="col">y</th><th scope="col">w</th></tr></thead><tbody><tr><td>a</td><td>2024</td><td><span class="null">—</span></td></tr><tr><td><span class="null">—</span></td><td>2025</td><td>true</td></tr></tbody></table></div>`},
		{"array of scalars is a list", `["a",null,false]`, `<ul><li>a</li><li><span class="null">—</span></li><li>false</li></ul>`},
		{"nested", `{"head":{"name":"王"}}`, `<dl><dt>head</dt><dd><dl><dt>name</dt><dd>王</dd></dl></dd></dl>`},
		{"escaped", `{"<k>":"<script>x</script>"}`, `<dl><dt>&lt;k&gt;</dt><dd>&lt;script&gt;x&lt;/script&gt;</dd></dl>`},
		{"empty object and array", `{"a":{},"b":[]}`, `<dl><dt>a</dt><dd><span class="null">—</span></dd><dt>b</dt><dd><span class="null">—</span></dd></dl>`},
		{"scalar document", `"just text"`, `just text`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := renderJSON([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if got := renderNode(t, n); got != tt.want {
				t.Fatalf("\n got %s\nwant %s", got, tt.want)
			}
		})
	}
	for _, bad := range []string{`{"a":`, `{} {}`, `nope`, ``} {
		if _, err := renderJSON([]byte(bad)); err == nil {
			t.Errorf("%q read as JSON", bad)
		}
	}
	// Past maxDepth the rest shows as indented JSON, not as ever deeper lists.
	deep := strings.Repeat(`{"a":`, maxDepth+2) + `1` + strings.Repeat(`}`, maxDepth+2)
	n, err := renderJSON([]byte(deep))
	if err != nil {
		t.Fatal(err)
	}
	if got := renderNode(t, n); !strings.Contains(got, "<pre>") || strings.Count(got, "<dl>") != maxDepth {
		t.Fatalf("deep: %s", got)
	}
}

func TestRenderCSV(t *testing.T) {
	tests := []struct {
		name, in  string
		head      []string
		rows      int
		wantErr   bool
		truncated int
	}{
		{"plain", "a,b\n1,2\n3,4\n", []string{"a", "b"}, 2, false, 0},
		{"byte order mark and quotes", "\xef\xbb\xbfyear,\"in,come\"\n2025,\"1,000\"\n", []string{"year", "in,come"}, 1, false, 0},
		{"ragged rows", "a,b,c\n1\n1,2,3,4\n", []string{"a", "b", "c"}, 2, false, 0},
		{"CRLF", "a\r\n1\r\n", []string{"a"}, 1, false, 0},
		{"not UTF-8 (Big5)", "\xa6\x7e\xa4\xe5\n", nil, 0, true, 0},
		{"many rows", "n\n" + strings.Repeat("1\n", maxCSVRows+3), []string{"n"}, maxCSVRows, false, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := renderCSV([]byte(tt.in))
			if tt.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got.Head, "|") != strings.Join(tt.head, "|") || len(got.Rows) != tt.rows || got.Truncated != tt.truncated {
				t.Fatalf("%+v", got)
			}
		})
	}
}

// TestMessages: every key the templates and the code use exists in both languages, and none is empty.
func TestMessages(t *testing.T) {
	for k, m := range messages {
		if strings.TrimSpace(m[0]) == "" || strings.TrimSpace(m[1]) == "" {
			t.Errorf("%s: a language is missing", k)
		}
		if strings.Count(m[0], "%") != strings.Count(m[1], "%") {
			t.Errorf("%s: the languages take different arguments", k)
		}
	}
	used := map[string]bool{}
	tkey := regexp.MustCompile(`\bt "([a-z_.]+)"`)
	fs.WalkDir(templateFS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := fs.ReadFile(templateFS, p)
		for _, m := range tkey.FindAllStringSubmatch(string(b), -1) {
			used[m[1]] = true
		}
		return nil
	})
	for _, f := range []string{"handlers.go", "counter.go"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`(?:message\(|Title: |sessionPage\(sess, )"([a-z_.]+)"`).FindAllStringSubmatch(string(b), -1) {
			used[m[1]] = true
		}
	}
	for _, st := range []string{"delivered", "no_record", "unavailable", "pending", "fetching", "failed"} {
		used["status."+st] = true
	}
	if len(used) < 30 {
		t.Fatalf("found only %d keys in use: the patterns are stale", len(used))
	}
	for k := range used {
		if _, ok := messages[k]; !ok {
			t.Errorf("%s is used but not in the catalogue", k)
		}
	}
}
