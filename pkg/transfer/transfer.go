// Package transfer is the data plane's stream protocol between a data provider's connector and the party a
// ticket names (an SP connector, or the hub relaying for a browser): ticket in; header with status and
// manifest out; content sealed with HPKE in chunks; a sealed trailer with size, SHA-256 and the DP's
// signature last. docs/protocol.md describes it for implementers.
package transfer

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/seal"
	"github.com/mydatafed/mydata/pkg/strictjson"
	"github.com/mydatafed/mydata/pkg/ticket"
	"github.com/mydatafed/mydata/pkg/wire"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Status is the DP's answer to a ticket.
type Status string

// Statuses. Every status but OK ends the stream after the header.
const (
	OK          Status = "ok"
	NoRecord    Status = "no_record"   // the agency holds nothing for this citizen
	NotReady    Status = "not_ready"   // the agency answers later: retry after RetryAfter seconds
	Refused     Status = "refused"     // the ticket is not good here: expired, used, for another party
	Unavailable Status = "unavailable" // the dataset is under maintenance or its backend is down
	Failed      Status = "failed"      // the DP could not produce the data; details stay in its log
)

// Header is the DP's first answer.
type Header struct {
	Status     Status    `json:"status"`
	Message    string    `json:"message,omitempty"`
	RetryAfter int       `json:"retry_after,omitempty"`
	Manifest   *Manifest `json:"manifest,omitempty"`
}

// Manifest describes the content that follows.
type Manifest struct {
	TicketID    string `json:"ticket_id"`
	ConsentID   string `json:"consent_id"`
	Dataset     string `json:"dataset"`
	ContentType string `json:"content_type"`
	// DeclaredSize is the size the backend announced, or -1.
	DeclaredSize int64  `json:"declared_size"`
	KEM          uint16 `json:"kem"`
	Enc          []byte `json:"enc"`
}

// Trailer closes a delivery. It travels sealed, as the final chunk.
type Trailer struct {
	Size      int64    `json:"size"`
	SHA256    []byte   `json:"sha256"`
	Signature []byte   `json:"signature"`
	Chain     [][]byte `json:"chain"`
}

// Errors the receiving side branches on.
var (
	ErrTruncated = errors.New("transfer: stream ended before the signed trailer")
	ErrTooLarge  = errors.New("transfer: content larger than allowed")
	ErrIntegrity = errors.New("transfer: content does not match the signed size and digest")
	ErrSigner    = errors.New("transfer: trailer not signed by the data provider the ticket names")
)

// digest is what the DP signs: the manifest as sent, the size and the SHA-256 of the plaintext, under a
// domain separator so the signature means nothing anywhere else.
func digest(manifestJSON []byte, size int64, sum []byte) []byte {
	h := sha256.New()
	h.Write([]byte("mydata/1 delivery\x00"))
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(manifestJSON)))
	h.Write(n[:])
	h.Write(manifestJSON)
	binary.BigEndian.PutUint64(n[:], uint64(size))
	h.Write(n[:])
	h.Write(sum)
	return h.Sum(nil)
}

// WriteTicket sends the ticket, the first frame of a transfer.
func WriteTicket(w io.Writer, token string) error {
	return wire.Write(w, wire.Frame{Type: wire.TypeTicket, Payload: []byte(token)})
}

// ReadTicket reads the first frame of a transfer.
func ReadTicket(r io.Reader) (string, error) {
	f, err := wire.Read(r)
	if err != nil {
		return "", err
	}
	if f.Type != wire.TypeTicket {
		return "", fmt.Errorf("transfer: want a ticket frame, got type 0x%02x", uint8(f.Type))
	}
	return string(f.Payload), nil
}

// WriteStatus answers a ticket with anything but content.
func WriteStatus(w io.Writer, st Status, msg string, retryAfter int) error {
	if st == OK {
		return errors.New("transfer: OK needs content; use Send")
	}
	return writeHeader(w, &Header{Status: st, Message: clip(msg, 512), RetryAfter: retryAfter})
}

// MaxRetryAfter bounds a not-ready answer's retry_after.
const MaxRetryAfter = 24 * time.Hour

// Taken begins the message of a refusal of a ticket that another of its connectors serves or served
// (connector HA). An SP or relay that moved on from a connector that failed keeps that failure as the
// answer when the next one says this: it is the first connector's failure that left the ticket taken.
const Taken = "another connector serves or served this ticket"

