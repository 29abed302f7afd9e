package fsm

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/hubapi"
)

func TestDownloadRecord(t *testing.T) {
	a := &applier{t: t, f: open(t, filepath.Join(t.TempDir(), "state.db"))}
	now := time.Now().UTC().Truncate(time.Millisecond)
	subject := "l1:abc"
	a.apply(&ContactSet{Contact: Contact{SubjectHash: subject, EmailSealed: []byte("e"), EmailVerifiedAt: now, Lang: "en", NotifyEmail: true, UpdatedAt: now}})
	dl := func(id string) *DownloadRecord {
		return &DownloadRecord{Consent: Consent{ID: id, Subject: subject, Datasets: []string{"moi.household", "nhi.records"}, AAL: 2, LoginMethod: "dev",
			Mode: hubapi.ModeDownload}, Now: now}
	}
	steps := []struct {
		name string
		cmd  Command
		want Code
		msg  string
	}{
		{"record", dl("d1"), OK, ""},
		{"record again", dl("d1"), Conflict, "used once"},
		{"with a service", &DownloadRecord{Consent: Consent{ID: "d2", Service: "bank.card", Subject: subject, Datasets: []string{"x.y"}, Mode: hubapi.ModeDownload}, Now: now}, Invalid, "no service"},
		{"online mode", &DownloadRecord{Consent: Consent{ID: "d3", Subject: subject, Datasets: []string{"x.y"}}, Now: now}, Invalid, "not download"},
		{"keeping the sealed ID", &DownloadRecord{Consent: Consent{ID: "d4", Subject: subject, Datasets: []string{"x.y"}, Mode: hubapi.ModeDownload, SubjectSealed: []byte("s")}, Now: now}, Invalid, "sealed"},
		{"pending", &DownloadPending{ConsentID: "d1", Dataset: "nhi.records", ReadyAt: now.Add(10 * time.Minute), Now: now}, OK, ""},
		{"pending twice", &DownloadPending{ConsentID: "d1", Dataset: "nhi.records", ReadyAt: now.Add(20 * time.Minute), Now: now}, OK, ""},
		{"pending of a dataset not asked for", &DownloadPending{ConsentID: "d1", Dataset: "mof.tax", ReadyAt: now, Now: now}, NotFound, "no dataset"},
		{"pending of no download", &DownloadPending{ConsentID: "zz", Dataset: "mof.tax", ReadyAt: now, Now: now}, NotFound, "no download"},
		{"pending in the past", &DownloadPending{ConsentID: "d1", Dataset: "nhi.records", ReadyAt: now.Add(-time.Minute), Now: now}, Invalid, "before now"},
	}
	for _, s := range steps {
		r := a.apply(s.cmd)
		if r.Code != s.want || !strings.Contains(r.Message, s.msg) {
			t.Fatalf("%s: got %+v, want code %d with %q", s.name, r, s.want, s.msg)
		}
	}
	k, _ := a.f.Consent("d1")
	if k == nil || k.State != ConsentUsed || k.UsedAt.IsZero() || k.Mode != hubapi.ModeDownload || len(k.SubjectSealed) != 0 {
		t.Fatalf("download consent: %+v", k)
	}
	// One use notice now, one ready notice (not two) when the agency said.
	due, err := a.f.OutboxDue(now, 10)
	if err != nil || len(due) != 1 || due[0].Kind != OutboxKindUse || due[0].Ref != "d1" {
		t.Fatalf("due now: %+v %v", due, err)
	}
	due, _ = a.f.OutboxDue(now.Add(time.Hour), 10)
	var ready []OutboxEntry
	for _, e := range due {
		if e.Kind == OutboxKindReady {
			ready = append(ready, e)
		}
	}
	if len(ready) != 1 || ready[0].Ref != "d1/nhi.records" || !ready[0].NextAt.Equal(now.Add(10*time.Minute)) {
		t.Fatalf("ready notices: %+v", ready)
	}
}
