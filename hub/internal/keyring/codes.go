package keyring

import (
	"encoding/hex"
	"fmt"

	"github.com/mydatafed/mydata/hub/internal/fsm"
)

// Short codes a citizen carries (counter codes: 8 characters, about 39 bits) are kept in the state only as
// keyed hashes under the lookup keys, as national IDs are: an unkeyed hash of so small a space is undone by
// trying every code, while without the key a copy of the state, a snapshot or a backup reveals none. The
// kind keeps the hashes of one sort of code apart from another's and from the IDs'.

// CodeHash is the keyed hash of a code of the given kind under the active lookup key: "<key id>:<hex>".
func (k *Keyring) CodeHash(kind, code string) (string, error) {
	a, err := k.activeKey(fsm.PurposeLookup)
	if err != nil {
		return "", err
	}
	return a.ID + ":" + hex.EncodeToString(mac(a.material, []string{"code", kind, code})), nil
}

// CodeHashes are the hashes of a code under every lookup key, newest first: a code issued just before a
// rotation is found after it.
func (k *Keyring) CodeHashes(kind, code string) ([]string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.load(); err != nil {
		return nil, err
	}
	if len(k.lookups) == 0 {
		return nil, fmt.Errorf("%w for %s", ErrNoKey, fsm.PurposeLookup)
	}
	out := make([]string, 0, len(k.lookups))
	for _, l := range k.lookups {
		out = append(out, l.ID+":"+hex.EncodeToString(mac(l.material, []string{"code", kind, code})))
	}
	return out, nil
}
