package pemfile

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/filetest"
	"github.com/mydatafed/mydata/pkg/spiffetest"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

func TestWriteAtomic(t *testing.T) {
	tests := []struct {
		name string
		mode os.FileMode
		old  []byte // written first, nil for none
		data []byte
	}{
		{"new secret file", 0o600, nil, []byte("new")},
		{"new public file", 0o644, nil, []byte("new")},
		{"group readable", 0o640, nil, []byte("new")},
		// Replacing must also replace the mode: a key rewritten over a 0644 file must not stay readable.
		{"replaces a looser file", 0o600, []byte("old contents, longer than the new ones"), []byte("new")},
		{"replaces with empty data", 0o600, []byte("old"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "file.pem")
			if tt.old != nil {
				if err := os.WriteFile(path, tt.old, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := WriteAtomic(path, tt.data, tt.mode); err != nil {
				t.Fatalf("WriteAtomic: %v", err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.data) {
				t.Errorf("contents %q, want %q", got, tt.data)
			}
			filetest.Mode(t, path, tt.mode)
			// The temporary file beside the target must not outlive the call.
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("directory holds %d entries, want only the file: %v", len(entries), names(entries))
			}
		})
	}
}

func TestWriteAtomicMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "file.pem")
	err := WriteAtomic(path, []byte("x"), 0o600)
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("WriteAtomic into a missing directory: %v, want ErrNotExist", err)
	}
}

func TestParseCertificates(t *testing.T) {
	ca := spiffetest.New(t, "mydata.test")
	a := ca.SVID(t, "spiffe://mydata.test/hub/a", time.Hour).Certificates[0]
	b := ca.SVID(t, "spiffe://mydata.test/hub/b", time.Hour).Certificates[0]
	one := EncodeCertificates([]*x509.Certificate{a})
	two := EncodeCertificates([]*x509.Certificate{a, b})
	keyPEM := mustEncodeKey(t, mustECDSA(t, elliptic.P256()))

	tests := []struct {
		name    string
		data    []byte
		want    []*x509.Certificate
		wantErr string
	}{
		{"one", one, []*x509.Certificate{a}, ""},
		{"two in order", two, []*x509.Certificate{a, b}, ""},
		{"empty", nil, nil, "no certificate found"},
		{"text without PEM", []byte("not a certificate\n"), nil, "no certificate found"},
		{"private key only", keyPEM, nil, `unexpected PEM block "PRIVATE KEY"`},
		{"certificate then key", append(append([]byte{}, one...), keyPEM...), nil, `unexpected PEM block "PRIVATE KEY"`},
		{"garbage DER", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}), nil, "x509"},
		// Without its END line the only block does not decode, so there is no certificate at all.
		{"truncated", one[:len(one)/2], nil, "no certificate found: the last PEM block is cut off"},
		// pem.Decode alone would return the first certificate and drop the cut-off second one.
		{"second truncated", two[:len(two)-40], nil, "the last PEM block is cut off or malformed"},
		{"second without END line", bytes.TrimSuffix(two, []byte("-----END CERTIFICATE-----\n")), nil, "the last PEM block is cut off"},
		{"text after the last block", append(bytes.Clone(two), "junk\n"...), nil, "text after the last PEM block is not PEM"},
		// pem.Decode skips a broken block when a good one follows it on a new line.
		{"broken block first", bytes.Join([][]byte{one[:len(one)/2], one}, []byte("\n")), nil, "a cut-off or malformed PEM block comes before block 1"},
		{"broken block between", bytes.Join([][]byte{one, one[:len(one)/2], one}, []byte("\n")), nil, "comes before block 2"},
		// Without a newline the next BEGIN line is none, so nothing after the cut decodes.
		{"broken block run into the next", bytes.Join([][]byte{one, one[:len(one)/2], one}, nil), nil, "the last PEM block is cut off"},
		// Whitespace around blocks and text before them are what other tools write; they stay allowed.
		{"blank lines around", bytes.Join([][]byte{[]byte("\n\n"), one, []byte("\n \t\n"), one, []byte("\n\n")}, nil), []*x509.Certificate{a, a}, ""},
		{"text before the block", append([]byte("subject=CN = test\n"), one...), []*x509.Certificate{a}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCertificates(tt.data)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d certificates, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if !got[i].Equal(tt.want[i]) {
					t.Errorf("certificate %d differs", i)
				}
			}
		})
	}
}

