package portal

import (
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template/parse"
	"unicode"
)

// TestEveryWordTranslated walks every template and every Go file of the package: each message key used
// must be in the catalogue in both languages with the same verbs, and no word may sit in a template
// outside a message (only markup, punctuation and numbers may).
func TestEveryWordTranslated(t *testing.T) {
	used := map[string]string{} // key -> where
	// Template text: actions become a placeholder; what is left, without tags, must hold no letters.
	tagOrEntity := regexp.MustCompile(`<[^>]*>|&[a-z]+;`)
	files, _ := fs.Glob(templateFS, "templates/*.html")
	for _, name := range files {
		src, _ := fs.ReadFile(templateFS, name)
		trees, err := parse.Parse(name, string(src), "{{", "}}", funcNames)
		if err != nil {
			t.Fatal(err)
		}
		for _, tree := range trees {
			var text strings.Builder
			walk(tree.Root, func(n parse.Node) {
				switch n := n.(type) {
				case *parse.TextNode:
					text.Write(n.Text)
				case *parse.ActionNode:
					text.WriteString("\x00")
				case *parse.CommandNode:
					if id, ok := n.Args[0].(*parse.IdentifierNode); ok && id.Ident == "t" && len(n.Args) > 1 {
						if s, ok := n.Args[1].(*parse.StringNode); ok {
							used[s.Text] = name
						}
					}
				}
			})
			rest := tagOrEntity.ReplaceAllString(text.String(), " ")
			// The language switch names each language in itself, on purpose.
			rest = strings.NewReplacer("中文", "", "English", "").Replace(rest)
			for _, r := range rest {
				if unicode.IsLetter(r) {
					t.Errorf("%s (%s): words outside a message: %q", name, tree.Name, strings.Join(strings.Fields(rest), " "))
					break
				}
			}
		}
	}
	// Go code: every string literal shaped like a key, under a prefix the catalogue uses.
	prefixes := map[string]bool{}
	for k := range messages {
		p, _, _ := strings.Cut(k, ".")
		prefixes[p] = true
	}
	keyInGo := regexp.MustCompile(`"([a-z]+(?:\.[a-z_]+)+)"`)
	gofiles, _ := filepath.Glob("*.go")
	for _, f := range gofiles {
		if strings.HasSuffix(f, "_test.go") || f == "messages.go" {
			continue
		}
		src, _ := os.ReadFile(f)
		for _, m := range keyInGo.FindAllStringSubmatch(string(src), -1) {
			p, _, _ := strings.Cut(m[1], ".")
			if prefixes[p] && !strings.HasSuffix(m[1], ".html") {
				used[m[1]] = f
			}
		}
	}
	for _, tbl := range []map[string]string{outcomeKeys, stateKeys} {
		for _, k := range tbl {
			used[k] = "pages.go"
		}
	}
	if len(used) < 100 {
		t.Fatalf("found only %d keys in use: the scan is broken", len(used))
	}
	verbs := regexp.MustCompile(`%[-+# 0-9.]*[a-zA-Z]`)
	for k, where := range used {
		m, ok := messages[k]
		if !ok {
			t.Errorf("%s uses %q, which the catalogue lacks", where, k)
			continue
		}
		if strings.TrimSpace(m[0]) == "" || strings.TrimSpace(m[1]) == "" {
			t.Errorf("%q lacks a language: %+v", k, m)
		}
		if !slices.Equal(verbs.FindAllString(m[0], -1), verbs.FindAllString(m[1], -1)) {
			t.Errorf("%q: the verbs differ between %q and %q", k, m[0], m[1])
		}
		if !strings.ContainsFunc(m[0], func(r rune) bool { return unicode.Is(unicode.Han, r) }) && k != "brand.short" && k != "list.sep" {
			t.Errorf("%q: the Chinese text %q has no Chinese", k, m[0])
		}
	}
	for k := range messages {
		if _, ok := used[k]; !ok {
			t.Errorf("%q is in the catalogue but nothing uses it", k)
		}
	}
}

// funcNames are the portal's template functions and text/template's built-in ones, for the parser.
var funcNames = map[string]any{"t": 1, "tm": 1, "level": 1, "fmtTime": 1, "pick": 1, "eq": 1, "ne": 1, "lt": 1, "le": 1, "gt": 1, "ge": 1,
	"not": 1, "and": 1, "or": 1, "len": 1, "index": 1, "print": 1, "printf": 1, "slice": 1, "html": 1, "urlquery": 1, "js": 1, "call": 1}

func walk(n parse.Node, f func(parse.Node)) {
	if n == nil {
		return
	}
	f(n)
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			walk(c, f)
		}
	case *parse.ActionNode:
		walk(n.Pipe, f)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for _, c := range n.Cmds {
			walk(c, f)
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			walk(a, f)
		}
	case *parse.IfNode:
		walk(n.Pipe, f)
		walk(n.List, f)
		walk(n.ElseList, f)
	case *parse.RangeNode:
		walk(n.Pipe, f)
		walk(n.List, f)
		walk(n.ElseList, f)
	case *parse.WithNode:
		walk(n.Pipe, f)
		walk(n.List, f)
		walk(n.ElseList, f)
	case *parse.TemplateNode:
		walk(n.Pipe, f)
	}
}

// Every page in both languages: the language follows Accept-Language, then the citizen's choice.
func TestPagesInBothLanguages(t *testing.T) {
	w := newWorld(t, "http://portal.test")
	b := w.browser()
	b.login(alice, "nhi-card", "/history")
	for _, path := range []string{"/", "/catalogue", "/history", "/account", "/login", authorizeURL("moi.household", nil), "/consents/none/revoke"} {
		for _, tc := range []struct{ accept, lang, word string }{
			{"en-US,en;q=0.9", "en", "Log out"},
			{"zh-TW,zh;q=0.9", "zh-TW", "登出"},
			{"fr", "zh-TW", "登出"},
			{"", "zh-TW", "登出"},
		} {
			b.lang = tc.accept
			r := b.get(path)
			if !strings.Contains(r.body, `<html lang="`+tc.lang+`">`) || !strings.Contains(r.body, tc.word) || strings.Contains(r.body, "!") && strings.Contains(r.body, "!"+".") {
				t.Errorf("%s with Accept-Language %q: %d, want %s", path, tc.accept, r.status, tc.lang)
			}
			if strings.Contains(r.body, `>!`) {
				t.Errorf("%s: a missing message shows", path)
			}
		}
	}
	// The choice is remembered over the browser's.
	b.lang = "zh-TW"
	page := b.get("/history")
	f := form(page.body, "/lang")
	f.Set("lang", "en")
	r := b.post("/lang", f)
	if r.status != http.StatusSeeOther || r.location != "/history" {
		t.Fatalf("switch language: %d %q", r.status, r.location)
	}
	if r := b.get("/history"); !strings.Contains(r.body, `<html lang="en">`) {
		t.Error("the chosen language is not remembered")
	}
	f.Set("lang", "fr")
	if r := b.post("/lang", f); r.status != http.StatusBadRequest {
		t.Errorf("an unknown language: %d", r.status)
	}
}
