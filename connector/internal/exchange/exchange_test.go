package exchange

import (
	"bytes"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestRecipientKeyRotates checks the recipient key's life: one key for the exchanges of a minute, a new
// one after.
func TestRecipientKeyRotates(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	m, err := New(Config{Now: func() time.Time { return now }, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	k1, pub1, err := m.recipientKey()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pub1, k1.PublicKey().Bytes()) {
		t.Fatal("public bytes are not the key's")
	}
	now = now.Add(recipientKeyLife - time.Second)
	if k2, _, _ := m.recipientKey(); k2 != k1 {
		t.Fatal("a new key within the key's life")
	}
	now = now.Add(time.Second)
	k3, pub3, _ := m.recipientKey()
	if k3 == k1 || bytes.Equal(pub3, pub1) {
		t.Fatal("the key outlived its life")
	}
}