// IsTaken says whether h refuses a ticket because another of its connectors serves or served it.
func IsTaken(h Header) bool { return h.Status == Refused && strings.HasPrefix(h.Message, Taken) }

// clip cuts s to at most n bytes without splitting a UTF-8 sequence.
func clip(s string, n int) string {
	if len(s) > n {
		return strings.ToValidUTF8(s[:n], "")
	}
	return s
}

// wireHeader keeps the manifest as the exact bytes sent, which is what the signature covers, so that no
// re-encoding on either side can change what was signed.
type wireHeader struct {
	Status     Status          `json:"status"`
	Message    string          `json:"message,omitempty"`
	RetryAfter int             `json:"retry_after,omitempty"`
	Manifest   json.RawMessage `json:"manifest,omitempty"`
}

func writeHeader(w io.Writer, h *Header) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	return wire.Write(w, wire.Frame{Type: wire.TypeHeader, Payload: b})
}

// Sender signs deliveries with the DP connector's SVID.
type Sender interface {
	GetX509SVID() (*x509svid.SVID, error)
}

// Send delivers content: header, sealed chunks, sealed signed trailer. It reads content to its end, or to
// max+1 bytes, which is an error.
func Send(w io.Writer, m Manifest, recipient hpke.PublicKey, content io.Reader, max int64, signer Sender) (int64, error) {
	svid, err := signer.GetX509SVID()
	if err != nil {
		return 0, err
	}
	enc, sender, err := seal.NewSender(recipient, ticket.ContentInfo(m.TicketID))
	if err != nil {
		return 0, err
	}
	m.KEM, m.Enc = recipient.KEM().ID(), enc
	mj, err := json.Marshal(&m)
	if err != nil {
		return 0, err
	}
	hj, err := json.Marshal(&wireHeader{Status: OK, Manifest: mj})
	if err != nil {
		return 0, err
	}
	if err := wire.Write(w, wire.Frame{Type: wire.TypeHeader, Payload: hj}); err != nil {
		return 0, err
	}
	h := sha256.New()
	// One buffer per stream holds each frame in turn: content is read in after the frame header, hashed,
	// sealed in place and written with the header in one Write (one TLS record run, one QUIC stream write).
	// A chunk overwrites exactly the bytes it sends, so nothing of an earlier chunk goes out with it.
	frame := make([]byte, wire.HeaderSize+seal.ChunkSize+seal.Overhead)
	var size int64
	for {
		plain := frame[wire.HeaderSize : wire.HeaderSize+seal.ChunkSize]
		n, rerr := io.ReadFull(content, plain)
		if n > 0 {
			size += int64(n)
			if size > max {
				return size, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, max)
			}
			h.Write(plain[:n])
			out, err := sender.SealAppend(frame[:wire.HeaderSize], plain[:n], false)
			if err != nil {
				return size, err
			}
			if err := writeFrame(w, wire.TypeChunk, out); err != nil {
				return size, err
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return size, fmt.Errorf("read content: %w", rerr)
		}
	}
	sum := h.Sum(nil)
	sig, err := svid.PrivateKey.Sign(rand.Reader, digest(mj, size, sum), crypto.SHA256)
	if err != nil {
		return size, err
	}
	tr := Trailer{Size: size, SHA256: sum, Signature: sig}
	for _, c := range svid.Certificates {
		tr.Chain = append(tr.Chain, c.Raw)
	}
	tj, err := json.Marshal(&tr)
	if err != nil {
		return size, err
	}
	ct, err := sender.Seal(tj, true)
	if err != nil {
		return size, err
	}
	return size, wire.Write(w, wire.Frame{Type: wire.TypeTrailer, Payload: ct})
}

// writeFrame fills in the header of frame, whose payload follows wire.HeaderSize bytes of room, and writes
// it with one Write.
func writeFrame(w io.Writer, t wire.Type, frame []byte) error {
	frame[0] = byte(t)
	binary.BigEndian.PutUint32(frame[1:wire.HeaderSize], uint32(len(frame)-wire.HeaderSize))
	_, err := w.Write(frame)
	return err
}

// Expect is what the receiving side knows before the answer.
type Expect struct {
	TicketID string
	Dataset  string
	// DP is the connector the ticket names; the trailer must be signed by it.
	DP      spiffeid.ID
	MaxSize int64
	Bundles x509bundle.Source
	// Signers, if set, remembers chains already verified against Bundles.
	Signers *Signers
}

