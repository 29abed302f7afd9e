// Package pemfile reads and writes the PEM files of certificates and private keys that hubs and connectors
// keep on disk, atomically so a crash never leaves half a key.
package pemfile

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// WriteAtomic writes data to a temporary file beside path, syncs it and renames it over path, so a
// reader sees the old or the new file, never half of one.
func WriteAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// ReadCertificates reads a PEM file of one or more certificates.
func ReadCertificates(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseCertificates(data, path)
}

// ParseCertificates parses PEM certificates, refusing other blocks, a cut-off block and text after the last.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	return parseCertificates(data, "")
}

// parseCertificates is ParseCertificates; path, if not empty, names the file in errors about its PEM.
func parseCertificates(data []byte, path string) ([]*x509.Certificate, error) {
	blocks, damage := decode(data)
	if damage != nil && path != "" {
		damage = fmt.Errorf("%s: %w", path, damage)
	}
	var certs []*x509.Certificate
	for _, b := range blocks {
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		if damage != nil {
			return nil, fmt.Errorf("no certificate found: %w", damage)
		}
		return nil, errors.New("no certificate found")
	}
	if damage != nil {
		return nil, damage
	}
	return certs, nil
}

// ReadKey reads a PKCS#8 PEM private key.
func ReadKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: no PKCS#8 PRIVATE KEY block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: key of type %T cannot sign", path, k)
	}
	return s, nil
}

// EncodeCertificates is the PEM form of certs.
func EncodeCertificates(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// EncodeKey is the PKCS#8 PEM form of key.
func EncodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ReadSVID reads an SVID kept as one PEM file of its private key and certificate chain. One file, replaced
// atomically, means a reader never pairs a new key with an old certificate during a renewal.
func ReadSVID(path string) (*x509svid.SVID, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blocks, damage := decode(data)
	var certs, key []byte
	for _, b := range blocks {
		switch b.Type {
		case "CERTIFICATE":
			certs = append(certs, b.Bytes...)
		case "PRIVATE KEY":
			key = b.Bytes
		default:
			return nil, fmt.Errorf("%s: unexpected PEM block %q", path, b.Type)
		}
	}
	if len(certs) == 0 || key == nil {
		if damage != nil {
			return nil, fmt.Errorf("%s: want a PRIVATE KEY and at least one CERTIFICATE, and %w", path, damage)
		}
		return nil, fmt.Errorf("%s: want a PRIVATE KEY and at least one CERTIFICATE", path)
	}
	if damage != nil {
		return nil, fmt.Errorf("%s: %w", path, damage)
	}
	svid, err := x509svid.ParseRaw(certs, key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return svid, nil
}

// WriteSVID writes an SVID as one PEM file, mode 0600.
func WriteSVID(path string, svid *x509svid.SVID) error {
	keyPEM, err := EncodeKey(svid.PrivateKey)
	if err != nil {
		return err
	}
	return WriteAtomic(path, append(keyPEM, EncodeCertificates(svid.Certificates)...), 0o600)
}

// decode splits data into its PEM blocks. pem.Decode skips what it cannot decode, so on its own a file cut
// off inside its last block reads as a shorter, valid-looking one: a key, a leaf and half a root load as a
// one-certificate chain. decode therefore reports, as damage, a BEGIN line that starts no complete block and
// anything but whitespace after the last block. Text before a block stays allowed, as pem.Decode allows it.
func decode(data []byte) (blocks []*pem.Block, damage error) {
	begin := []byte("-----BEGIN")
	for {
		b, rest := pem.Decode(data)
		if b == nil {
			break
		}
		// What Decode stepped over holds a second BEGIN line only if it skipped a broken block.
		if damage == nil && bytes.Count(data[:len(data)-len(rest)], begin) > 1 {
			damage = fmt.Errorf("a cut-off or malformed PEM block comes before block %d", len(blocks)+1)
		}
		blocks = append(blocks, b)
		data = rest
	}
	tail := bytes.TrimSpace(data)
	switch {
	case damage != nil:
	case bytes.Contains(tail, begin):
		damage = errors.New("the last PEM block is cut off or malformed")
	case len(tail) > 0 && len(blocks) > 0:
		damage = errors.New("text after the last PEM block is not PEM")
	}
	return blocks, damage
}
