// Package datapackage is the zip package a citizen saves from a download: each dataset's file, and a
// manifest.json with each file's size and SHA-256 and what its data provider signed (the delivery manifest
// as sent, the signature and the provider's certificate chain). Anyone the citizen hands it to can check it
// offline against the federation's trust bundle: `mydata-connector verify`. The portal's download page
// writes it (hub/internal/portal/static/download.js); Build writes the same in Go.
package datapackage

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/mydatafed/mydata/pkg/strictjson"
	"github.com/mydatafed/mydata/pkg/transfer"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Format names this layout in the manifest.
const Format = "mydata-package/1"

// ManifestName is the manifest's name in the zip.
const ManifestName = "manifest.json"

// Limits on what Verify reads: a package is what a citizen downloaded, at most a few datasets of at most a
// gigabyte each.
const (
	MaxFiles        = 32
	MaxManifestSize = 1 << 20
	MaxFileSize     = 4 << 30
)

// Manifest is manifest.json.
type Manifest struct {
	Format    string    `json:"format"`
	ConsentID string    `json:"consent_id"`
	CreatedAt time.Time `json:"created_at"`
	Files     []File    `json:"files"`
}

// File is one dataset in the package.
type File struct {
	Name        string `json:"name"`
	Dataset     string `json:"dataset"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	// DP is the SPIFFE ID of the connector the ticket named; the signature must be its.
	DP       string `json:"dp"`
	TicketID string `json:"ticket_id"`
	// DeliveryManifest is the transfer manifest exactly as the DP sent and signed it.
	DeliveryManifest []byte   `json:"delivery_manifest"`
	Signature        []byte   `json:"signature"`
	Chain            [][]byte `json:"chain"`
}

// Item is one delivery to put in a package.
type Item struct {
	Name             string
	Data             []byte
	DP               string
	DeliveryManifest []byte
	Trailer          transfer.Trailer
}

// Build writes a package of items.
func Build(w io.Writer, consentID string, created time.Time, items []Item) error {
	zw := zip.NewWriter(w)
	m := Manifest{Format: Format, ConsentID: consentID, CreatedAt: created.UTC()}
	for _, it := range items {
		var dm transfer.Manifest
		if err := json.Unmarshal(it.DeliveryManifest, &dm); err != nil {
			return fmt.Errorf("delivery manifest of %s: %w", it.Name, err)
		}
		sum := sha256.Sum256(it.Data)
		m.Files = append(m.Files, File{Name: it.Name, Dataset: dm.Dataset, ContentType: dm.ContentType, Size: int64(len(it.Data)), SHA256: hex.EncodeToString(sum[:]),
			DP: it.DP, TicketID: dm.TicketID, DeliveryManifest: it.DeliveryManifest, Signature: it.Trailer.Signature, Chain: it.Trailer.Chain})
		f, err := zw.CreateHeader(&zip.FileHeader{Name: it.Name, Method: zip.Store})
		if err != nil {
			return err
		}
		if _, err := f.Write(it.Data); err != nil {
			return err
		}
	}
	mj, err := json.MarshalIndent(&m, "", "  ")
	if err != nil {
		return err
	}
	f, err := zw.CreateHeader(&zip.FileHeader{Name: ManifestName, Method: zip.Store})
	if err != nil {
		return err
	}
	if _, err := f.Write(mj); err != nil {
		return err
	}
	return zw.Close()
}

// Checked is one file that checked out.
type Checked struct {
	File
	Signer spiffeid.ID
}

// ErrInvalid wraps every reason a package does not check out.
var ErrInvalid = errors.New("package does not check out")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Verify checks a package: the manifest's form; that the zip holds exactly the manifest and the files it
// lists; each file's size and SHA-256; and that each was signed by the data provider's connector named,
// under a chain that leads to bundles' root for td.
func Verify(r io.ReaderAt, size int64, td spiffeid.TrustDomain, bundles x509bundle.Source) ([]Checked, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, invalid("not a zip file: %v", err)
	}
	if len(zr.File) > MaxFiles+1 {
		return nil, invalid("%d entries; at most %d", len(zr.File), MaxFiles+1)
	}
	entries := map[string]*zip.File{}
	for _, f := range zr.File {
		if _, dup := entries[f.Name]; dup {
			return nil, invalid("%q appears twice", f.Name)
		}
		entries[f.Name] = f
	}
	mf, ok := entries[ManifestName]
	if !ok {
		return nil, invalid("no %s", ManifestName)
	}
	raw, err := readAll(mf, MaxManifestSize)
	if err != nil {
		return nil, invalid("%s: %v", ManifestName, err)
	}
	var m Manifest
	if err := strictjson.Unmarshal(raw, MaxManifestSize, &m); err != nil {
		return nil, invalid("%s: %v", ManifestName, err)
	}
	if m.Format != Format {
		return nil, invalid("format %q, want %q", m.Format, Format)
	}
	if len(m.Files) == 0 || len(m.Files) != len(entries)-1 {
		return nil, invalid("the manifest lists %d files and the zip holds %d besides it", len(m.Files), len(entries)-1)
	}
	var out []Checked
	for _, f := range m.Files {
		c, err := verifyFile(f, entries, td, bundles)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, f.Name, err)
		}
		out = append(out, *c)
	}
	return out, nil
}

func verifyFile(f File, entries map[string]*zip.File, td spiffeid.TrustDomain, bundles x509bundle.Source) (*Checked, error) {
	if f.Name == ManifestName || path.Clean(f.Name) != f.Name || strings.ContainsAny(f.Name, "/\\") {
		return nil, errors.New("not a plain file name")
	}
	zf, ok := entries[f.Name]
	if !ok {
		return nil, errors.New("listed in the manifest but not in the zip")
	}
	if f.Size < 0 || f.Size > MaxFileSize || zf.UncompressedSize64 != uint64(f.Size) {
		return nil, fmt.Errorf("size %d in the zip, %d in the manifest", zf.UncompressedSize64, f.Size)
	}
	want, err := hex.DecodeString(f.SHA256)
	if err != nil || len(want) != sha256.Size {
		return nil, errors.New("sha256 is not 64 hex digits")
	}
	rc, err := zf.Open()
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(rc, f.Size+1))
	rc.Close()
	if err != nil {
		return nil, err
	}
	sum := h.Sum(nil)
	if n != f.Size || !bytes.Equal(sum, want) {
		return nil, errors.New("the file's SHA-256 is not the one listed: it was changed")
	}
	dp, err := spiffeid.FromString(f.DP)
	if err != nil {
		return nil, fmt.Errorf("dp: %v", err)
	}
	signer, dm, err := transfer.VerifyDelivery(f.DeliveryManifest, f.Size, sum, f.Signature, f.Chain, td, bundles)
	if err != nil {
		return nil, err
	}
	if signer != dp {
		return nil, fmt.Errorf("signed by %s, not %s", signer, dp)
	}
	if dm.Dataset != f.Dataset || dm.TicketID != f.TicketID {
		return nil, fmt.Errorf("the signed delivery is of dataset %q ticket %q, not %q %q", dm.Dataset, dm.TicketID, f.Dataset, f.TicketID)
	}
	return &Checked{File: f, Signer: signer}, nil
}

func readAll(f *zip.File, max int64) ([]byte, error) {
	if f.UncompressedSize64 > uint64(max) {
		return nil, fmt.Errorf("larger than %d bytes", max)
	}
	rc, err := f.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, max))
}