// Result is a verified delivery, or a status without content.
type Result struct {
	Header Header
	Size   int64
	SHA256 []byte
	// ManifestJSON and Trailer are what the DP signed and its signature, for a delivery kept with its proof
	// (a citizen's package: pkg/datapackage).
	ManifestJSON []byte
	Trailer      *Trailer
}

// Receive reads the DP's answer. For OK it opens the chunks into dst and returns only after the trailer's
// size, digest and signature check out; any error means dst holds partial data that must be discarded.
func Receive(r io.Reader, dst io.Writer, exp Expect, key hpke.PrivateKey) (*Result, error) {
	f, err := wire.Read(r)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, wire.ErrTruncated) {
			return nil, ErrTruncated
		}
		return nil, err
	}
	if f.Type == wire.TypeError {
		return nil, fmt.Errorf("transfer: peer error: %s", f.Payload)
	}
	if f.Type != wire.TypeHeader {
		return nil, fmt.Errorf("transfer: want a header frame, got type 0x%02x", uint8(f.Type))
	}
	var wh wireHeader
	if err := strictjson.Unmarshal(f.Payload, 16<<10, &wh); err != nil {
		return nil, fmt.Errorf("transfer: header: %w", err)
	}
	res := &Result{Header: Header{Status: wh.Status, Message: wh.Message, RetryAfter: wh.RetryAfter}}
	switch wh.Status {
	case OK:
	case NoRecord, NotReady, Refused, Unavailable, Failed:
		if wh.Manifest != nil {
			return nil, errors.New("transfer: a header without content carries a manifest")
		}
		if wh.RetryAfter < 0 || wh.RetryAfter > int(MaxRetryAfter/time.Second) {
			return nil, fmt.Errorf("transfer: retry_after %d out of range", wh.RetryAfter)
		}
		return res, nil
	default:
		return nil, fmt.Errorf("transfer: unknown status %q", wh.Status)
	}
	if wh.Manifest == nil {
		return nil, errors.New("transfer: OK header without manifest")
	}
	mj := []byte(wh.Manifest)
	m := new(Manifest)
	if err := strictjson.Unmarshal(mj, 16<<10, m); err != nil {
		return nil, fmt.Errorf("transfer: manifest: %w", err)
	}
	res.Header.Manifest = m
	switch {
	case m.TicketID != exp.TicketID || m.Dataset != exp.Dataset:
		return nil, fmt.Errorf("transfer: manifest is for ticket %q dataset %q, want %q %q", m.TicketID, m.Dataset, exp.TicketID, exp.Dataset)
	case m.DeclaredSize > exp.MaxSize:
		return nil, fmt.Errorf("%w: declared %d bytes, limit %d", ErrTooLarge, m.DeclaredSize, exp.MaxSize)
	case m.KEM != key.KEM().ID():
		return nil, fmt.Errorf("transfer: content sealed with KEM 0x%04x, want 0x%04x", m.KEM, key.KEM().ID())
	}
	rcv, err := seal.NewReceiver(key, m.Enc, ticket.ContentInfo(m.TicketID))
	if err != nil {
		return nil, err
	}
	hash := sha256.New()
	// One buffer holds every sealed frame in turn, each opened in place: a delivery makes no garbage per
	// chunk. A chunk's plaintext is exactly the bytes its frame brought (ReadInto reads them all or fails),
	// so nothing of an earlier chunk reaches dst.
	buf := make([]byte, seal.ChunkSize+seal.Overhead)
	for {
		f, err := wire.ReadInto(r, buf)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, wire.ErrTruncated) {
				return nil, ErrTruncated
			}
			return nil, err
		}
		switch f.Type {
		case wire.TypeChunk:
			pt, err := rcv.OpenInPlace(f.Payload, false)
			if err != nil {
				return nil, err
			}
			res.Size += int64(len(pt))
			if res.Size > exp.MaxSize || m.DeclaredSize >= 0 && res.Size > m.DeclaredSize {
				return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, min(exp.MaxSize, max(m.DeclaredSize, 0)))
			}
			hash.Write(pt)
			if _, err := dst.Write(pt); err != nil {
				return nil, err
			}
		case wire.TypeTrailer:
			pt, err := rcv.Open(f.Payload, true)
			if err != nil {
				return nil, err
			}
			var tr Trailer
			if err := strictjson.Unmarshal(pt, 16<<10, &tr); err != nil {
				return nil, fmt.Errorf("transfer: trailer: %w", err)
			}
			res.SHA256 = hash.Sum(nil)
			if tr.Size != res.Size || !bytes.Equal(tr.SHA256, res.SHA256) || m.DeclaredSize >= 0 && m.DeclaredSize != res.Size {
				return nil, ErrIntegrity
			}
			if err := verifySigner(&tr, exp, digest(mj, tr.Size, tr.SHA256)); err != nil {
				return nil, err
			}
			if _, err := wire.Read(r); !errors.Is(err, io.EOF) {
				return nil, errors.New("transfer: data after the trailer")
			}
			res.ManifestJSON, res.Trailer = mj, &tr
			return res, nil
		default:
			return nil, fmt.Errorf("transfer: unexpected frame type 0x%02x in content", uint8(f.Type))
		}
	}
}

