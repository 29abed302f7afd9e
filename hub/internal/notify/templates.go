package notify

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"text/template"
	"time"
	"unicode/utf8"
)

// Message kinds.
const (
	// KindOTP carries a one-time login code; its data is OTP.
	KindOTP = "otp"
	// KindUse tells a citizen their data was used; its data is Use.
	KindUse = "use"
	// KindReady tells a citizen a download they asked for is ready; its data is Ready.
	KindReady = "ready"
	// KindDecision tells an applicant organisation what became of its application; its data is Decision.
	KindDecision = "decision"
)

// Languages.
const (
	LangZhTW = "zh-TW"
	LangEn   = "en"
)

var (
	kinds = []string{KindOTP, KindUse, KindReady, KindDecision}
	langs = []string{LangZhTW, LangEn}
)

// OTP is the data of a KindOTP message.
type OTP struct {
	// Purpose is "login" (or empty) for a login code, "verify" for a code that confirms a new contact.
	Purpose string
	Code    string
	// Minutes the code stays valid.
	Minutes int
}

// Use modes: how the data was used.
const (
	UseDownload = "download" // the citizen downloaded it
	UseCounter  = "counter"  // shown at a service provider's counter
	UseService  = "service"  // delivered to a service provider's online service
)

// Use is the data of a KindUse message.
type Use struct {
	// Mode is UseDownload, UseCounter or UseService.
	Mode string
	// Datasets are the datasets' names in the message's language, with their providers if wanted.
	Datasets []string
	// Recipient names the service provider and service; empty for a download.
	Recipient string
	At        time.Time
	// HistoryURL is the portal page listing every use, where a use the citizen does not recognise can be
	// reported.
	HistoryURL string
}

// Ready is the data of a KindReady message.
type Ready struct {
	Datasets []string
	// Until is when the download is no longer available.
	Until time.Time
	// URL is the portal's page for downloads. The message asks the citizen to log in there; it carries
	// no link that would work without logging in.
	URL string
}

// Decision is the data of a KindDecision message, sent to the contact of an organisation that applied
// (to join, for a stage, a change, a suspension, a resumption or a termination).
type Decision struct {
	// Application is its id; Org names the applicant organisation.
	Application string
	Org         string
	// Kind and Target say what it is for: kind org, service, dataset, change, suspend, resume or
	// terminate; On (service, dataset, org) for the last four; Stage for a service's or dataset's step.
	Kind, On, Target, Stage string
	// Event is what happened: authority-refused, refused, approved, scheduled, effected, failed or closed.
	Event string
	// Reviewer and Reason are the last decision's (the hub's own for failed and closed).
	Reviewer, Reason string
	// EffectiveOn is the day a lifecycle application takes effect (YYYY-MM-DD, Taipei); "" for none.
	EffectiveOn string
}

// samples are what every template is executed with at load, so a misspelt field is found then, with its
// file and line, and not when the first citizen is owed a message.
var samples = map[string][]any{
	KindOTP: {OTP{Code: "123456", Minutes: 5}, OTP{Purpose: "verify", Code: "123456", Minutes: 5}},
	KindUse: {
		Use{Mode: UseDownload, Datasets: []string{"a", "b"}, At: time.Unix(0, 0), HistoryURL: "https://x.example/"},
		Use{Mode: UseCounter, Datasets: []string{"a"}, Recipient: "r", At: time.Unix(0, 0), HistoryURL: "https://x.example/"},
		Use{Mode: UseService, Datasets: []string{"a"}, Recipient: "r", At: time.Unix(0, 0), HistoryURL: "https://x.example/"},
	},
	KindReady: {Ready{Datasets: []string{"a"}, Until: time.Unix(0, 0), URL: "https://x.example/"}},
	KindDecision: {
		Decision{Application: "app-1", Org: "o", Kind: "service", Target: "s", Stage: "pilot", Event: "approved", Reviewer: "r", Reason: "ok"},
		Decision{Application: "app-1", Org: "o", Kind: "terminate", On: "org", Target: "o", Event: "scheduled", Reviewer: "r", Reason: "ok", EffectiveOn: "2027-01-20"},
		Decision{Application: "app-1", Org: "o", Kind: "org", Target: "o", Event: "authority-refused", Reviewer: "r", Reason: "no"},
	},
}

