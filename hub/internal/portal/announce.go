package portal

import (
	"net/http"
	"slices"

	"github.com/mydatafed/mydata/hub/internal/fsm"
)

// announcement is an approved change, suspension or termination still to take effect, as the catalogue
// and consent pages announce it (介接作業要點 6(3): announced 7 working days before).
type announcement struct {
	// Message is the messages key: announce.change, announce.suspend or announce.terminate.
	Message string
	Name    string
	Day     string
}

// announceKeys are the messages of each kind of lifecycle application the portal announces.
var announceKeys = map[string]string{
	fsm.ApplyChange:    "announce.change",
	fsm.ApplySuspend:   "announce.suspend",
	fsm.ApplyTerminate: "announce.terminate",
}

// announcements are the upcoming changes to the given services and datasets (all when both are nil).
func (s *Server) announcements(r *http.Request, services, datasets []string) []announcement {
	apps, err := s.cfg.State.ScheduledChanges()
	if err != nil {
		s.log.Warn("read scheduled changes", "err", err)
		return nil
	}
	lang := requestLang(r)
	var out []announcement
	for _, a := range apps {
		if a.Status != fsm.AppScheduled {
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
		out = append(out, announcement{Message: announceKeys[a.Kind], Name: name, Day: a.EffectiveOn})
	}
	return out
}
