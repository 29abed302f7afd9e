package portal

import (
	"net/http"
	"slices"

	"github.com/mydatafed/mydata/hub/internal/fsm"
)

// announcement is an approved change, suspension or termination still to take effect, as the catalogue
// and consent pages announce it (介接作業要點 6(3): announced 7 working days before): who, what and from
// which day, and for a change what changes.
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
}

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
		if a.Status != fsm.AppScheduled {
			continue
		}
		key := announceKeys[a.On][a.Kind]
		if key == "" {
			continue
		}
		name := a.Target
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
			if d, err := s.cfg.State.Dataset(a.Target); err == nil && d != nil {
				name = pickLang(lang, d.NameZh, d.NameEn)
			}
		}
		out = append(out, announcement{Msg: message(key, orgName(a.Org), name, a.EffectiveOn)})
	}
	return out
}
