// Package bilingual is what the federation's web pages share to speak Traditional Chinese and English: which
// of the two a request gets, and a catalogue of messages in both.
package bilingual

import (
	"fmt"

	"golang.org/x/text/language"
)

// The two languages, as pages and cookies name them.
const (
	Zh = "zh-TW"
	En = "en"
)

// Langs are both, Chinese first.
var Langs = []string{Zh, En}

// matcher prefers Chinese: a browser that asks for neither language gets the citizens' national one.
var matcher = language.NewMatcher([]language.Tag{language.MustParse("zh-Hant-TW"), language.English})

// Pick is the language a page speaks: the one the person chose (a cookie's value), else the one their
// browser asks for (an Accept-Language header), else Chinese.
func Pick(chosen, acceptLanguage string) string {
	if chosen == Zh || chosen == En {
		return chosen
	}
	tags, _, _ := language.ParseAcceptLanguage(acceptLanguage)
	if len(tags) == 0 {
		return Zh
	}
	_, i, conf := matcher.Match(tags...)
	if conf == language.No {
		return Zh
	}
	return Langs[i]
}

// Text is one message in both languages: Chinese first, then English. Verbs (%s, %d) take the same
// arguments in the same order in both. An array, so a catalogue reads as pairs of strings.
type Text [2]string

// Catalogue is every message of a page set, by key.
type Catalogue map[string]Text

// T is the message in lang with args filled in. A missing key shows itself ("!key!") rather than nothing:
// each package's catalogue test keeps that from reaching a page.
func (c Catalogue) T(lang, key string, args ...any) string {
	m, ok := c[key]
	if !ok {
		return "!" + key + "!"
	}
	s := m[1]
	if lang == Zh {
		s = m[0]
	}
	if len(args) > 0 {
		return fmt.Sprintf(s, args...)
	}
	return s
}
