package seal

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
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

// TestInPlaceIsUsed checks that streams seal and open in place on this Go: crypto/hpke's context has the
// fields contextAEAD reads, and sealing through them interoperates with crypto/hpke. Should a Go release
// change that, streams still work (through crypto/hpke's Seal and Open) but cost more: this test says so.
func TestInPlaceIsUsed(t *testing.T) {
	if !inPlaceWorks() {
		t.Fatal("crypto/hpke's context is not as contextAEAD expects: streams fall back to a new slice per chunk")
	}
	for _, kemID := range []uint16{KEMHybrid, KEMX25519} {
		sk, _ := GenerateKey(kemID)
		enc, s, err := NewSender(sk.PublicKey(), []byte("transfer"))
		if err != nil {
			t.Fatal(err)
		}
		r, err := NewReceiver(sk, enc, []byte("transfer"))
		if err != nil {
			t.Fatal(err)
		}
		if s.fast == nil || r.fast == nil {
			t.Fatalf("KEM 0x%04x: sender in place %v, receiver in place %v", kemID, s.fast != nil, r.fast != nil)
		}
	}
	if contextAEAD(&struct{ x *int }{new(int)}) != nil || contextAEAD(nil) != nil || contextAEAD(struct{}{}) != nil {
		t.Fatal("contextAEAD took fields from something that is not an hpke context")
	}
}

// inPlaceVariants are the ways a stream's two ends may seal and open: in place, or through crypto/hpke's
// own Seal and Open (the fallback), in every combination, since either end may run either.
var inPlaceVariants = []struct {
	name           string
	fastS, fastR   bool
	sealIn, openIn bool // SealAppend into a reused buffer, OpenInPlace
}{
	{"in place both ends", true, true, true, true},
	{"hpke sender, in-place receiver", false, true, true, true},
	{"in-place sender, hpke receiver", true, false, true, true},
	{"hpke both ends", false, false, true, true},
	{"new slices both ends", true, true, false, false},
}

func newStreamPair(t *testing.T, kemID uint16, fastS, fastR bool) (*Sender, func() *Receiver) {
	t.Helper()
	sk, _ := GenerateKey(kemID)
	enc, s, err := NewSender(sk.PublicKey(), []byte("transfer"))
	if err != nil {
		t.Fatal(err)
	}
	if !fastS {
		s.fast = nil
	}
	return s, func() *Receiver {
		r, err := NewReceiver(sk, enc, []byte("transfer"))
		if err != nil {
			t.Fatal(err)
		}
		if !fastR {
			r.fast = nil
		}
		return r
	}
}