func verifySigner(tr *Trailer, exp Expect, d []byte) error {
	now := time.Now()
	k := chainKey(tr.Chain)
	v, ok := exp.Signers.get(k, now)
	if !ok {
		id, chains, err := x509svid.ParseAndVerify(tr.Chain, exp.Bundles)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrSigner, err)
		}
		if err := fedid.CheckChain(id.TrustDomain(), id, chains); err != nil {
			return fmt.Errorf("%w: %v", ErrSigner, err)
		}
		leaf := chains[0][0]
		pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
		if !ok {
			return fmt.Errorf("%w: the signer's key is not ECDSA", ErrSigner)
		}
		v = verifiedChain{id: id, key: pub, until: now.Add(signerMemory)}
		if leaf.NotAfter.Before(v.until) {
			v.until = leaf.NotAfter
		}
		exp.Signers.put(k, v)
	}
	if v.id != exp.DP {
		return fmt.Errorf("%w: signed by %s, want %s", ErrSigner, v.id, exp.DP)
	}
	if !ecdsa.VerifyASN1(v.key, d, tr.Signature) {
		return fmt.Errorf("%w: signature does not verify", ErrSigner)
	}
	return nil
}

// VerifyDelivery checks a delivery kept apart from its stream (in a citizen's saved package, say): the
// manifest as the DP sent it, the content's size and SHA-256, and the trailer's signature and chain. The
// chain must lead to td's root in bundles and name a connector; it is checked as of the moment all its
// certificates were valid, since SVIDs live hours and a package is checked months later. It returns the
// signer and the manifest.
func VerifyDelivery(manifestJSON []byte, size int64, sum, sig []byte, chain [][]byte, td spiffeid.TrustDomain, bundles x509bundle.Source) (spiffeid.ID, *Manifest, error) {
	var m Manifest
	if err := strictjson.Unmarshal(manifestJSON, 16<<10, &m); err != nil {
		return spiffeid.ID{}, nil, fmt.Errorf("transfer: delivery manifest: %w", err)
	}
	if len(chain) == 0 || len(chain) > 8 {
		return spiffeid.ID{}, nil, fmt.Errorf("%w: a chain of 1 to 8 certificates is required", ErrSigner)
	}
	var at time.Time
	for _, raw := range chain {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return spiffeid.ID{}, nil, fmt.Errorf("%w: %v", ErrSigner, err)
		}
		if c.NotBefore.After(at) {
			at = c.NotBefore
		}
	}
	id, chains, err := x509svid.ParseAndVerify(chain, bundles, x509svid.WithTime(at.Add(time.Second)))
	if err != nil {
		return spiffeid.ID{}, nil, fmt.Errorf("%w: %v", ErrSigner, err)
	}
	if id.TrustDomain() != td {
		return spiffeid.ID{}, nil, fmt.Errorf("%w: %s is not in trust domain %s", ErrSigner, id, td)
	}
	if err := fedid.CheckChain(td, id, chains); err != nil {
		return spiffeid.ID{}, nil, fmt.Errorf("%w: %v", ErrSigner, err)
	}
	if p, err := fedid.Parse(id); err != nil || p.Kind != fedid.KindConnector {
		return spiffeid.ID{}, nil, fmt.Errorf("%w: %s is not a connector", ErrSigner, id)
	}
	pub, ok := chains[0][0].PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return spiffeid.ID{}, nil, fmt.Errorf("%w: the signer's key is not ECDSA", ErrSigner)
	}
	if !ecdsa.VerifyASN1(pub, digest(manifestJSON, size, sum), sig) {
		return spiffeid.ID{}, nil, fmt.Errorf("%w: signature does not verify", ErrSigner)
	}
	return id, &m, nil
}
