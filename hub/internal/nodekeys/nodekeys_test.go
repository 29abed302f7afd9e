package nodekeys

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/filetest"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/pemfile"
	"github.com/mydatafed/mydata/pkg/seal"
	"github.com/mydatafed/mydata/pkg/ticket"
)

var keyFiles = []string{"ticket.key", "hpke.key", "session.key"}

func TestLoadOrCreateFresh(t *testing.T) {
	// A directory that does not exist yet is made, private to the hub's user.
	dir := filepath.Join(t.TempDir(), "keys")
	k, err := LoadOrCreate(dir, "hub-1")
	if err != nil {
		t.Fatal(err)
	}
	filetest.Mode(t, dir, 0o700)
	for _, name := range keyFiles {
		filetest.Mode(t, filepath.Join(dir, name), 0o600)
	}
	if len(k.Session) != 32 {
		t.Errorf("session key of %d bytes, want 32", len(k.Session))
	}
	if k.Node != "hub-1" || k.Tickets == nil || k.HPKE == nil {
		t.Fatalf("incomplete keys: %+v", k)
	}
	if got := HPKEKeyID(k.HPKE.PublicKey().Bytes()); k.HPKEKID != got {
		t.Errorf("HPKEKID %q, want %q", k.HPKEKID, got)
	}
	if id := k.HPKE.KEM().ID(); id != seal.KEMHybrid {
		t.Errorf("HPKE KEM %#04x, want the hybrid %#04x", id, seal.KEMHybrid)
	}

	pub, err := k.Public()
	if err != nil {
		t.Fatal(err)
	}
	if len(pub) != 2 {
		t.Fatalf("Public gives %d keys, want 2", len(pub))
	}
	byKind := map[string]hubapi.HubKey{}
	for _, p := range pub {
		byKind[p.Kind] = p
		if p.Node != "hub-1" || p.CreatedAt.IsZero() {
			t.Errorf("key %s: node %q, created %v", p.KID, p.Node, p.CreatedAt)
		}
	}
	tk, ok := byKind[hubapi.HubKeyTicket]
	if !ok || tk.KID != k.Tickets.KeyID() {
		t.Fatalf("ticket key %+v, want KID %s", tk, k.Tickets.KeyID())
	}
	pk, err := x509.ParsePKIXPublicKey(tk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if ec, ok := pk.(*ecdsa.PublicKey); !ok || ec.Curve != elliptic.P256() {
		t.Errorf("published ticket key is %T, want ECDSA P-256", pk)
	}
	hk, ok := byKind[hubapi.HubKeyHPKE]
	if !ok || hk.KID != k.HPKEKID || hk.KEM != seal.KEMHybrid || !bytes.Equal(hk.PublicKey, k.HPKE.PublicKey().Bytes()) {
		t.Errorf("HPKE key %+v does not match the node's", hk)
	}
}

func TestLoadOrCreateStable(t *testing.T) {
	dir := t.TempDir()
	first, err := LoadOrCreate(dir, "hub-1")
	if err != nil {
		t.Fatal(err)
	}
	before := readFiles(t, dir)
	second, err := LoadOrCreate(dir, "hub-1")
	if err != nil {
		t.Fatal(err)
	}
	// Loading must never rewrite a key: the published halves would stop matching.
	if after := readFiles(t, dir); !equalFiles(before, after) {
		t.Error("reload changed the key files")
	}
	if first.Tickets.KeyID() != second.Tickets.KeyID() {
		t.Errorf("ticket KID %s, then %s", first.Tickets.KeyID(), second.Tickets.KeyID())
	}
	if first.HPKEKID != second.HPKEKID {
		t.Errorf("HPKE KID %s, then %s", first.HPKEKID, second.HPKEKID)
	}
	if !bytes.Equal(first.Session, second.Session) {
		t.Error("session key changed")
	}
	p1, err := first.Public()
	if err != nil {
		t.Fatal(err)
	}
	p2, err := second.Public()
	if err != nil {
		t.Fatal(err)
	}
	for i := range p1 {
		if p1[i].KID != p2[i].KID || !bytes.Equal(p1[i].PublicKey, p2[i].PublicKey) || !p1[i].CreatedAt.Equal(p2[i].CreatedAt) {
			t.Errorf("published key %d differs after reload: %+v vs %+v", i, p1[i], p2[i])
		}
	}

	// A ticket signed before the restart verifies against what the node publishes after it.
	pk, err := x509.ParsePKIXPublicKey(p2[0].PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := first.Tickets.Sign(&ticket.Claims{
		ID: "t1", ConsentID: "c1", Dataset: "ds", DP: "spiffe://mydata.test/org/moi/connector/dp1",
		Redeemer: "spiffe://mydata.test/org/fia/connector/sp1", SealedSubject: []byte{1}, RecipientKEM: seal.KEMX25519,
		RecipientKey: []byte{2}, Issuer: "hub-1", IssuedAt: now.Unix(), ExpiresAt: now.Add(time.Minute).Unix(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ticket.Verify(tok, keySet{p2[0].KID: pk.(*ecdsa.PublicKey)}, now); err != nil {
		t.Errorf("ticket signed before reload does not verify after it: %v", err)
	}

	// The HPKE key still opens what was sealed to it before the restart.
	sealed, err := seal.Seal(first.HPKE.PublicKey(), []byte("info"), []byte("hint"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := seal.Open(second.HPKE, []byte("info"), sealed); err != nil || string(got) != "hint" {
		t.Errorf("open after reload: %q, %v", got, err)
	}
}

func TestLoadOrCreateRemakesOnlyTheMissingKey(t *testing.T) {
	for _, missing := range keyFiles {
		t.Run(missing, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := LoadOrCreate(dir, "hub-1"); err != nil {
				t.Fatal(err)
			}
			before := readFiles(t, dir)
			if err := os.Remove(filepath.Join(dir, missing)); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadOrCreate(dir, "hub-1"); err != nil {
				t.Fatal(err)
			}
			after := readFiles(t, dir)
			for _, name := range keyFiles {
				same := bytes.Equal(before[name], after[name])
				if name == missing && same {
					t.Errorf("%s was not made anew", name)
				}
				if name != missing && !same {
					t.Errorf("%s changed although it was present", name)
				}
			}
			filetest.Mode(t, filepath.Join(dir, missing), 0o600)
		})
	}
}

func TestLoadOrCreateRefusesBadFiles(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(p256)
	if err != nil {
		t.Fatal(err)
	}
	x25519, err := seal.GenerateKey(seal.KEMX25519)
	if err != nil {
		t.Fatal(err)
	}
	x25519Raw, err := x25519.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	hpkeBlock := func(kem string, b []byte) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: "MYDATA HPKE PRIVATE KEY", Headers: map[string]string{"KEM": kem}, Bytes: b})
	}

	tests := []struct {
		name    string
		file    string
		data    []byte
		wantErr []string
	}{
		{"empty ticket key", "ticket.key", nil, []string{"ticket key", "ticket.key", "PRIVATE KEY"}},
		{"SEC1 ticket key", "ticket.key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), []string{"ticket key", "PRIVATE KEY"}},
		{"Ed25519 ticket key", "ticket.key", mustEncodeKey(t, ed), []string{"ticket key", "ticket.key", "not an ECDSA key"}},
		{"P-384 ticket key", "ticket.key", mustEncodeKey(t, p384), []string{"ticket key", "ticket.key", "P-256"}},
		{"garbage ticket key DER", "ticket.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("junk")}), []string{"ticket key", "ticket.key"}},
		{"truncated ticket key", "ticket.key", mustEncodeKey(t, p256)[:100], []string{"ticket key"}},
		{"empty HPKE key", "hpke.key", nil, []string{"HPKE key", "hpke.key"}},
		{"ticket key as HPKE key", "hpke.key", mustEncodeKey(t, p256), []string{"HPKE key", "no MYDATA HPKE PRIVATE KEY block"}},
		{"HPKE key without KEM", "hpke.key", hpkeBlock("", x25519Raw), []string{"HPKE key", "KEM header"}},
		{"HPKE key of a KEM not allowed", "hpke.key", hpkeBlock("0x0010", x25519Raw), []string{"HPKE key", "not allowed"}},
		// The hybrid KEM's private key is a 32-byte seed, so only its length can be checked.
		{"truncated HPKE key", "hpke.key", hpkeBlock("0x647a", x25519Raw[:16]), []string{"HPKE key", "private key"}},
		{"short session key", "session.key", make([]byte, 31), []string{"session key", "want 32 bytes, have 31"}},
		{"empty session key", "session.key", nil, []string{"session key", "have 0"}},
		{"long session key", "session.key", make([]byte, 64), []string{"session key", "have 64"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := LoadOrCreate(dir, "hub-1"); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, tt.file)
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			before := readFiles(t, dir)
			k, err := LoadOrCreate(dir, "hub-1")
			if err == nil {
				t.Fatalf("loaded keys %+v from a bad %s", k, tt.file)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("err %q does not mention %q", err, want)
				}
			}
			// A bad key is reported, never replaced: replacing it would silently change the node's identity.
			if !equalFiles(before, readFiles(t, dir)) {
				t.Error("a refused load changed the key files")
			}
		})
	}
}

func TestPublicCreatedAt(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadOrCreate(dir, "hub-1"); err != nil {
		t.Fatal(err)
	}
	// The keys are made at different times, e.g. one was lost and remade; each is published with its own.
	ticketMade := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	hpkeMade := time.Date(2025, 6, 7, 8, 9, 10, 0, time.UTC)
	for name, at := range map[string]time.Time{"ticket.key": ticketMade, "hpke.key": hpkeMade} {
		if err := os.Chtimes(filepath.Join(dir, name), at, at); err != nil {
			t.Fatal(err)
		}
	}
	k, err := LoadOrCreate(dir, "hub-1")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := k.Public()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Time{hubapi.HubKeyTicket: ticketMade, hubapi.HubKeyHPKE: hpkeMade}
	for _, p := range pub {
		if !p.CreatedAt.Equal(want[p.Kind]) {
			t.Errorf("%s key published as created %v, want %v (its file's time)", p.Kind, p.CreatedAt, want[p.Kind])
		}
	}
}

func TestLoadOrCreateKeyFileIsDirectory(t *testing.T) {
	for _, name := range keyFiles {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			// Anything but "does not exist" must be an error, not a reason to make a new key.
			if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadOrCreate(dir, "hub-1"); err == nil {
				t.Fatalf("loaded keys with %s a directory", name)
			}
		})
	}
}

func TestHPKEKeyID(t *testing.T) {
	tests := []struct {
		name string
		a, b []byte
		same bool
	}{
		{"same key", []byte("key one"), []byte("key one"), true},
		{"different keys", []byte("key one"), []byte("key two"), false},
		{"empty", nil, []byte{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := HPKEKeyID(tt.a), HPKEKeyID(tt.b)
			if (a == b) != tt.same {
				t.Errorf("HPKEKeyID %q and %q, want same=%v", a, b, tt.same)
			}
			// 16 bytes of hash, base64url without padding: short, URL- and header-safe.
			if len(a) != 22 || strings.ContainsAny(a, "+/=") {
				t.Errorf("key ID %q is not 22 base64url characters", a)
			}
		})
	}
}

type keySet map[string]*ecdsa.PublicKey

func (s keySet) TicketKey(kid string) (*ecdsa.PublicKey, bool) {
	k, ok := s[kid]
	return k, ok
}

func readFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

func equalFiles(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for name, data := range a {
		if other, ok := b[name]; !ok || !bytes.Equal(data, other) {
			return false
		}
	}
	return true
}

func mustEncodeKey(t *testing.T, k crypto.Signer) []byte {
	t.Helper()
	b, err := pemfile.EncodeKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
