package federationtest

// The same-work baselines of BenchmarkBulkTransfer: the bare copies of bench_copy_test.go, whose two ends
// also do the per-byte work the protocol requires and nothing else: the sender hashes the content with
// SHA-256 and seals it in 64 KiB chunks with AES-256-GCM (the AEAD of the product's HPKE suite), each
// chunk one length-prefixed frame written with one Write; a last sealed frame carries the digest. The
// receiver opens every chunk in place, hashes the plaintext and checks the digest. No signatures, ticket,
// audit or HTTP hop: those are per transfer, or the product's own.

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"testing"
)

// workKey is the baselines' AES-256 key: both processes know it; the baselines measure work, not keying.
var workKey = bytes.Repeat([]byte{0x5a}, 32)

// workFinal marks the last frame (the digest) in a frame's length prefix.
const workFinal = 1 << 31

func workAEAD() cipher.AEAD {
	block, err := aes.NewCipher(workKey)
	if err != nil {
		panic(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return aead
}

func workNonce(nonce []byte, i uint64) {
	clear(nonce)
	binary.BigEndian.PutUint64(nonce[4:], i)
}

// serveWork reads the one-byte request, then sends the file hashed and sealed in copyBuf chunks, and the
// sealed digest last.
func serveWork(r io.Reader, w io.Writer, path string) error {
	f, err := openOnRequest(r, path)
	if err != nil {
		return err
	}
	defer f.Close()
	aead := workAEAD()
	h := sha256.New()
	nonce := make([]byte, aead.NonceSize())
	buf := make([]byte, copyBuf)
	frame := make([]byte, 4, 4+copyBuf+aead.Overhead())
	var i uint64
	send := func(plain []byte, final bool) error {
		workNonce(nonce, i)
		i++
		frame = aead.Seal(frame[:4], nonce, plain, nil)
		n := uint32(len(frame) - 4)
		if final {
			n |= workFinal
		}
		binary.BigEndian.PutUint32(frame[:4], n)
		_, err := w.Write(frame)
		return err
	}
	for {
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			h.Write(buf[:n])
			if werr := send(buf[:n], false); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return send(h.Sum(nil), true)
		}
		if err != nil {
			return err
		}
	}
}

// receiveWork reads what serveWork sends, opening and hashing every chunk, and checks the digest. It
// returns the content's size.
func receiveWork(r io.Reader, buf []byte) (int64, error) {
	n, _, err := receiveWorkTo(r, buf, nil)
	return n, err
}

// receiveWorkTo is receiveWork that also writes the plaintext to w, if not nil, as the SP connector hands
// it to the application, and returns the checked digest.
func receiveWorkTo(r io.Reader, buf []byte, w io.Writer) (int64, []byte, error) {
	aead := workAEAD()
	h := sha256.New()
	nonce := make([]byte, aead.NonceSize())
	var hdr [4]byte
	var size int64
	for i := uint64(0); ; i++ {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return size, nil, fmt.Errorf("frame %d: %w", i, err)
		}
		n := binary.BigEndian.Uint32(hdr[:])
		final := n&workFinal != 0
		n &^= workFinal
		if int(n) > len(buf) {
			return size, nil, fmt.Errorf("frame %d: %d bytes", i, n)
		}
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return size, nil, fmt.Errorf("frame %d: %w", i, err)
		}
		workNonce(nonce, i)
		plain, err := aead.Open(buf[:0], nonce, buf[:n], nil)
		if err != nil {
			return size, nil, fmt.Errorf("frame %d: %w", i, err)
		}
		if final {
			if !bytes.Equal(plain, h.Sum(nil)) {
				return size, nil, errors.New("digest mismatch")
			}
			return size, plain, nil
		}
		h.Write(plain)
		size += int64(len(plain))
		if w != nil {
			if _, err := w.Write(plain); err != nil {
				return size, nil, err
			}
		}
	}
}

// BenchmarkBareQUICSameWork is BenchmarkBareQUIC with the protocol's per-byte work on both ends: the
// product's ceiling over QUIC on this machine.
func BenchmarkBareQUICSameWork(b *testing.B) { benchCopy(b, "quic-work", receiveWork) }

// BenchmarkTLSTCPSameWork is BenchmarkTLSTCP with the protocol's per-byte work on both ends.
func BenchmarkTLSTCPSameWork(b *testing.B) { benchCopy(b, "tls-work", receiveWork) }
