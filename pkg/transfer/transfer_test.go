package transfer

import (
	"bytes"
	"crypto/hpke"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/seal"
	"github.com/mydatafed/mydata/pkg/spiffetest"
	"github.com/mydatafed/mydata/pkg/ticket"
	"github.com/mydatafed/mydata/pkg/wire"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

const dpID = "spiffe://mydata.test/org/moi/connector/dp1"

type fixture struct {
	ca   *spiffetest.CA
	dp   *x509svid.SVID
	key  hpke.PrivateKey
	exp  Expect
	man  Manifest
	data []byte
}

func newFixture(t testing.TB, size int) *fixture {
	ca := spiffetest.New(t, "mydata.test")
	key, err := seal.GenerateKey(seal.KEMHybrid)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, size)
	rand.Read(data)
	return &fixture{
		ca: ca, dp: ca.SVID(t, dpID, time.Hour), key: key, data: data,
		exp: Expect{TicketID: "t1", Dataset: "moi.household", DP: spiffeid.RequireFromString(dpID), MaxSize: 8 << 20, Bundles: ca.Bundle()},
		man: Manifest{TicketID: "t1", ConsentID: "c1", Dataset: "moi.household", ContentType: "application/json", DeclaredSize: int64(size)},
	}
}

func (f *fixture) send(t testing.TB, signer *x509svid.SVID) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := Send(&buf, f.man, f.key.PublicKey(), bytes.NewReader(f.data), 1<<30, signer)
	if err != nil || n != int64(len(f.data)) {
		t.Fatalf("send: %d %v", n, err)
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	for _, size := range []int{0, 1, seal.ChunkSize - 1, seal.ChunkSize, seal.ChunkSize + 1, 3*seal.ChunkSize + 17} {
		f := newFixture(t, size)
		stream := f.send(t, f.dp)
		var out bytes.Buffer
		res, err := Receive(bytes.NewReader(stream), &out, f.exp, f.key)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if res.Header.Status != OK || res.Size != int64(size) || !bytes.Equal(out.Bytes(), f.data) {
			t.Fatalf("size %d: got %d bytes, status %s", size, res.Size, res.Header.Status)
		}
		if res.Header.Manifest.ContentType != "application/json" {
			t.Fatal("manifest lost")
		}
	}
}

