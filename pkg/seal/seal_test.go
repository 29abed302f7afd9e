package seal

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"testing"
)

func TestSealOpen(t *testing.T) {
	for _, kemID := range []uint16{KEMHybrid, KEMX25519} {
		sk, err := GenerateKey(kemID)
		if err != nil {
			t.Fatal(err)
		}
		pk, err := ParsePublicKey(kemID, sk.PublicKey().Bytes())
		if err != nil {
			t.Fatal(err)
		}
		ct, err := Seal(pk, []byte("ticket-1"), []byte("A123456789"))
		if err != nil {
			t.Fatal(err)
		}
		if pt, err := Open(sk, []byte("ticket-1"), ct); err != nil || string(pt) != "A123456789" {
			t.Fatalf("open: %q %v", pt, err)
		}
		if _, err := Open(sk, []byte("ticket-2"), ct); err == nil {
			t.Fatal("opened under another context")
		}
		other, _ := GenerateKey(kemID)
		if _, err := Open(other, []byte("ticket-1"), ct); err == nil {
			t.Fatal("opened with another key")
		}
	}
	if _, err := GenerateKey(0x0010); err == nil {
		t.Fatal("P-256 KEM allowed")
	}
}

func TestStream(t *testing.T) {
	sk, _ := GenerateKey(KEMHybrid)
	enc, s, err := NewSender(sk.PublicKey(), []byte("transfer"))
	if err != nil {
		t.Fatal(err)
	}
	parts := [][]byte{make([]byte, ChunkSize), []byte("middle"), []byte("end")}
	rand.Read(parts[0])
	var cts [][]byte
	for i, p := range parts {
		ct, err := s.Seal(p, i == len(parts)-1)
		if err != nil {
			t.Fatal(err)
		}
		cts = append(cts, ct)
	}
	if _, err := s.Seal([]byte("more"), false); err == nil {
		t.Fatal("sealed after the final chunk")
	}
	if _, err := s.Seal(make([]byte, ChunkSize+1), false); err == nil {
		t.Fatal("sealed an oversize chunk")
	}
	open := func(order []int, finals []bool) error {
		r, err := NewReceiver(sk, enc, []byte("transfer"))
		if err != nil {
			return err
		}
		for k, i := range order {
			pt, err := r.Open(cts[i], finals[k])
			if err != nil {
				return err
			}
			if !bytes.Equal(pt, parts[i]) {
				return errors.New("wrong plaintext")
			}
		}
		if !r.Done() {
			return errors.New("not done")
		}
		return nil
	}
	tests := []struct {
		name   string
		order  []int
		finals []bool
		ok     bool
	}{
		{"in order", []int{0, 1, 2}, []bool{false, false, true}, true},
		{"reordered", []int{1, 0, 2}, []bool{false, false, true}, false},
		{"dropped middle", []int{0, 2}, []bool{false, true}, false},
		{"truncated", []int{0, 1}, []bool{false, false}, false},
		{"middle claimed final", []int{0, 1}, []bool{false, true}, false},
		{"replayed", []int{0, 0, 1, 2}, []bool{false, false, false, true}, false},
	}
	for _, tt := range tests {
		if err := open(tt.order, tt.finals); (err == nil) != tt.ok {
			t.Errorf("%s: err = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
	// Tampering with a chunk.
	r, _ := NewReceiver(sk, enc, []byte("transfer"))
	bad := append([]byte{}, cts[0]...)
	bad[10] ^= 1
	if _, err := r.Open(bad, false); !errors.Is(err, ErrChunk) {
		t.Fatalf("tampered: %v", err)
	}
}

func BenchmarkSealChunk(b *testing.B) {
	sk, _ := GenerateKey(KEMHybrid)
	_, s, _ := NewSender(sk.PublicKey(), nil)
	buf := make([]byte, ChunkSize)
	b.SetBytes(ChunkSize)
	for b.Loop() {
		if _, err := s.Seal(buf, false); err != nil {
			b.Fatal(err)
		}
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	path := t.TempDir() + "/hpke.key"
	k1, err := LoadOrCreateKey(path, KEMHybrid)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadOrCreateKey(path, KEMX25519) // the stored key wins over the argument
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k1.PublicKey().Bytes(), k2.PublicKey().Bytes()) || k2.KEM().ID() != KEMHybrid {
		t.Fatal("reloaded another key")
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
}
