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
	"errors"
	"io/fs"
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

// keyFiles are the files a node keeps its own keys in: only the ticket-signing key. The keys all nodes share
// (sessions, login hints) are in the keyring.
var keyFiles = []string{"ticket.key"}

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
	if k.Node != "hub-1" || k.Tickets == nil {
		t.Fatalf("incomplete keys: %+v", k)
	}

	pub, err := k.Public()
	if err != nil {
		t.Fatal(err)
	}
	if len(pub) != 1 {
		t.Fatalf("Public gives %d keys, want only the ticket key: %+v", len(pub), pub)
	}
	tk := pub[0]
	if tk.Kind != hubapi.HubKeyTicket || tk.KID != k.Tickets.KeyID() {
		t.Fatalf("published key %+v, want a %s key with KID %s", tk, hubapi.HubKeyTicket, k.Tickets.KeyID())
	}
	if tk.Node != "hub-1" || tk.CreatedAt.IsZero() || tk.KEM != 0 {
		t.Errorf("ticket key: node %q, created %v, KEM %#04x", tk.Node, tk.CreatedAt, tk.KEM)
	}
	pk, err := x509.ParsePKIXPublicKey(tk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ec, ok := pk.(*ecdsa.PublicKey)
	if !ok || ec.Curve != elliptic.P256() {
		t.Fatalf("published ticket key is %T, want ECDSA P-256", pk)
	}
	// What is published is the public half of the key on disk.
	onDisk, err := pemfile.ReadKey(filepath.Join(dir, "ticket.key"))
	if err != nil {
		t.Fatal(err)
	}
	if !ec.Equal(onDisk.Public()) {
		t.Error("published ticket key is not the public half of ticket.key")
	}
}

func TestLoadOrCreateMakesNoSharedKeys(t *testing.T) {
	// The session and login-hint keys are the cluster's, in the keyring: a node must not make its own.
	dir := filepath.Join(t.TempDir(), "keys")
	if _, err := LoadOrCreate(dir, "hub-1"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"hpke.key", "session.key"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: stat err %v, want it not to exist", name, err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != strings.Join(keyFiles, ",") {
		t.Errorf("key directory holds %v, want only %v", names, keyFiles)
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
	// Loading must never rewrite a key: the published half would stop matching.
	if after := readFiles(t, dir); !equalFiles(before, after) {
		t.Error("reload changed the key files")
	}
	if first.Tickets.KeyID() != second.Tickets.KeyID() {
		t.Errorf("ticket KID %s, then %s", first.Tickets.KeyID(), second.Tickets.KeyID())
	}
	p1, err := first.Public()
	if err != nil {
		t.Fatal(err)
	}
	p2, err := second.Public()
	if err != nil {
		t.Fatal(err)
	}
	if len(p1) != 1 || len(p2) != 1 {
		t.Fatalf("Public gives %d then %d keys, want 1", len(p1), len(p2))
	}
	if p1[0].KID != p2[0].KID || !bytes.Equal(p1[0].PublicKey, p2[0].PublicKey) || !p1[0].CreatedAt.Equal(p2[0].CreatedAt) {
		t.Errorf("published key differs after reload: %+v vs %+v", p1[0], p2[0])
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

	// Every error is the ticket key's and names its file; wantErr is what it must say besides.
	tests := []struct {
		name    string
		data    []byte
		wantErr []string
	}{
		{"empty ticket key", nil, []string{"PRIVATE KEY"}},
		{"SEC1 ticket key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), []string{"PRIVATE KEY"}},
		{"Ed25519 ticket key", mustEncodeKey(t, ed), []string{"not an ECDSA key"}},
		{"P-384 ticket key", mustEncodeKey(t, p384), []string{"P-256"}},
		{"garbage ticket key DER", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("junk")}), nil},
		{"truncated ticket key", mustEncodeKey(t, p256)[:100], nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := LoadOrCreate(dir, "hub-1"); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "ticket.key")
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			before := readFiles(t, dir)
			k, err := LoadOrCreate(dir, "hub-1")
			if err == nil {
				t.Fatalf("loaded keys %+v from a bad ticket.key", k)
			}
			for _, want := range append([]string{"ticket key", path}, tt.wantErr...) {
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
	// The key is published as made when its file was written, not when the node last started.
	ticketMade := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(dir, "ticket.key"), ticketMade, ticketMade); err != nil {
		t.Fatal(err)
	}
	k, err := LoadOrCreate(dir, "hub-1")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := k.Public()
	if err != nil {
		t.Fatal(err)
	}
	if len(pub) != 1 {
		t.Fatalf("Public gives %d keys, want 1", len(pub))
	}
	if p := pub[0]; p.Kind != hubapi.HubKeyTicket || !p.CreatedAt.Equal(ticketMade) {
		t.Errorf("%s key published as created %v, want a ticket key created %v (its file's time)", p.Kind, p.CreatedAt, ticketMade)
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
