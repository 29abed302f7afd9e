package keyring

import (
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/pkg/filetest"
	"github.com/mydatafed/mydata/pkg/seal"
)

// node is a state machine with the log applied to it directly, as raft would on every node.
type node struct {
	f     *fsm.FSM
	index uint64
}

func newNode(t *testing.T) *node {
	f, err := fsm.Open(filepath.Join(t.TempDir(), "state.db"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &node{f: f}
}

// cluster applies every command to every node, in order.
type cluster []*node

func (c cluster) apply(cmd fsm.Command) error {
	if err := fsm.Validate(cmd); err != nil {
		return err
	}
	data, err := fsm.Encode(cmd)
	if err != nil {
		return err
	}
	var res fsm.Result
	for _, n := range c {
		n.index++
		res = n.f.Apply(&raft.Log{Index: n.index, Type: raft.LogCommand, Data: data}).(fsm.Result)
	}
	return res.Err()
}

func TestKeyringAcrossNodes(t *testing.T) {
	dir := t.TempDir()
	kek, created, err := LoadOrCreateKEK(filepath.Join(dir, "cluster.kek"))
	if err != nil || !created {
		t.Fatal(created, err)
	}
	filetest.Mode(t, filepath.Join(dir, "cluster.kek"), 0o600)
	if again, created, err := LoadOrCreateKEK(filepath.Join(dir, "cluster.kek")); err != nil || created || string(again) != string(kek) {
		t.Fatal("the key was not kept")
	}
	a, b := newNode(t), newNode(t)
	c := cluster{a, b}
	ka, _ := New(kek, a.f)
	kb, _ := New(kek, b.f)

	if _, err := ka.Sign("x"); err == nil {
		t.Fatal("signed with no key")
	}
	if err := ka.Ensure(c.apply); err != nil {
		t.Fatal(err)
	}
	if m, _ := kb.Missing(); len(m) != 0 {
		t.Fatalf("missing on the other node: %v", m)
	}
	// Made on one node, checked on the other.
	tag, err := ka.Sign("session", "A123456789")
	if err != nil {
		t.Fatal(err)
	}
	if !kb.Verify(tag, "session", "A123456789") || kb.Verify(tag, "session", "B223456787") || kb.Verify("x."+strings.Split(tag, ".")[1], "session", "A123456789") {
		t.Fatal("Verify across nodes is wrong")
	}
	// A hint sealed to the published key opens on the other node.
	keys, _ := a.f.HubKeys()
	if len(keys) != 1 {
		t.Fatalf("published %d keys", len(keys))
	}
	pub, err := seal.ParsePublicKey(keys[0].KEM, keys[0].PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ct, _ := seal.Seal(pub, []byte("info"), []byte("A123456789"))
	if pt, err := seal.Open(kb.HintKey(keys[0].KID), []byte("info"), ct); err != nil || string(pt) != "A123456789" {
		t.Fatalf("hint on the other node: %q %v", pt, err)
	}
	// Subjects: sealed on one node, opened on the other, bound to their context.
	sealed, err := ka.SealSubject("A123456789", "consent-1")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sealed), "A123456789") {
		t.Fatal("sealed subject holds the ID in clear")
	}
	if id, err := kb.OpenSubject(sealed, "consent-1"); err != nil || id != "A123456789" {
		t.Fatalf("open: %q %v", id, err)
	}
	if _, err := kb.OpenSubject(sealed, "consent-2"); err == nil {
		t.Fatal("a sealed subject opened in another context")
	}
	h1, _ := ka.LookupHash("A123456789")
	if h, _ := kb.LookupHash("A123456789"); h != h1 || strings.Contains(h1, "A123456789") {
		t.Fatalf("lookup hashes differ across nodes or show the ID: %s %s", h, h1)
	}

	// Rotation: new tags with the new key, old tags and seals still good on every node.
	for _, p := range fsm.KeyringPurposes {
		if _, err := ka.Rotate(p, c.apply); err != nil {
			t.Fatal(err)
		}
	}
	tag2, _ := kb.Sign("session", "A123456789")
	if strings.Split(tag2, ".")[0] == strings.Split(tag, ".")[0] {
		t.Fatal("rotation kept the signing key")
	}
	if !ka.Verify(tag, "session", "A123456789") || !ka.Verify(tag2, "session", "A123456789") {
		t.Fatal("a retired or new key does not verify")
	}
	if _, err := ka.OpenSubject(sealed, "consent-1"); err != nil {
		t.Fatalf("a subject sealed before rotation: %v", err)
	}
	hs, _ := kb.LookupHashes("A123456789")
	if len(hs) != 2 || hs[1] != h1 {
		t.Fatalf("lookup hashes after rotation %v, want the new one and %s", hs, h1)
	}
	// Purge: retired keys go (but not lookup keys); what they signed no longer verifies.
	if err := c.apply(&fsm.KeyringPurge{Before: time.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if kb.Verify(tag, "session", "A123456789") || !kb.Verify(tag2, "session", "A123456789") {
		t.Fatal("after purge: the retired key still verifies, or the active one does not")
	}
	if hs, _ := kb.LookupHashes("A123456789"); len(hs) != 2 {
		t.Fatal("a lookup key was purged")
	}

	// A node with another cluster key cannot read the keyring.
	other, _, _ := LoadOrCreateKEK(filepath.Join(t.TempDir(), "k"))
	kx, _ := New(other, a.f)
	if _, err := kx.Sign("x"); err == nil || !strings.Contains(err.Error(), "cannot be opened") {
		t.Fatalf("foreign cluster key: %v", err)
	}
}
