package exchange

import (
	"bytes"
	"testing"
)

// TestWipingBuffer: the bytes a buffer outgrows are overwritten, so the content handed over is the only
// copy it leaves.
func TestWipingBuffer(t *testing.T) {
	var w wipingBuffer
	w.Write(bytes.Repeat([]byte("S"), 4000))
	first := w.b[:cap(w.b)]
	w.Write(bytes.Repeat([]byte("S"), 200)) // past 4096: a new array
	if bytes.ContainsRune(first, 'S') {
		t.Fatal("the outgrown array still holds content")
	}
	if len(w.b) != 4200 || bytes.Count(w.b, []byte("S")) != 4200 {
		t.Fatal("content lost")
	}
}

// TestPurge: Purge overwrites the content, and content that arrives after it is overwritten on arrival.
func TestPurge(t *testing.T) {
	a, b := []byte("PAYLOAD-A"), []byte("PAYLOAD-B")
	ex := &Exchange{changed: make(chan struct{}), Datasets: []*Dataset{{Dataset: "x.a", Content: a, Status: StatusDelivered}, {Dataset: "x.b", Status: StatusPending}}}
	if ex.HeldBytes() != int64(len(a)) {
		t.Fatal("held bytes")
	}
	ex.Purge()
	if !bytes.Equal(a, make([]byte, len(a))) || ex.Datasets[0].Content != nil || ex.HeldBytes() != 0 {
		t.Fatal("content survived Purge")
	}
	ex.set(ex.Datasets[1], func(d *Dataset) { d.Content, d.Status = b, StatusDelivered })
	if !bytes.Equal(b, make([]byte, len(b))) || ex.Datasets[1].Content != nil {
		t.Fatal("content arriving after Purge was kept")
	}
}
