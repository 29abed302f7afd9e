package datapackage

import (
	"archive/zip"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/seal"
	"github.com/mydatafed/mydata/pkg/spiffetest"
	"github.com/mydatafed/mydata/pkg/transfer"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

const dpID = "spiffe://mydata.test/org/moi/connector/dp1"

var td = spiffeid.RequireTrustDomainFromString("mydata.test")

// deliver runs a real delivery through the protocol and returns it as a package item.
func deliver(t testing.TB, ca *spiffetest.CA, signer *x509svid.SVID, dp, name, dataset string, data []byte) Item {
	t.Helper()
	key, err := seal.GenerateKey(seal.KEMX25519)
	if err != nil {
		t.Fatal(err)
	}
	m := transfer.Manifest{TicketID: "t-" + dataset, ConsentID: "c1", Dataset: dataset, ContentType: "application/json", DeclaredSize: int64(len(data))}
	var stream bytes.Buffer
	if _, err := transfer.Send(&stream, m, key.PublicKey(), bytes.NewReader(data), 1<<30, signer); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res, err := transfer.Receive(&stream, &out, transfer.Expect{TicketID: m.TicketID, Dataset: dataset, DP: signer.ID, MaxSize: 1 << 30, Bundles: ca.Bundle()}, key)
	if err != nil {
		t.Fatal(err)
	}
	return Item{Name: name, Data: out.Bytes(), DP: dp, DeliveryManifest: res.ManifestJSON, Trailer: *res.Trailer}
}

func build(t testing.TB, items ...Item) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Build(&b, "c1", time.Now(), items); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// rezip rewrites a package, passing each entry through edit (which may drop it by returning nil).
func rezip(t testing.TB, pkg []byte, edit func(name string, data []byte) []byte, extra map[string][]byte) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(pkg), int64(len(pkg)))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	put := func(name string, data []byte) {
		w, _ := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store})
		w.Write(data)
	}
	for _, f := range zr.File {
		rc, _ := f.Open()
		data, _ := io.ReadAll(rc)
		rc.Close()
		if data = edit(f.Name, data); data != nil {
			put(f.Name, data)
		}
	}
	for name, data := range extra {
		put(name, data)
	}
	zw.Close()
	return b.Bytes()
}

func editManifest(t testing.TB, pkg []byte, edit func(*Manifest)) []byte {
	return rezip(t, pkg, func(name string, data []byte) []byte {
		if name != ManifestName {
			return data
		}
		var m Manifest
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		edit(&m)
		out, _ := json.Marshal(&m)
		return out
	}, nil)
}

func TestVerify(t *testing.T) {
	ca := spiffetest.New(t, "mydata.test")
	dp := ca.SVID(t, dpID, time.Hour)
	data := make([]byte, 200<<10)
	rand.Read(data)
	household := deliver(t, ca, dp, dpID, "moi.household.json", "moi.household", data)
	tax := deliver(t, ca, dp, dpID, "mof.tax.json", "mof.tax", []byte(`{"tax":1}`))
	good := build(t, household, tax)

	foreignCA := spiffetest.New(t, "other.test")
	foreign := deliver(t, foreignCA, foreignCA.SVID(t, "spiffe://other.test/org/moi/connector/dp1", time.Hour), "spiffe://other.test/org/moi/connector/dp1", "moi.household.json", "moi.household", data)
	rogueCA := spiffetest.New(t, "mydata.test") // same name, not the federation's root
	rogue := deliver(t, rogueCA, rogueCA.SVID(t, dpID, time.Hour), dpID, "moi.household.json", "moi.household", data)
	other := deliver(t, ca, ca.SVID(t, "spiffe://mydata.test/org/bank/connector/sp1", time.Hour), "spiffe://mydata.test/org/bank/connector/sp1", "moi.household.json", "moi.household", data)

	cases := []struct {
		name string
		pkg  []byte
		want string
	}{
		{"good", good, ""},
		{"one byte changed", rezip(t, good, func(name string, d []byte) []byte {
			if name == "moi.household.json" {
				d = bytes.Clone(d)
				d[1000] ^= 1
			}
			return d
		}, nil), "was changed"},
		{"digest and size rewritten to match a changed file", editManifest(t, good, func(m *Manifest) { m.Files[1].Size = 3 }), "size"},
		{"signed by another connector than the one named", editManifest(t, build(t, other), func(m *Manifest) { m.Files[0].DP = dpID }), "not " + dpID},
		{"a foreign trust domain", build(t, foreign), "trust domain"},
		{"a root that is not the federation's", build(t, rogue), "unknown authority"},
		{"the signature of another file", editManifest(t, good, func(m *Manifest) { m.Files[0].Signature = m.Files[1].Signature }), "signature does not verify"},
		{"a file not listed", rezip(t, good, func(_ string, d []byte) []byte { return d }, map[string][]byte{"extra.txt": []byte("x")}), "lists 2 files"},
		{"a listed file missing", rezip(t, good, func(name string, d []byte) []byte {
			if name == "mof.tax.json" {
				return nil
			}
			return d
		}, nil), "lists 2 files"},
		{"no manifest", rezip(t, good, func(name string, d []byte) []byte {
			if name == ManifestName {
				return nil
			}
			return d
		}, nil), "no manifest.json"},
		{"a path for a name", editManifest(t, good, func(m *Manifest) { m.Files[0].Name = "../x" }), "plain file name"},
		{"another format", editManifest(t, good, func(m *Manifest) { m.Format = "x" }), "format"},
		{"not a zip", []byte("hello"), "not a zip"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Verify(bytes.NewReader(tc.pkg), int64(len(tc.pkg)), td, ca.Bundle())
			if tc.want == "" {
				if err != nil || len(got) != 2 || got[0].Signer.String() != dpID {
					t.Fatalf("good package: %v %+v", err, got)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// FuzzVerify: a package is whatever a citizen hands over; Verify must refuse, never panic or read without
// bound.
func FuzzVerify(f *testing.F) {
	ca := spiffetest.New(f, "mydata.test")
	good := build(f, deliver(f, ca, ca.SVID(f, dpID, time.Hour), dpID, "a.json", "moi.household", []byte(`{"a":1}`)))
	f.Add(good)
	f.Add([]byte("PK\x03\x04"))
	f.Add(editManifest(f, good, func(m *Manifest) { m.Files = append(m.Files, m.Files[0]) }))
	f.Fuzz(func(t *testing.T, pkg []byte) {
		_, _ = Verify(bytes.NewReader(pkg), int64(len(pkg)), td, ca.Bundle())
	})
}