// TestStreamReusedBuffers seals chunks of shrinking sizes one after another into one reused buffer, as
// transfer.Send does, and opens them in place in one reused buffer, as transfer.Receive does: every chunk
// must come out exactly as it went in, never with bytes of the larger chunk before it; a tampered,
// reordered, truncated or replayed stream must still be refused, and a chunk that does not open must
// leave none of its plaintext in the buffer.
func TestStreamReusedBuffers(t *testing.T) {
	parts := [][]byte{make([]byte, ChunkSize), make([]byte, 1000), []byte("x"), nil, make([]byte, ChunkSize-1), []byte("the end")}
	for _, p := range parts {
		rand.Read(p)
	}
	for _, v := range inPlaceVariants {
		for _, kemID := range []uint16{KEMHybrid, KEMX25519} {
			t.Run(fmt.Sprintf("%s/0x%04x", v.name, kemID), func(t *testing.T) {
				s, newReceiver := newStreamPair(t, kemID, v.fastS, v.fastR)
				frame := make([]byte, 5+ChunkSize+Overhead)
				var cts [][]byte
				for i, p := range parts {
					var ct []byte
					var err error
					if v.sealIn {
						// As transfer.Send: the plaintext is read into the buffer after the header and
						// sealed over itself.
						n := copy(frame[5:], p)
						ct, err = s.SealAppend(frame[:5], frame[5:5+n], i == len(parts)-1)
					} else {
						ct, err = s.Seal(p, i == len(parts)-1)
					}
					if err != nil {
						t.Fatal(err)
					}
					if v.sealIn {
						ct = ct[5:]
					}
					if len(ct) != len(p)+Overhead {
						t.Fatalf("chunk %d: %d bytes sealed, want %d", i, len(ct), len(p)+Overhead)
					}
					cts = append(cts, bytes.Clone(ct))
				}
				if _, err := s.SealAppend(frame[:0], []byte("more"), false); err == nil {
					t.Fatal("sealed after the final chunk")
				}

				open := func(r *Receiver, buf, ct []byte, final bool) ([]byte, error) {
					if v.openIn {
						n := copy(buf, ct)
						return r.OpenInPlace(buf[:n], final)
					}
					return r.Open(ct, final)
				}
				buf := make([]byte, ChunkSize+Overhead)
				r := newReceiver()
				for i, ct := range cts {
					pt, err := open(r, buf, ct, i == len(cts)-1)
					if err != nil {
						t.Fatalf("chunk %d: %v", i, err)
					}
					if !bytes.Equal(pt, parts[i]) {
						t.Fatalf("chunk %d: opened %d bytes, not the %d sealed", i, len(pt), len(parts[i]))
					}
				}
				if !r.Done() {
					t.Fatal("not done after the final chunk")
				}

				refused := []struct {
					name   string
					order  []int
					finals []bool
				}{
					{"reordered", []int{1, 0}, []bool{false, false}},
					{"replayed", []int{0, 0}, []bool{false, false}},
					{"dropped", []int{0, 2}, []bool{false, false}},
					{"truncated, last claimed final", []int{0, 1, 2}, []bool{false, false, true}},
				}
				for _, tt := range refused {
					r := newReceiver()
					var err error
					for k, i := range tt.order {
						if _, err = open(r, buf, cts[i], tt.finals[k]); err != nil {
							break
						}
					}
					if !errors.Is(err, ErrChunk) {
						t.Errorf("%s: err = %v, want ErrChunk", tt.name, err)
					}
				}

				r = newReceiver()
				bad := bytes.Clone(cts[0])
				bad[len(bad)/2] ^= 1
				n := copy(buf, bad)
				if _, err := r.OpenInPlace(buf[:n], false); !errors.Is(err, ErrChunk) {
					t.Fatalf("tampered: %v", err)
				}
				if bytes.Contains(buf[:n], parts[0][:64]) {
					t.Fatal("a chunk that did not open left its plaintext in the buffer")
				}
				// The refusal did not move the stream on: the genuine chunk still opens in its place.
				if pt, err := open(r, buf, cts[0], false); err != nil || !bytes.Equal(pt, parts[0]) {
					t.Fatalf("genuine chunk after a tampered one: %v", err)
				}
			})
		}
	}
}

func BenchmarkSealChunkInPlace(b *testing.B) {
	sk, _ := GenerateKey(KEMHybrid)
	_, s, _ := NewSender(sk.PublicKey(), nil)
	frame := make([]byte, 5+ChunkSize+Overhead)
	b.SetBytes(ChunkSize)
	for b.Loop() {
		if _, err := s.SealAppend(frame[:5], frame[5:5+ChunkSize], false); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenChunkInPlace(b *testing.B) {
	sk, _ := GenerateKey(KEMHybrid)
	enc, s, _ := NewSender(sk.PublicKey(), nil)
	r, _ := NewReceiver(sk, enc, nil)
	ct, _ := s.Seal(make([]byte, ChunkSize), false)
	buf := make([]byte, len(ct))
	b.SetBytes(ChunkSize)
	for b.Loop() {
		// Each chunk is sealed under the next nonce; reopening one chunk measures a failed open. Keep the
		// receiver's sequence at 0 instead, as a successful open of chunk 0 each time.
		copy(buf, ct)
		if r.fast != nil {
			r.fast.seq = 0
		} else {
			b.Skip("not in place")
		}
		if _, err := r.OpenInPlace(buf, false); err != nil {
			b.Fatal(err)
		}
	}
}
