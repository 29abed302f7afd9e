package counter

import (
	"fmt"
	"html/template"
	"net/http"

	"github.com/mydatafed/mydata/pkg/bilingual"
)

// The page speaks Traditional Chinese and English: every word comes from the catalogue in messages.go
// through the template function t, and a test fails on a key either language lacks.
const (
	langZh = bilingual.Zh
	langEn = bilingual.En
)

var langs = bilingual.Langs

// requestLang is the language chosen on the page (a cookie), or else the browser's, or else Chinese.
func requestLang(r *http.Request, chosen string) string {
	return bilingual.Pick(chosen, r.Header.Get("Accept-Language"))
}

// tr looks a message up in the page's catalogue; a missing key shows itself rather than nothing.
func tr(lang, key string, args ...any) string { return messages.T(lang, key, args...) }

// msg is a message shown in the page's language: a key and its arguments.
type msg struct {
	Key  string
	Args []any
}

func message(key string, args ...any) *msg { return &msg{key, args} }

func parseTemplates() (map[string]*template.Template, error) {
	out := map[string]*template.Template{}
	for _, lang := range langs {
		funcs := template.FuncMap{
			"t":  func(key string, args ...any) string { return tr(lang, key, args...) },
			"tm": func(m *msg) string { return tr(lang, m.Key, m.Args...) },
			"other": func() string {
				if lang == langZh {
					return langEn
				}
				return langZh
			},
			"bytes": func(n int64) string { return fmt.Sprintf("%d", n) },
		}
		t, err := template.New("").Funcs(funcs).ParseFS(templateFS, "templates/*.html")
		if err != nil {
			return nil, err
		}
		out[lang] = t
	}
	return out, nil
}