// taipei is Taiwan's time (UTC+8, no daylight saving since 1979): fixed, so no tzdata is needed.
var taipei = time.FixedZone("CST", 8*60*60)

var funcs = template.FuncMap{
	// when formats a time in Taiwan's time zone, as citizens read it.
	"when": func(t time.Time) string { return t.In(taipei).Format("2006-01-02 15:04") },
	// join lists names: {{join .Datasets "、"}}.
	"join": func(s []string, sep string) string { return strings.Join(s, sep) },
}

//go:embed templates/*.txt
var defaultFS embed.FS

// Templates renders messages. Each kind and language has a mail template (subject and body) and
// optionally an SMS template; without one the SMS is the mail body.
type Templates struct {
	set map[string]*entry // by kind + "." + lang
}

type entry struct {
	subject, body, sms *template.Template
}

// ErrUnknownTemplate: Render was asked for a kind or language there is no template for.
var ErrUnknownTemplate = errors.New("notify: unknown template")

// LoadTemplates loads the embedded defaults and, if dir is not empty, the operator's overrides in dir:
//
//	<kind>.<lang>.txt      first line "Subject: ...", a blank line, then the body
//	<kind>.<lang>.sms.txt  the SMS text
//
// for kind otp, use, ready or decision and lang zh-TW or en. Each file replaces its default; an overridden mail
// template without an SMS file beside it gives the SMS its own body, not the default SMS text. Every
// template is parsed and executed with sample data, so an error names its file and line; a file whose
// name is not one of these is an error too (dot files are ignored).
func LoadTemplates(dir string) (*Templates, error) {
	t := &Templates{set: map[string]*entry{}}
	for _, k := range kinds {
		for _, l := range langs {
			name := k + "." + l
			e := &entry{}
			var err error
			if e.subject, e.body, err = loadMail(defaultFS, path.Join("templates", name+".txt"), ""); err != nil {
				return nil, err
			}
			if _, err := fs.Stat(defaultFS, path.Join("templates", name+".sms.txt")); err == nil {
				if e.sms, err = loadSMS(defaultFS, path.Join("templates", name+".sms.txt"), ""); err != nil {
					return nil, err
				}
			}
			t.set[name] = e
		}
	}
	if dir == "" {
		return t, t.validate()
	}
	files, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("notify: templates: %w", err)
	}
	osfs := os.DirFS(dir)
	overridden := map[string]bool{}
	smsOverridden := map[string]bool{}
	for _, f := range files {
		if strings.HasPrefix(f.Name(), ".") {
			continue
		}
		file := filepath.Join(dir, f.Name())
		name, sms, ok := parseTemplateName(f.Name())
		if !ok || f.IsDir() {
			return nil, fmt.Errorf("notify: templates: %s: not <kind>.<lang>.txt or <kind>.<lang>.sms.txt with kind %s and lang %s",
				file, strings.Join(kinds, ", "), strings.Join(langs, ", "))
		}
		e := t.set[name]
		if sms {
			if e.sms, err = loadSMS(osfs, f.Name(), file); err != nil {
				return nil, err
			}
			smsOverridden[name] = true
		} else {
			if e.subject, e.body, err = loadMail(osfs, f.Name(), file); err != nil {
				return nil, err
			}
			overridden[name] = true
		}
	}
	for name := range overridden {
		if !smsOverridden[name] {
			t.set[name].sms = nil
		}
	}
	if err := t.validate(); err != nil {
		return nil, err
	}
	return t, nil
}

