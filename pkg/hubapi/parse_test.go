package hubapi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/mydatafed/mydata/pkg/jointoken"
)

func sampleEnroll(t testing.TB) EnrollRequest {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse("spiffe://mydata.test/org/moi/connector/dp1")
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return EnrollRequest{Token: jointoken.New([32]byte{7}).String(), Org: "moi", Connector: "dp1", CSR: der}
}

func TestParseEnroll(t *testing.T) {
	good := sampleEnroll(t)
	enc := func(r EnrollRequest) []byte { b, _ := json.Marshal(r); return b }
	tests := []struct {
		name    string
		body    []byte
		wantErr string
	}{
		{"ok", enc(good), ""},
		{"bad token", enc(EnrollRequest{Token: "x", Org: good.Org, Connector: good.Connector, CSR: good.CSR}), "token"},
		{"bad org", enc(EnrollRequest{Token: good.Token, Org: "MOI", Connector: good.Connector, CSR: good.CSR}), "org"},
		{"bad connector", enc(EnrollRequest{Token: good.Token, Org: good.Org, Connector: "", CSR: good.CSR}), "connector"},
		{"no csr", enc(EnrollRequest{Token: good.Token, Org: good.Org, Connector: good.Connector}), "csr: missing"},
		{"garbage csr", enc(EnrollRequest{Token: good.Token, Org: good.Org, Connector: good.Connector, CSR: []byte{1, 2}}), "csr"},
		{"unknown field", []byte(`{"token":"x","extra":1}`), "unknown field"},
		{"trailing", append(enc(good), []byte(`{}`)...), "trailing"},
		{"huge", []byte(`{"token":"` + strings.Repeat("a", MaxBody) + `"}`), "larger than"},
		{"not json", []byte(`<xml/>`), "invalid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParseEnroll(tt.body)
			if tt.wantErr == "" {
				if err != nil || p.Org != "moi" || p.CSR == nil {
					t.Fatalf("got %+v, %v", p, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	orgs := []struct {
		o   Org
		bad string
	}{
		{Org{Code: "moi", NameZh: "內政部", NameEn: "Ministry of the Interior", Type: "central-agency"}, ""},
		{Org{Code: "MOI", NameZh: "x", NameEn: "x", Type: "other"}, "code"},
		{Org{Code: "moi", NameEn: "x", Type: "other"}, "name_zh"},
		{Org{Code: "moi", NameZh: "x", Type: "other"}, "name_en"},
		{Org{Code: "moi", NameZh: "x", NameEn: "x", Type: "club"}, "type"},
	}
	for _, tt := range orgs {
		err := tt.o.Validate()
		if (tt.bad == "") != (err == nil) || err != nil && !strings.HasPrefix(err.Error(), tt.bad) {
			t.Errorf("%+v: %v, want %q", tt.o, err, tt.bad)
		}
	}
	conns := []struct {
		c   Connector
		bad string
	}{
		{Connector{Org: "moi", Name: "dp1", Roles: []string{"dp"}, Address: "127.0.0.1:7000"}, ""},
		{Connector{Org: "moi", Name: "dp1", Roles: []string{"dp", "sp"}, Address: "dp.moi.example:7000"}, ""},
		{Connector{Org: "moi", Name: "dp1", Roles: []string{"dp", "dp"}, Address: "a:1"}, "roles"},
		{Connector{Org: "moi", Name: "dp1", Roles: []string{"xx"}, Address: "a:1"}, "roles"},
		{Connector{Org: "moi", Name: "dp1", Address: "a:1"}, "roles"},
		{Connector{Org: "moi", Name: "dp1", Roles: []string{"sp"}, Address: "nohost"}, "address"},
		{Connector{Org: "moi", Name: "D", Roles: []string{"sp"}, Address: "a:1"}, "name"},
	}
	for _, tt := range conns {
		err := tt.c.Validate()
		if (tt.bad == "") != (err == nil) || err != nil && !strings.HasPrefix(err.Error(), tt.bad) {
			t.Errorf("%+v: %v, want %q", tt.c, err, tt.bad)
		}
	}
}

func FuzzParseEnroll(f *testing.F) {
	b, _ := json.Marshal(sampleEnroll(f))
	f.Add(b)
	f.Add([]byte(`{"token":"mdj1.a.b","org":"x","connector":"y","csr":"AAAA"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := ParseEnroll(body)
		if err != nil {
			return
		}
		if p.CSR == nil || p.CSR.CheckSignature() != nil {
			t.Fatal("accepted a request without a valid CSR")
		}
	})
}