func TestReadCertificates(t *testing.T) {
	ca := spiffetest.New(t, "mydata.test")
	path := filepath.Join(t.TempDir(), "bundle.crt")
	if err := WriteAtomic(path, EncodeCertificates([]*x509.Certificate{ca.Root}), 0o644); err != nil {
		t.Fatal(err)
	}
	certs, err := ReadCertificates(path)
	if err != nil || len(certs) != 1 || !certs[0].Equal(ca.Root) {
		t.Fatalf("ReadCertificates = %v, %v", certs, err)
	}
	// Callers tell "no file yet" from "bad file" with errors.Is.
	if _, err := ReadCertificates(filepath.Join(t.TempDir(), "none.crt")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v, want ErrNotExist", err)
	}
	// A bundle cut off inside its second certificate is refused, naming the file.
	two := EncodeCertificates([]*x509.Certificate{ca.Root, ca.Root})
	if err := os.WriteFile(path, two[:len(two)-40], 0o644); err != nil {
		t.Fatal(err)
	}
	if certs, err := ReadCertificates(path); err == nil || !strings.Contains(err.Error(), path+": the last PEM block is cut off") {
		t.Fatalf("ReadCertificates of a cut-off bundle = %d certificates, %v; want an error naming %s", len(certs), err, path)
	}
}

func TestReadKey(t *testing.T) {
	p256 := mustECDSA(t, elliptic.P256())
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	xDER, err := x509.MarshalPKCS8PrivateKey(x)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(p256)
	if err != nil {
		t.Fatal(err)
	}
	good := mustEncodeKey(t, p256)
	ca := spiffetest.New(t, "mydata.test")

	tests := []struct {
		name    string
		data    []byte
		want    crypto.Signer
		wantErr string
	}{
		{"ECDSA P-256", good, p256, ""},
		{"Ed25519", mustEncodeKey(t, ed), ed, ""},
		{"empty", nil, nil, "no PKCS#8 PRIVATE KEY block"},
		{"SEC1 EC key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), nil, "no PKCS#8 PRIVATE KEY block"},
		{"certificate", EncodeCertificates([]*x509.Certificate{ca.Root}), nil, "no PKCS#8 PRIVATE KEY block"},
		{"truncated", good[:len(good)-20], nil, "no PKCS#8 PRIVATE KEY block"},
		{"garbage DER", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("junk")}), nil, "pkcs8"},
		// An X25519 key is valid PKCS#8 but cannot sign.
		{"X25519", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: xDER}), nil, "cannot sign"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "key.pem")
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := ReadKey(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				// Every error names the file, the parse error too.
				if !strings.HasPrefix(err.Error(), path+": ") {
					t.Errorf("err = %v, want it to start with %s", err, path)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if eq, ok := got.(interface{ Equal(crypto.PrivateKey) bool }); !ok || !eq.Equal(tt.want) {
				t.Errorf("read key %T differs from the one written", got)
			}
		})
	}
}

func TestReadKeyMissing(t *testing.T) {
	// nodekeys and ca create a key only on ErrNotExist; any other error must not look like it.
	if _, err := ReadKey(filepath.Join(t.TempDir(), "none.key")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v, want ErrNotExist", err)
	}
}