func parseTemplateName(n string) (name string, sms bool, ok bool) {
	n, ok = strings.CutSuffix(n, ".txt")
	if !ok {
		return "", false, false
	}
	n, sms = strings.CutSuffix(n, ".sms")
	kind, lang, ok := strings.Cut(n, ".")
	if !ok || !contains(kinds, kind) || !contains(langs, lang) {
		return "", false, false
	}
	return n, sms, true
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// readText reads fname from fsys; name is how errors and the template call it: the embedded path for a
// default, the file's path on disk for an override.
func readText(fsys fs.FS, fname, name string) (string, error) {
	b, err := fs.ReadFile(fsys, fname)
	if err != nil {
		return "", fmt.Errorf("notify: templates: %w", err)
	}
	b = bytes.TrimPrefix(b, []byte("\uFEFF"))
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			return "", fmt.Errorf("notify: templates: %s:%d: not UTF-8", name, 1+bytes.Count(b[:i], []byte("\n")))
		}
		i += size
	}
	return strings.ReplaceAll(string(b), "\r\n", "\n"), nil
}

func loadMail(fsys fs.FS, fname, name string) (subject, body *template.Template, err error) {
	if name == "" {
		name = fname
	}
	text, err := readText(fsys, fname, name)
	if err != nil {
		return nil, nil, err
	}
	first, rest, _ := strings.Cut(text, "\n")
	subj, ok := strings.CutPrefix(first, "Subject:")
	if !ok {
		return nil, nil, fmt.Errorf("notify: templates: %s:1: the first line must be \"Subject: ...\"", name)
	}
	blank, rest, _ := strings.Cut(rest, "\n")
	if strings.TrimSpace(blank) != "" {
		return nil, nil, fmt.Errorf("notify: templates: %s:2: a blank line must follow the subject", name)
	}
	if subject, err = parse(name, strings.TrimSpace(subj)); err != nil {
		return nil, nil, err
	}
	// Two newlines stand in for the subject and the blank line, so that errors give the file's lines.
	if body, err = parse(name, "\n\n"+rest); err != nil {
		return nil, nil, err
	}
	return subject, body, nil
}

func loadSMS(fsys fs.FS, fname, name string) (*template.Template, error) {
	if name == "" {
		name = fname
	}
	text, err := readText(fsys, fname, name)
	if err != nil {
		return nil, err
	}
	return parse(name, text)
}

func parse(name, text string) (*template.Template, error) {
	t, err := template.New(name).Option("missingkey=error").Funcs(funcs).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("notify: templates: %w", err)
	}
	return t, nil
}

func (t *Templates) validate() error {
	for _, k := range kinds {
		for _, l := range langs {
			for _, data := range samples[k] {
				if _, err := t.Render(k, l, data); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Render makes the message of kind in lang from data, which is an OTP, Use or Ready. The message's ID is
// left empty for the caller.
func (t *Templates) Render(kind, lang string, data any) (Message, error) {
	e, ok := t.set[kind+"."+lang]
	if !ok {
		return Message{}, fmt.Errorf("%w: %q in %q", ErrUnknownTemplate, kind, lang)
	}
	var msg Message
	var err error
	if msg.Subject, err = execute(e.subject, data); err != nil {
		return Message{}, err
	}
	msg.Subject = strings.TrimSpace(msg.Subject)
	if msg.Subject == "" || strings.ContainsAny(msg.Subject, "\r\n") {
		return Message{}, fmt.Errorf("notify: templates: %s:1: the subject must come out as one non-empty line", e.subject.Name())
	}
	body, err := execute(e.body, data)
	if err != nil {
		return Message{}, err
	}
	msg.Body = strings.TrimSpace(body) + "\n"
	if e.sms != nil {
		if msg.SMS, err = execute(e.sms, data); err != nil {
			return Message{}, err
		}
		msg.SMS = strings.TrimSpace(msg.SMS)
	} else {
		msg.SMS = strings.TrimSpace(body)
	}
	if strings.TrimSpace(msg.Body) == "" || msg.SMS == "" {
		return Message{}, fmt.Errorf("notify: templates: %s: the text comes out empty", e.body.Name())
	}
	return msg, nil
}

func execute(t *template.Template, data any) (string, error) {
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("notify: templates: %w", err)
	}
	return b.String(), nil
}
