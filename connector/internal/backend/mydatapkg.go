package backend

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/smallstep/pkcs7"
)

// A MyData package is a zip of the dataset's files (JSON, CSV, PDF...) plus two members at its root:
//
//	manifest.json      {"files":[{"name":"household.json","sha256":"<64 hex digits>"}, ...]}
//	manifest.json.p7s  a detached CMS (PKCS #7) SignedData over manifest.json's bytes, DER or PEM,
//	                   by the agency's signing key (RSA or ECDSA, SHA-256 or stronger)
//
// Every other member must be listed once, with its digest, and every listed file must be there.
const (
	PackageManifest  = "manifest.json"
	PackageSignature = "manifest.json.p7s"

	maxManifestBytes  = 1 << 20
	maxSignatureBytes = 256 << 10
	maxPackageFiles   = 1000
)

// packageManifest is manifest.json.
type packageManifest struct {
	Files []struct {
		Name   string `json:"name"`
		SHA256 string `json:"sha256"`
	} `json:"files"`
}

// parseManifest reads manifest.json into name → digest, refusing duplicates, bad names and bad digests.
func parseManifest(data []byte) (map[string][sha256.Size]byte, error) {
	var m packageManifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("manifest: %v", err)
	}
	if len(m.Files) == 0 {
		return nil, errors.New("manifest: lists no files")
	}
	if len(m.Files) > maxPackageFiles {
		return nil, fmt.Errorf("manifest: more than %d files", maxPackageFiles)
	}
	out := make(map[string][sha256.Size]byte, len(m.Files))
	for _, f := range m.Files {
		if err := checkMemberName(f.Name); err != nil {
			return nil, fmt.Errorf("manifest: %w", err)
		}
		if f.Name == PackageManifest || f.Name == PackageSignature {
			return nil, fmt.Errorf("manifest: lists %s", f.Name)
		}
		if _, dup := out[f.Name]; dup {
			return nil, fmt.Errorf("manifest: lists %q twice", f.Name)
		}
		var d [sha256.Size]byte
		if len(f.SHA256) != 2*sha256.Size {
			return nil, fmt.Errorf("manifest: the digest of %q is not 64 hex digits", f.Name)
		}
		if _, err := hex.Decode(d[:], []byte(f.SHA256)); err != nil {
			return nil, fmt.Errorf("manifest: the digest of %q is not 64 hex digits", f.Name)
		}
		out[f.Name] = d
	}
	return out, nil
}

// checkMemberName refuses names that would escape a directory when the recipient unpacks the package.
func checkMemberName(n string) error {
	switch {
	case n == "", len(n) > 255:
		return fmt.Errorf("file name of %d bytes", len(n))
	case strings.ContainsAny(n, "\\\x00:"), strings.HasPrefix(n, "/"), path.Clean(n) != n, n == ".." || strings.HasPrefix(n, "../"):
		return fmt.Errorf("file name %q is not a plain relative path", n)
	}
	return nil
}

