package fedid

import (
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestParse(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("mydata.test")
	tests := []struct {
		in   string
		want Parsed
		err  bool
	}{
		{"spiffe://mydata.test/hub/h1", Parsed{Kind: KindHub, Name: "h1"}, false},
		{"spiffe://mydata.test/operator/admin", Parsed{Kind: KindOperator, Name: "admin"}, false},
		{"spiffe://mydata.test/org/moi/connector/dp-1", Parsed{Kind: KindConnector, Org: "moi", Name: "dp-1"}, false},
		{"spiffe://mydata.test/org/moi/connector", Parsed{}, true},
		{"spiffe://mydata.test/org/MOI/connector/x", Parsed{}, true},
		{"spiffe://mydata.test/org/moi/connector/x/y", Parsed{}, true},
		{"spiffe://mydata.test/hub/-x", Parsed{}, true},
		{"spiffe://mydata.test/other/x", Parsed{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			id := spiffeid.RequireFromString(tt.in)
			got, err := Parse(id)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			if err == nil && got.Kind == KindConnector {
				back, err := Connector(td, got.Org, got.Name)
				if err != nil || back != id {
					t.Fatalf("Connector round trip: %v %v", back, err)
				}
			}
		})
	}
}

func TestMatchKind(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("mydata.test")
	m := MatchKind(td, KindHub)
	if err := m(spiffeid.RequireFromString("spiffe://mydata.test/hub/a")); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"spiffe://other.test/hub/a", "spiffe://mydata.test/operator/a", "spiffe://mydata.test/x"} {
		if m(spiffeid.RequireFromString(s)) == nil {
			t.Fatalf("%s accepted", s)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"a", "moi", "dp-1", "0x"} {
		if ValidName(ok) != nil {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", "-a", "A", "a_b", "a.b", string(make([]byte, 64))} {
		if ValidName(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"spiffe://mydata.test/hub/h1", "spiffe://mydata.test/org/moi/connector/dp1", "spiffe://mydata.test/operator/a", "spiffe://x/y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := spiffeid.FromString(s)
		if err != nil {
			return
		}
		p, err := Parse(id)
		if err != nil {
			return
		}
		var back spiffeid.ID
		switch p.Kind {
		case KindHub:
			back, err = Hub(id.TrustDomain(), p.Name)
		case KindOperator:
			back, err = Operator(id.TrustDomain(), p.Name)
		case KindConnector:
			back, err = Connector(id.TrustDomain(), p.Org, p.Name)
		}
		if err != nil || back != id {
			t.Fatalf("%s parsed to %+v but rebuilds to %s (%v)", id, p, back, err)
		}
	})
}