func TestSVIDRoundTrip(t *testing.T) {
	ca := spiffetest.New(t, "mydata.test")
	leafOnly := ca.SVID(t, "spiffe://mydata.test/org/moi/connector/dp1", time.Hour)
	withRoot := ca.SVID(t, "spiffe://mydata.test/hub/hub-1", time.Hour)
	withRoot.Certificates = append(withRoot.Certificates, ca.Root)

	for _, svid := range []*x509svid.SVID{leafOnly, withRoot} {
		t.Run(svid.ID.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "svid.pem")
			if err := WriteSVID(path, svid); err != nil {
				t.Fatal(err)
			}
			filetest.Mode(t, path, 0o600)
			got, err := ReadSVID(path)
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != svid.ID {
				t.Errorf("ID %s, want %s", got.ID, svid.ID)
			}
			if len(got.Certificates) != len(svid.Certificates) {
				t.Fatalf("chain of %d, want %d", len(got.Certificates), len(svid.Certificates))
			}
			for i := range got.Certificates {
				if !got.Certificates[i].Equal(svid.Certificates[i]) {
					t.Errorf("certificate %d differs", i)
				}
			}
			if !got.PrivateKey.(*ecdsa.PrivateKey).Equal(svid.PrivateKey) {
				t.Error("private key differs")
			}
		})
	}
}

func TestReadSVIDRefuses(t *testing.T) {
	ca := spiffetest.New(t, "mydata.test")
	svid := ca.SVID(t, "spiffe://mydata.test/hub/hub-1", time.Hour)
	other := ca.SVID(t, "spiffe://mydata.test/hub/hub-2", time.Hour)
	keyPEM, err := EncodeKey(svid.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	otherKeyPEM, err := EncodeKey(other.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := EncodeCertificates(svid.Certificates)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	ecBlock := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte("x")})
	whole := cat(keyPEM, certPEM)

	tests := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"empty", nil, "want a PRIVATE KEY and at least one CERTIFICATE"},
		{"key only", keyPEM, "want a PRIVATE KEY and at least one CERTIFICATE"},
		{"certificate only", certPEM, "want a PRIVATE KEY and at least one CERTIFICATE"},
		{"wrong block type", cat(keyPEM, certPEM, ecBlock), `unexpected PEM block "EC PRIVATE KEY"`},
		{"key of another SVID", cat(otherKeyPEM, certPEM), "svid.pem"},
		{"CA certificate as leaf", cat(keyPEM, EncodeCertificates([]*x509.Certificate{ca.Root})), "svid.pem"},
		{"truncated in the certificate", whole[:len(whole)-40], "want a PRIVATE KEY and at least one CERTIFICATE, and the last PEM block is cut off"},
		{"truncated in the key", whole[:len(keyPEM)/2], "want a PRIVATE KEY and at least one CERTIFICATE, and the last PEM block is cut off"},
		{"text after the chain", cat(whole, []byte("junk")), "svid.pem: text after the last PEM block is not PEM"},
		{"garbage key DER", cat(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("junk")}), certPEM), "svid.pem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "svid.pem")
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := ReadSVID(path)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
	if _, err := ReadSVID(filepath.Join(t.TempDir(), "none.pem")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v, want ErrNotExist", err)
	}
}

func TestReadSVIDTruncatedChain(t *testing.T) {
	ca := spiffetest.New(t, "mydata.test")
	svid := ca.SVID(t, "spiffe://mydata.test/hub/hub-1", time.Hour)
	svid.Certificates = append(svid.Certificates, ca.Root)
	path := filepath.Join(t.TempDir(), "svid.pem")
	if err := WriteSVID(path, svid); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Cut the file inside its last certificate: the leaf is whole, the rest of the chain is not.
	if err := os.WriteFile(path, data[:len(data)-40], 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadSVID(path)
	if err == nil {
		t.Fatalf("ReadSVID accepted a file whose last PEM block is cut off and returned a chain of %d instead of 2", len(got.Certificates))
	}
	if want := path + ": the last PEM block is cut off"; !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want one containing %q", err, want)
	}
}

func names(entries []os.DirEntry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func mustECDSA(t *testing.T, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustEncodeKey(t *testing.T, k crypto.Signer) []byte {
	t.Helper()
	b, err := EncodeKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
