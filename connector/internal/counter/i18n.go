package counter

import (
	"fmt"
	"html/template"
	"net/http"

	"golang.org/x/text/language"
)

// The page speaks Traditional Chinese and English: every word comes from the catalogue in messages.go
// through the template function t, and a test fails on a key either language lacks.
const (
	langZh = "zh-TW"
	langEn = "en"
)

var langs = []string{langZh, langEn}

var matcher = language.NewMatcher([]language.Tag{language.MustParse("zh-Hant-TW"), language.English})

// requestLang is the language chosen on the page (a cookie), or else the browser's, or else Chinese.
func requestLang(r *http.Request, chosen string) string {
	if chosen == langZh || chosen == langEn {
		return chosen
	}
	tags, _, _ := language.ParseAcceptLanguage(r.Header.Get("Accept-Language"))
	if len(tags) == 0 {
		return langZh
	}
	_, i, conf := matcher.Match(tags...)
	if conf == language.No {
		return langZh
	}
	return langs[i]
}

// tr looks a message up; a missing key shows itself rather than nothing.
func tr(lang, key string, args ...any) string {
	m, ok := messages[key]
	if !ok {
		return "!" + key + "!"
	}
	s := m.en
	if lang == langZh {
		s = m.zh
	}
	if len(args) > 0 {
		return fmt.Sprintf(s, args...)
	}
	return s
}

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