// frames splits a stream into its frames.
func frames(t testing.TB, stream []byte) []wire.Frame {
	var out []wire.Frame
	r := bytes.NewReader(stream)
	for {
		f, err := wire.Read(r)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
}

func join(t testing.TB, fs []wire.Frame) []byte {
	var b bytes.Buffer
	for _, f := range fs {
		if err := wire.Write(&b, f); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

func TestTamperingIsCaught(t *testing.T) {
	f := newFixture(t, 3*seal.ChunkSize)
	good := f.send(t, f.dp)
	fs := frames(t, good) // header, 3 chunks, trailer
	if len(fs) != 5 {
		t.Fatalf("%d frames", len(fs))
	}
	otherDP := f.ca.SVID(t, "spiffe://mydata.test/org/moi/connector/dp2", time.Hour)
	foreign := spiffetest.New(t, "mydata.test").SVID(t, dpID, time.Hour)
	flip := func(fr wire.Frame) wire.Frame {
		p := append([]byte{}, fr.Payload...)
		p[len(p)/2] ^= 1
		return wire.Frame{Type: fr.Type, Payload: p}
	}
	smallLimit := f.exp
	smallLimit.MaxSize = 2 * seal.ChunkSize
	lying := *f
	lying.man.DeclaredSize = 10
	tests := []struct {
		name   string
		stream []byte
		exp    Expect
		want   error
		wantIn string
	}{
		{"truncated after header", join(t, fs[:1]), f.exp, ErrTruncated, ""},
		{"truncated before trailer", join(t, fs[:4]), f.exp, ErrTruncated, ""},
		{"cut inside a frame", good[:len(good)-5], f.exp, ErrTruncated, ""},
		{"empty stream", nil, f.exp, ErrTruncated, ""},
		{"chunks reordered", join(t, []wire.Frame{fs[0], fs[2], fs[1], fs[3], fs[4]}), f.exp, seal.ErrChunk, ""},
		{"chunk dropped", join(t, []wire.Frame{fs[0], fs[1], fs[3], fs[4]}), f.exp, seal.ErrChunk, ""},
		{"chunk flipped", join(t, []wire.Frame{fs[0], flip(fs[1]), fs[2], fs[3], fs[4]}), f.exp, seal.ErrChunk, ""},
		{"trailer as chunk", join(t, []wire.Frame{fs[0], fs[1], fs[2], fs[3], {Type: wire.TypeChunk, Payload: fs[4].Payload}}), f.exp, seal.ErrChunk, ""},
		{"data after trailer", join(t, append(append([]wire.Frame{}, fs...), wire.Frame{Type: wire.TypePing})), f.exp, nil, "after the trailer"},
		{"signed by another DP", f.send(t, otherDP), f.exp, ErrSigner, ""},
		{"signed under a foreign root", f.send(t, foreign), f.exp, ErrSigner, ""},
		{"over the receiver's limit", good, smallLimit, ErrTooLarge, ""},
		{"more than declared", lying.send(t, f.dp), f.exp, ErrTooLarge, ""},
		{"another ticket", good, Expect{TicketID: "t2", Dataset: "moi.household", DP: f.exp.DP, MaxSize: 1 << 30, Bundles: f.exp.Bundles}, nil, "manifest is for ticket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Receive(bytes.NewReader(tt.stream), io.Discard, tt.exp, f.key)
			if err == nil {
				t.Fatal("accepted")
			}
			if tt.want != nil && !errors.Is(err, tt.want) || tt.wantIn != "" && !strings.Contains(err.Error(), tt.wantIn) {
				t.Fatalf("err = %v, want %v %q", err, tt.want, tt.wantIn)
			}
		})
	}
	// A bad signature by the right signer: re-seal a trailer with a zeroed signature needs the sender's
	// context, so build the whole stream with a signer whose key does not match its certificate.
	mismatched := &x509svid.SVID{ID: f.dp.ID, Certificates: f.dp.Certificates, PrivateKey: otherDP.PrivateKey}
	if _, err := Receive(bytes.NewReader(f.send(t, mismatched)), io.Discard, f.exp, f.key); !errors.Is(err, ErrSigner) {
		t.Fatalf("mismatched key: %v", err)
	}
}

func TestStatuses(t *testing.T) {
	f := newFixture(t, 0)
	for _, st := range []Status{NoRecord, NotReady, Refused, Unavailable, Failed} {
		var buf bytes.Buffer
		if err := WriteStatus(&buf, st, "why", 30); err != nil {
			t.Fatal(err)
		}
		res, err := Receive(&buf, io.Discard, f.exp, f.key)
		if err != nil || res.Header.Status != st || res.Header.RetryAfter != 30 || res.Header.Message != "why" {
			t.Fatalf("%s: %+v %v", st, res, err)
		}
	}
	if WriteStatus(io.Discard, OK, "", 0) == nil {
		t.Fatal("OK without content written")
	}
	var buf bytes.Buffer
	wire.Write(&buf, wire.Frame{Type: wire.TypeHeader, Payload: []byte(`{"status":"maybe"}`)})
	if _, err := Receive(&buf, io.Discard, f.exp, f.key); err == nil {
		t.Fatal("unknown status accepted")
	}
}

func TestTicketFrame(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteTicket(&buf, "a.b.c"); err != nil {
		t.Fatal(err)
	}
	if tok, err := ReadTicket(&buf); err != nil || tok != "a.b.c" {
		t.Fatalf("%q %v", tok, err)
	}
	buf.Reset()
	wire.Write(&buf, wire.Frame{Type: wire.TypePing})
	if _, err := ReadTicket(&buf); err == nil {
		t.Fatal("ping taken for a ticket")
	}
	if err := WriteTicket(io.Discard, strings.Repeat("a", ticket.MaxSize+1)); err == nil {
		t.Fatal("oversize ticket written")
	}
}

func FuzzReceive(f *testing.F) {
	fx := newFixture(f, seal.ChunkSize+5)
	f.Add(fx.send(f, fx.dp))
	var buf bytes.Buffer
	WriteStatus(&buf, NotReady, "later", 5)
	f.Add(buf.Bytes())
	f.Add([]byte{byte(wire.TypeHeader), 0, 0, 0, 2, '{', '}'})
	f.Fuzz(func(t *testing.T, stream []byte) {
		var out bytes.Buffer
		res, err := Receive(bytes.NewReader(stream), &out, fx.exp, fx.key)
		if err != nil || res.Header.Status != OK {
			return
		}
		// Anything accepted as delivered must be exactly what the DP signed.
		if !bytes.Equal(out.Bytes(), fx.data) {
			t.Fatal("delivered content differs from what was signed")
		}
	})
}

func BenchmarkSendReceive(b *testing.B) {
	f := newFixture(b, 16<<20)
	b.SetBytes(int64(len(f.data)))
	for b.Loop() {
		pr, pw := io.Pipe()
		go func() {
			_, err := Send(pw, f.man, f.key.PublicKey(), bytes.NewReader(f.data), 1<<30, f.dp)
			pw.CloseWithError(err)
		}()
		exp := f.exp
		exp.MaxSize = 1 << 30
		if _, err := Receive(pr, io.Discard, exp, f.key); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSignersRemembersVerifiedChains checks the SP's memory of verified DP chains: a chain verified once
// is not verified against the bundle again for a while, yet every delivery's signature and signer are
// still checked.
func TestSignersRemembersVerifiedChains(t *testing.T) {
	f := newFixture(t, 100)
	signers := NewSigners()
	f.exp.Signers = signers
	receive := func(exp Expect, stream []byte) error {
		_, err := Receive(bytes.NewReader(stream), io.Discard, exp, f.key)
		return err
	}
	if err := receive(f.exp, f.send(t, f.dp)); err != nil {
		t.Fatal(err)
	}
	// A bundle that trusts nothing: only the remembered chain lets the next delivery verify.
	distrust := f.exp
	distrust.Bundles = spiffetest.New(t, "mydata.test").Bundle()
	if err := receive(distrust, f.send(t, f.dp)); err != nil {
		t.Fatalf("a remembered chain was verified again: %v", err)
	}
	noMemory := distrust
	noMemory.Signers = nil
	if err := receive(noMemory, f.send(t, f.dp)); !errors.Is(err, ErrSigner) {
		t.Fatalf("without memory a chain from another CA verified: %v", err)
	}
	// The remembered chain is the DP's: another connector's chain from the same CA is not the signer wanted.
	other := f.ca.SVID(t, "spiffe://mydata.test/org/fia/connector/dp2", time.Hour)
	if err := receive(f.exp, f.send(t, other)); !errors.Is(err, ErrSigner) {
		t.Fatalf("another connector's signature: %v", err)
	}
	if err := receive(f.exp, f.send(t, other)); !errors.Is(err, ErrSigner) {
		t.Fatalf("another connector's signature, remembered: %v", err)
	}
	// A forged signature under a remembered chain is refused.
	fs := frames(t, f.send(t, f.dp))
	last := len(fs) - 1
	fs[last].Payload[len(fs[last].Payload)-1] ^= 1
	if err := receive(f.exp, join(t, fs)); err == nil {
		t.Fatal("a damaged trailer verified under a remembered chain")
	}
	// Memory ends: past signerMemory the chain is verified again.
	if _, ok := signers.get(chainKey([][]byte{[]byte("never sent")}), time.Now()); ok {
		t.Fatal("a chain that was never sent is remembered")
	}
	if signers.m.Len() == 0 {
		t.Fatal("no chain remembered")
	}
	k := chainKey(func() [][]byte {
		var raw [][]byte
		for _, c := range f.dp.Certificates {
			raw = append(raw, c.Raw)
		}
		return raw
	}())
	if _, ok := signers.get(k, time.Now()); !ok {
		t.Fatal("the DP's chain is not remembered under its bytes")
	}
	if _, ok := signers.get(k, time.Now().Add(signerMemory+time.Second)); ok {
		t.Fatal("a chain is remembered past signerMemory")
	}
}

// writeLog records each Write to it separately.
type writeLog struct{ writes [][]byte }

func (w *writeLog) Write(p []byte) (int, error) {
	w.writes = append(w.writes, bytes.Clone(p))
	return len(p), nil
}

// TestReusedBuffersNeverLeak: Send reads, seals and writes every chunk in one reused buffer and Receive
// opens every chunk in place in another, so a chunk shorter than the one before it must carry exactly its
// own bytes on the wire (checked by opening each frame with crypto/hpke itself) and reach dst as exactly
// its own plaintext; a tampered chunk must reach dst not at all.
func TestReusedBuffersNeverLeak(t *testing.T) {
	f := newFixture(t, 2*seal.ChunkSize+17)
	// Distinct bytes per chunk, so a leftover of the previous chunk would show.
	for i := range f.data {
		f.data[i] = byte(i/seal.ChunkSize + 1)
	}
	stream := f.send(t, f.dp)
	fs := frames(t, stream)
	if len(fs) != 5 {
		t.Fatalf("%d frames, want header, 3 chunks, trailer", len(fs))
	}

	var wh wireHeader
	if err := json.Unmarshal(fs[0].Payload, &wh); err != nil {
		t.Fatal(err)
	}
	var m Manifest
	if err := json.Unmarshal(wh.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	r, err := hpke.NewRecipient(m.Enc, f.key, hpke.HKDFSHA256(), hpke.AES256GCM(), ticket.ContentInfo(m.TicketID))
	if err != nil {
		t.Fatal(err)
	}
	chunks := [][]byte{f.data[:seal.ChunkSize], f.data[seal.ChunkSize : 2*seal.ChunkSize], f.data[2*seal.ChunkSize:]}
	for i, want := range chunks {
		fr := fs[1+i]
		if fr.Type != wire.TypeChunk || len(fr.Payload) != len(want)+seal.Overhead {
			t.Fatalf("frame %d: type 0x%02x, %d bytes, want a chunk of %d", 1+i, uint8(fr.Type), len(fr.Payload), len(want)+seal.Overhead)
		}
		pt, err := r.Open([]byte("mydata chunk"), fr.Payload)
		if err != nil || !bytes.Equal(pt, want) {
			t.Fatalf("chunk %d does not open with crypto/hpke to exactly what was sent: %v", i, err)
		}
	}

	var out writeLog
	if _, err := Receive(bytes.NewReader(stream), &out, f.exp, f.key); err != nil {
		t.Fatal(err)
	}
	if len(out.writes) != len(chunks) {
		t.Fatalf("%d writes to dst, want %d", len(out.writes), len(chunks))
	}
	for i, want := range chunks {
		if !bytes.Equal(out.writes[i], want) {
			t.Fatalf("write %d: %d bytes, not exactly chunk %d's %d", i, len(out.writes[i]), i, len(want))
		}
	}

	// The last chunk tampered with: dst gets the first two chunks and nothing of the third.
	bad := append([]wire.Frame{}, fs...)
	p := bytes.Clone(fs[3].Payload)
	p[0] ^= 1
	bad[3] = wire.Frame{Type: wire.TypeChunk, Payload: p}
	out = writeLog{}
	if _, err := Receive(bytes.NewReader(join(t, bad)), &out, f.exp, f.key); !errors.Is(err, seal.ErrChunk) {
		t.Fatalf("tampered last chunk: %v", err)
	}
	if len(out.writes) != 2 || !bytes.Equal(out.writes[1], chunks[1]) {
		t.Fatalf("tampered last chunk: %d writes reached dst, want the 2 genuine chunks", len(out.writes))
	}
}
