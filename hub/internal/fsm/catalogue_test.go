package fsm

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCatalogue(t *testing.T) {
	a := &applier{t: t, f: open(t, filepath.Join(t.TempDir(), "state.db"))}
	now := time.Now()
	a.apply(&OrgAdd{Code: "moi", NameZh: "內政部", NameEn: "MOI", Type: "central-agency", Now: now})
	a.apply(&OrgAdd{Code: "bank", NameZh: "銀行", NameEn: "Bank", Type: "financial-institution", Now: now})
	a.apply(&ConnectorAdd{Org: "moi", Name: "dp1", Roles: []string{"dp"}, Address: "a:1", Now: now})
	a.apply(&ConnectorAdd{Org: "bank", Name: "sp1", Roles: []string{"sp"}, Address: "a:2", Now: now})
	ds := func(id, org, conn string) Dataset {
		return Dataset{ID: id, NameZh: "戶籍", NameEn: "Household", DPOrg: org, DPConnector: conn, MinAAL: 2}
	}
	svc := func(id string, datasets ...string) Service {
		return Service{ID: id, NameZh: "信用卡", NameEn: "Credit card", SPOrg: "bank", SPConnector: "sp1", Modes: []string{"online"},
			Datasets: datasets, Purpose: "p", Terms: "t", TermsVersion: "1", RedirectURIs: []string{"https://bank.example/cb"}}
	}
	six := svc("bank.six", "moi.a", "moi.b", "moi.c", "moi.d", "moi.e", "moi.f")
	sixWithBasis := six
	sixWithBasis.ID, sixWithBasis.LegalBasis = "bank.six-basis", "Banking Act art. 12"
	steps := []struct {
		name string
		cmd  Command
		want Code
		msg  string
	}{
		{"dataset", &DatasetAdd{Dataset: ds("moi.household", "moi", "dp1"), Now: now}, OK, ""},
		{"dataset again", &DatasetAdd{Dataset: ds("moi.household", "moi", "dp1"), Now: now}, Conflict, "already exists"},
		{"dataset at an SP", &DatasetAdd{Dataset: ds("bank.x", "bank", "sp1"), Now: now}, Invalid, "does not have the dp role"},
		{"dataset at nobody", &DatasetAdd{Dataset: ds("moi.y", "moi", "dp9"), Now: now}, NotFound, "dp_connector"},
		{"dataset bad id", &DatasetAdd{Dataset: ds("household", "moi", "dp1"), Now: now}, Invalid, "id:"},
		{"service", &ServiceAdd{Service: svc("bank.card", "moi.household"), Now: now}, OK, ""},
		{"service with unknown dataset", &ServiceAdd{Service: svc("bank.loan", "moi.nothing"), Now: now}, NotFound, "moi.nothing"},
		{"six datasets", &ServiceAdd{Service: six, Now: now}, Invalid, "legal_basis"},
		{"maintenance", &DatasetStatus{ID: "moi.household", Status: "maintenance", Now: now}, OK, ""},
		{"maintenance again", &DatasetStatus{ID: "moi.household", Status: "maintenance", Now: now}, Conflict, "already"},
		{"unknown status", &DatasetStatus{ID: "moi.household", Status: "closed", Now: now}, Invalid, "status"},
	}
	for _, s := range steps {
		r := a.apply(s.cmd)
		if r.Code != s.want || !strings.Contains(r.Message, s.msg) {
			t.Fatalf("%s: got %+v, want code %d with %q", s.name, r, s.want, s.msg)
		}
	}
	for _, id := range []string{"a", "b", "c", "d", "e", "f"} {
		if r := a.apply(&DatasetAdd{Dataset: ds("moi."+id, "moi", "dp1"), Now: now}); r.Code != OK {
			t.Fatal(r)
		}
	}
	if r := a.apply(&ServiceAdd{Service: sixWithBasis, Now: now}); r.Code != OK {
		t.Fatalf("six datasets with a legal basis: %+v", r)
	}
	s, err := a.f.Service("bank.card")
	if err != nil || s == nil || s.RedirectURIs[0] != "https://bank.example/cb" || s.Status != "active" {
		t.Fatalf("service %+v %v", s, err)
	}
	d, _ := a.f.Dataset("moi.household")
	if d.Status != "maintenance" || d.ContentType != "application/json" {
		t.Fatalf("dataset %+v", d)
	}
}
