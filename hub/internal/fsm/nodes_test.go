package fsm

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/hubapi"
)

func TestNodesAndKeyring(t *testing.T) {
	a := &applier{t: t, f: open(t, filepath.Join(t.TempDir(), "state.db"))}
	now := time.Now().UTC().Truncate(time.Millisecond)
	cert := func(serial string) CertRecord {
		return CertRecord{Serial: serial, SPIFFEID: "spiffe://t/hub/hub-2", Kind: "node", Now: now}
	}
	join := func(tok, node string) *NodeJoin {
		return &NodeJoin{TokenHash: tok, Node: node, RaftAddress: "127.0.0.1:8301", APIURL: "https://127.0.0.1:8444", Cert: cert(node), Now: now}
	}
	hint := func(id string, at time.Time) *KeyringAdd {
		return &KeyringAdd{Key: KeyringKey{ID: id, Purpose: PurposeHint, Sealed: []byte("sealed"), Public: []byte("pub-" + id), KEM: 0x647a, CreatedAt: at}}
	}
	steps := []struct {
		name string
		cmd  Command
		want Code
		msg  string
	}{
		{"first node states itself", &NodeInfo{Node: "hub-1", RaftAddress: "127.0.0.1:8300", APIURL: "https://127.0.0.1:8443", Now: now}, OK, ""},
		{"node info with a bad URL", &NodeInfo{Node: "hub-1", RaftAddress: "127.0.0.1:8300", APIURL: "http://x", Now: now}, Invalid, "api_url"},
		{"token", &NodeTokenCreate{Hash: "nt1", ExpiresAt: now.Add(time.Hour), Now: now}, OK, ""},
		{"expired token", &NodeTokenCreate{Hash: "nt0", ExpiresAt: now, Now: now}, Invalid, "expiry"},
		{"join with an unknown token", join("nope", "hub-2"), Forbidden, "unknown or already used"},
		{"join", join("nt1", "hub-2"), OK, ""},
		{"join again with the used token", join("nt1", "hub-3"), Forbidden, "already used"},
		{"token 2", &NodeTokenCreate{Hash: "nt2", ExpiresAt: now.Add(time.Hour), Now: now}, OK, ""},
		{"a member that lost its disk joins again", join("nt2", "hub-1"), OK, ""},
		{"token 3", &NodeTokenCreate{Hash: "nt3", ExpiresAt: now.Add(time.Hour), Now: now}, OK, ""},
		{"ticket key of hub-2", &HubKey{Key: HubKeyRecord{KID: "t2", Node: "hub-2", Kind: hubapi.HubKeyTicket, PublicKey: []byte("k"), CreatedAt: now}}, OK, ""},
		{"remove", &NodeRemove{Node: "hub-2", Now: now}, OK, ""},
		{"remove again", &NodeRemove{Node: "hub-2", Now: now}, Conflict, "already removed"},
		{"a removed node cannot come back", &NodeInfo{Node: "hub-2", RaftAddress: "127.0.0.1:8301", APIURL: "https://127.0.0.1:8444", Now: now}, Gone, "removed"},
		{"remove unknown", &NodeRemove{Node: "hub-9", Now: now}, NotFound, "not known"},
		{"a removed node id is never reused", join("nt3", "hub-2"), Conflict, "never reused"},
		{"hint key", hint("h1", now), OK, ""},
		{"hint key twice", hint("h1", now), Conflict, "exists"},
		{"hint key without public", &KeyringAdd{Key: KeyringKey{ID: "h9", Purpose: PurposeHint, Sealed: []byte("s"), CreatedAt: now}}, Invalid, "public"},
		{"unknown purpose", &KeyringAdd{Key: KeyringKey{ID: "x", Purpose: "fun", Sealed: []byte("s"), CreatedAt: now}}, Invalid, "purpose"},
		{"rotate hint", hint("h2", now.Add(time.Minute)), OK, ""},
		{"lookup key", &KeyringAdd{Key: KeyringKey{ID: "l1", Purpose: PurposeLookup, Sealed: []byte("s"), CreatedAt: now}}, OK, ""},
		{"lookup key rotated", &KeyringAdd{Key: KeyringKey{ID: "l2", Purpose: PurposeLookup, Sealed: []byte("s"), CreatedAt: now.Add(time.Minute)}}, OK, ""},
	}
	for _, s := range steps {
		r := a.apply(s.cmd)
		if r.Code != s.want || !strings.Contains(r.Message, s.msg) {
			t.Fatalf("%s: got %+v, want code %d with %q", s.name, r, s.want, s.msg)
		}
	}
	if !a.f.NodeRemoved("hub-2") || a.f.NodeRemoved("hub-1") {
		t.Error("NodeRemoved is wrong")
	}
	keys, _ := a.f.HubKeys()
	var kids []string
	for _, k := range keys {
		kids = append(kids, k.KID)
	}
	// hub-2's ticket key retired with the node; only the active hint key is published.
	if strings.Join(kids, ",") != "h2" {
		t.Errorf("directory keys %v, want only the active hint key h2", kids)
	}
	ring, _ := a.f.Keyring()
	active := map[string]string{}
	for _, k := range ring {
		if k.RetiredAt.IsZero() {
			active[k.Purpose] = k.ID
		}
	}
	if active[PurposeHint] != "h2" || active[PurposeLookup] != "l2" || len(ring) != 4 {
		t.Errorf("keyring %+v", ring)
	}
	v := a.f.KeyringVersion()
	if r := a.apply(&KeyringPurge{Before: now.Add(time.Hour)}); r.Code != OK {
		t.Fatal(r)
	}
	if a.f.KeyringVersion() == v {
		t.Error("a keyring purge did not move the keyring version")
	}
	ring, _ = a.f.Keyring()
	// The retired hint key went; the retired lookup key stays (hashes made with it are still looked up).
	if len(ring) != 3 {
		t.Errorf("after purge: %+v", ring)
	}
}
