package portal

import (
	"net/http"
	"time"

	"github.com/mydatafed/mydata/pkg/bilingual"
)

// The portal speaks Traditional Chinese and English; every word on a page comes from the catalogue in
// messages.go through the template function t, and a test fails on a key either language lacks.
const (
	langZh = bilingual.Zh
	langEn = bilingual.En
)

var langs = bilingual.Langs

const langCookie = "mydata_lang"

// requestLang is the language the citizen chose (remembered in a cookie, __Host- prefixed under HTTPS), or
// else the one their browser asks for.
func requestLang(r *http.Request) string {
	chosen := ""
	for _, name := range []string{"__Host-" + langCookie, langCookie} {
		if c, err := r.Cookie(name); err == nil {
			chosen = c.Value
			break
		}
	}
	return bilingual.Pick(chosen, r.Header.Get("Accept-Language"))
}

// tr looks a message up in the portal's catalogue; args fill its verbs.
func tr(lang, key string, args ...any) string { return messages.T(lang, key, args...) }

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
