package main

import (
	"testing"

	"github.com/mydatafed/mydata/pkg/docregistry"
)

// sampleRecords is the sample registry's records file, which the demo serves.
const sampleRecords = "../../../pkg/docregistry/testdata/sample-registry.json"

// TestSampleRecordsHaveDemoCitizens: every demo citizen has documents, so each can try the two-documents
// login.
func TestSampleRecordsHaveDemoCitizens(t *testing.T) {
	recs, err := docregistry.Load(sampleRecords)
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, r := range recs {
		known[r.NationalID] = true
	}
	for _, id := range demoCitizens {
		if !known[id] {
			t.Errorf("no record for demo citizen %s", id)
		}
	}
	if _, err := docregistry.New(recs, ""); err != nil {
		t.Fatal(err)
	}
}

func TestRegistryFlags(t *testing.T) {
	for _, args := range [][]string{{}, {"--records", "missing.json"}, {"--records", sampleRecords, "--listen", "0.0.0.0:0"}} {
		if err := runRegistry(args, t.Output()); err == nil {
			t.Errorf("runRegistry(%q) succeeded", args)
		}
	}
}
