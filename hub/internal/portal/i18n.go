package portal

import (
	"fmt"
	"net/http"
	"time"

	"golang.org/x/text/language"
)

// The portal speaks Traditional Chinese and English; every word on a page comes from the catalogue in
// messages.go through the template function t, and a test fails on a key either language lacks.
const (
	langZh = "zh-TW"
	langEn = "en"
)

var langs = []string{langZh, langEn}

// matcher prefers Chinese: a browser that asks for neither language gets the citizen's national one.
var matcher = language.NewMatcher([]language.Tag{language.MustParse("zh-Hant-TW"), language.English})

const langCookie = "mydata_lang"

// requestLang is the language the citizen chose (remembered in a cookie), or else the one their browser
// asks for.
func requestLang(r *http.Request) string {
	if c, err := r.Cookie(langCookie); err == nil && (c.Value == langZh || c.Value == langEn) {
		return c.Value
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

// tr looks a message up; args fill its verbs. A missing key shows itself, loudly, rather than nothing:
// the catalogue test keeps that from reaching a citizen.
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

// msg is a message to show later in the citizen's language: a key and its arguments.
type msg struct {
	Key  string
	Args []any
}

func message(key string, args ...any) msg { return msg{key, args} }

// fmtTime writes a time in the portal's zone with the zone's name, as the history must.
func fmtTime(loc *time.Location) func(time.Time) string {
	return func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.In(loc).Format("2006-01-02 15:04:05 UTC-07:00")
	}
}
