package portal

import (
	"net/http"
	"slices"
	"strings"

	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/pkg/hubapi"
)

// announcement is an approved change, suspension or termination still to take effect, as the catalogue
// and consent pages announce it (介接作業要點 6(3): announced 7 working days before): who, what and from
// which day, and for a dataset's change what changes.
type announcement struct {
	Msg     msg
	Details []msg
}

// announceKeys are the messages of each kind of lifecycle application the portal announces, by what it is
// about.
var announceKeys = map[string]map[string]string{
	fsm.OnService: {
		fsm.ApplyChange:    "announce.service.change",
		fsm.ApplySuspend:   "announce.service.suspend",
		fsm.ApplyTerminate: "announce.service.terminate",
	},
	fsm.OnDataset: {
		fsm.ApplyChange:    "announce.dataset.change",
		fsm.ApplySuspend:   "announce.dataset.suspend",
		fsm.ApplyTerminate: "announce.dataset.terminate",
	},
	fsm.OnOrg: {
		fsm.ApplyChange:    "announce.org.change",
		fsm.ApplyTerminate: "announce.org.terminate",
	},
}

// fieldKeys say what a dataset's change alters (fsm.DatasetChange.Differs), with the new value; switches
// say it of what is turned on or off.
var (
	fieldKeys = map[string]string{
		"name":         "announce.field.name",
		"description":  "announce.field.description",
		"login":        "announce.field.login",
		"content_type": "announce.field.content_type",
	}
	switchKeys = map[string]map[bool]string{
		"async":    {true: "announce.field.async.on", false: "announce.field.async.off"},
		"download": {true: "announce.field.download.on", false: "announce.field.download.off"},
	}
)

// announcements are the upcoming changes to the given services and datasets (all when both are nil).
func (s *Server) announcements(r *http.Request, services, datasets []string) []announcement {
	apps, err := s.cfg.State.ScheduledChanges()
	if err != nil {
		s.log.Warn("read scheduled changes", "err", err)
		return nil
	}
	lang := requestLang(r)
	orgName := func(code string) string {
		if o, err := s.cfg.State.Org(code); err == nil && o != nil {
			return pickLang(lang, o.NameZh, o.NameEn)
		}
		return code
	}
	var out []announcement
	for _, a := range apps {
		key := announceKeys[a.On][a.Kind]
		if a.Status != fsm.AppScheduled || key == "" {
			continue
		}
		name := a.Target
		var details []msg
		switch a.On {
		case fsm.OnService:
			if services != nil && !slices.Contains(services, a.Target) || datasets != nil && services == nil {
				continue
			}
			if svc, err := s.cfg.State.Service(a.Target); err == nil && svc != nil {
				name = pickLang(lang, svc.NameZh, svc.NameEn)
			}
		case fsm.OnDataset:
			if datasets != nil && !slices.Contains(datasets, a.Target) {
				continue
			}
			d, err := s.cfg.State.Dataset(a.Target)
			if err == nil && d != nil {
				name = pickLang(lang, d.NameZh, d.NameEn)
			}
			if a.Kind == fsm.ApplyChange {
				if details = s.datasetDetails(lang, d, a.Dataset); len(details) == 0 {
					continue
				}
			}
		case fsm.OnOrg:
			if (services != nil || datasets != nil) && !s.involves(a.Target, services, datasets) {
				continue
			}
			if a.Kind == fsm.ApplyTerminate {
				out = append(out, announcement{Msg: message(key, orgName(a.Target), a.EffectiveOn)})
				continue
			}
			// Citizens see an organisation's names only: its other changes are not theirs to read.
			o, err := s.cfg.State.Org(a.Target)
			if err != nil || o == nil || a.OrgInfo == nil || o.NameZh == a.OrgInfo.NameZh && o.NameEn == a.OrgInfo.NameEn {
				continue
			}
			out = append(out, announcement{Msg: message(key, orgName(a.Target), a.EffectiveOn, pickLang(lang, a.OrgInfo.NameZh, a.OrgInfo.NameEn))})
			continue
		}
		out = append(out, announcement{Msg: message(key, orgName(a.Org), name, a.EffectiveOn), Details: details})
	}
	return out
}

// datasetDetails are what a dataset's change alters, in words, with the new values.
func (s *Server) datasetDetails(lang string, now *hubapi.Dataset, next *fsm.Dataset) []msg {
	if now == nil || next == nil {
		return nil
	}
	n := hubapi.Dataset{ID: next.ID, NameZh: next.NameZh, NameEn: next.NameEn, Description: next.Description, MinAAL: next.MinAAL,
		Methods: next.Methods, ContentType: next.ContentType, Async: next.Async, Download: next.Download}
	var out []msg
	for _, f := range (fsm.DatasetChange{Now: *now, Next: n}).Differs() {
		key := fieldKeys[f]
		switch f {
		case "name":
			out = append(out, message(key, pickLang(lang, n.NameZh, n.NameEn)))
		case "description":
			out = append(out, message(key, n.Description))
		case "login":
			out = append(out, message(key, s.loginNeeded(lang, n)))
		case "content_type":
			out = append(out, message(key, n.ContentType))
		case "async":
			out = append(out, message(switchKeys[f][n.Async]))
		case "download":
			out = append(out, message(switchKeys[f][n.Download]))
		}
	}
	return out
}

// loginNeeded says in words the login a dataset needs, as its catalogue card does.
func (s *Server) loginNeeded(lang string, d hubapi.Dataset) string {
	if len(d.Methods) == 0 {
		return tr(lang, "level.or_higher", s.levelName(lang, d.MinAAL))
	}
	var names []string
	for _, m := range s.sufficient(requirementsOf([]hubapi.Dataset{d})) {
		names = append(names, pickLang(lang, m.NameZh, m.NameEn))
	}
	return strings.Join(names, tr(lang, "list.sep"))
}

// involves says whether an organisation provides one of the datasets or runs one of the services a page
// is about.
func (s *Server) involves(org string, services, datasets []string) bool {
	for _, id := range services {
		if svc, err := s.cfg.State.Service(id); err == nil && svc != nil && svc.SPOrg == org {
			return true
		}
	}
	for _, id := range datasets {
		if d, err := s.cfg.State.Dataset(id); err == nil && d != nil && d.DPOrg == org {
			return true
		}
	}
	return false
}