// verifyPackage checks a package: the signature over the manifest by signer (skipped when signer is nil,
// which only the tests and the fuzz target do), then that the zip holds exactly the manifest's files with
// their digests, reading at most maxBytes uncompressed in all.
func verifyPackage(pkg []byte, signer *x509.Certificate, maxBytes int64, now time.Time) error {
	zr, err := zip.NewReader(bytes.NewReader(pkg), int64(len(pkg)))
	if err != nil {
		return fmt.Errorf("not a zip: %v", err)
	}
	if len(zr.File) > maxPackageFiles+2 {
		return fmt.Errorf("more than %d files", maxPackageFiles)
	}
	var manifest, sig *zip.File
	members := map[string]*zip.File{}
	for _, f := range zr.File {
		if strings.HasSuffix(f.Name, "/") && f.UncompressedSize64 == 0 {
			continue // a directory entry
		}
		if err := checkMemberName(f.Name); err != nil {
			return err
		}
		if _, dup := members[f.Name]; dup {
			return fmt.Errorf("%q twice in the zip", f.Name)
		}
		members[f.Name] = f
		switch f.Name {
		case PackageManifest:
			manifest = f
		case PackageSignature:
			sig = f
		}
	}
	if manifest == nil {
		return fmt.Errorf("no %s", PackageManifest)
	}
	budget := maxBytes
	mdata, err := readMember(manifest, min(maxManifestBytes, budget))
	if err != nil {
		return err
	}
	budget -= int64(len(mdata))
	if signer != nil {
		if sig == nil {
			return fmt.Errorf("no %s", PackageSignature)
		}
		sdata, err := readMember(sig, min(maxSignatureBytes, budget))
		if err != nil {
			return err
		}
		budget -= int64(len(sdata))
		if err := checkSignature(mdata, sdata, signer, now); err != nil {
			return err
		}
	}
	listed, err := parseManifest(mdata)
	if err != nil {
		return err
	}
	for name, f := range members {
		if name == PackageManifest || name == PackageSignature {
			continue
		}
		want, ok := listed[name]
		if !ok {
			return fmt.Errorf("%q is not in the manifest", name)
		}
		n, got, err := hashMember(f, budget)
		if err != nil {
			return err
		}
		budget -= n
		if got != want {
			return fmt.Errorf("%q does not match its digest in the manifest", name)
		}
		delete(listed, name)
	}
	for name := range listed {
		return fmt.Errorf("%q is in the manifest but not in the zip", name)
	}
	return nil
}

// readMember reads a small member whole, refusing more than limit bytes (a zip's declared sizes are not
// trusted: the reader is limited).
func readMember(f *zip.File, limit int64) ([]byte, error) {
	rc, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("%s: %v", f.Name, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %v", f.Name, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", f.Name, limit)
	}
	return data, nil
}

// hashMember digests a member, refusing more than budget bytes uncompressed (a zip bomb stops there).
func hashMember(f *zip.File, budget int64) (int64, [sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	rc, err := f.Open()
	if err != nil {
		return 0, sum, fmt.Errorf("%s: %v", f.Name, err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(rc, budget+1))
	if err != nil {
		return n, sum, fmt.Errorf("%s: %v", f.Name, err)
	}
	if n > budget {
		return n, sum, errors.New("the package unpacks to more than max_bytes")
	}
	h.Sum(sum[:0])
	return n, sum, nil
}

// checkSignature verifies a detached CMS signature over manifest by the pinned certificate: the signer must
// be that certificate (certificates the signature carries are ignored), alone, with SHA-256 or stronger.
func checkSignature(manifest, sig []byte, signer *x509.Certificate, now time.Time) error {
	if blk, _ := pem.Decode(sig); blk != nil {
		sig = blk.Bytes
	}
	p7, err := pkcs7.Parse(sig)
	if err != nil {
		return fmt.Errorf("signature: %v", err)
	}
	if len(p7.Content) != 0 && !bytes.Equal(p7.Content, manifest) {
		return errors.New("signature: covers other content than the manifest")
	}
	if len(p7.Signers) != 1 {
		return fmt.Errorf("signature: %d signers, want 1", len(p7.Signers))
	}
	switch alg := p7.Signers[0].DigestAlgorithm.Algorithm; {
	case alg.Equal(pkcs7.OIDDigestAlgorithmSHA256), alg.Equal(pkcs7.OIDDigestAlgorithmSHA384), alg.Equal(pkcs7.OIDDigestAlgorithmSHA512):
	default:
		return fmt.Errorf("signature: digest algorithm %v is not SHA-256, SHA-384 or SHA-512", alg)
	}
	if now.Before(signer.NotBefore) || now.After(signer.NotAfter) {
		return errors.New("signature: mydata.signing_cert is not valid now")
	}
	p7.Content = manifest
	p7.Certificates = []*x509.Certificate{signer}
	if err := p7.Verify(); err != nil {
		return fmt.Errorf("signature: %v", err)
	}
	return nil
}
