package seal

import (
	"crypto/hpke"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/mydatafed/mydata/pkg/pemfile"
)

const pemType = "MYDATA HPKE PRIVATE KEY"

// LoadOrCreateKey reads the HPKE private key kept at path, or makes one for kemID and keeps it there with
// mode 0600.
func LoadOrCreateKey(path string, kemID uint16) (hpke.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		b, _ := pem.Decode(data)
		if b == nil || b.Type != pemType {
			return nil, fmt.Errorf("%s: no %s block", path, pemType)
		}
		id, err := strconv.ParseUint(b.Headers["KEM"], 0, 16)
		if err != nil {
			return nil, fmt.Errorf("%s: KEM header: %w", path, err)
		}
		return ParsePrivateKey(uint16(id), b.Bytes)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	sk, err := GenerateKey(kemID)
	if err != nil {
		return nil, err
	}
	raw, err := sk.Bytes()
	if err != nil {
		return nil, err
	}
	block := &pem.Block{Type: pemType, Headers: map[string]string{"KEM": fmt.Sprintf("0x%04x", kemID)}, Bytes: raw}
	if err := pemfile.WriteAtomic(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	return sk, nil
}
