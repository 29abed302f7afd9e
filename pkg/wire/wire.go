// Package wire is the framing of the connector-to-connector protocol on QUIC streams (ALPN mydata/1): each
// message is a frame of a one-byte type, a four-byte big-endian length and the payload. Every type has its
// own length limit, checked before anything is allocated, so a peer cannot make us buffer more than that.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ALPN is the protocol name negotiated in the QUIC handshake.
const ALPN = "mydata/1"

// Type is a frame type.
type Type uint8

// Frame types. Values are never reused.
const (
	TypePing    Type = 0x01
	TypePong    Type = 0x02
	TypeTicket  Type = 0x10 // SP to DP: the transfer ticket
	TypeHeader  Type = 0x11 // DP to SP: status and manifest
	TypeChunk   Type = 0x12 // DP to SP: one sealed chunk of content
	TypeTrailer Type = 0x13 // DP to SP: the sealed final chunk: size, digest and the DP's signature
	TypeError   Type = 0x7f
)

// limits bounds each type's payload; a type not listed here is unknown and refused.
var limits = map[Type]uint32{
	TypePing:    64,
	TypePong:    64,
	TypeTicket:  16 << 10, // ticket.MaxSize
	TypeHeader:  16 << 10,
	TypeChunk:   64<<10 + 16,
	TypeTrailer: 16 << 10,
	TypeError:   1024,
}

// HeaderSize is the size of a frame header.
const HeaderSize = 5

// Frame is one message.
type Frame struct {
	Type    Type
	Payload []byte
}

// Errors a reader can branch on.
var (
	ErrUnknownType = errors.New("wire: unknown frame type")
	ErrTooLarge    = errors.New("wire: frame larger than its type allows")
	ErrTruncated   = errors.New("wire: stream ended inside a frame")
)

// Write writes one frame.
func Write(w io.Writer, f Frame) error {
	limit, ok := limits[f.Type]
	if !ok {
		return fmt.Errorf("%w 0x%02x", ErrUnknownType, uint8(f.Type))
	}
	if uint64(len(f.Payload)) > uint64(limit) {
		return fmt.Errorf("%w: %d bytes for type 0x%02x (limit %d)", ErrTooLarge, len(f.Payload), uint8(f.Type), limit)
	}
	buf := make([]byte, HeaderSize+len(f.Payload))
	buf[0] = byte(f.Type)
	binary.BigEndian.PutUint32(buf[1:5], uint32(len(f.Payload)))
	copy(buf[HeaderSize:], f.Payload)
	_, err := w.Write(buf)
	return err
}

// Read reads one frame. io.EOF means the stream ended cleanly between frames.
func Read(r io.Reader) (Frame, error) { return ReadInto(r, nil) }

// ReadInto reads one frame like Read, into buf when it is large enough: the payload is then valid only
// until buf is used again. A receiver of many chunks reuses one buffer instead of allocating per frame.
func ReadInto(r io.Reader, buf []byte) (Frame, error) {
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return Frame{}, ErrTruncated
		}
		return Frame{}, err
	}
	t := Type(hdr[0])
	limit, ok := limits[t]
	if !ok {
		return Frame{}, fmt.Errorf("%w 0x%02x", ErrUnknownType, hdr[0])
	}
	n := binary.BigEndian.Uint32(hdr[1:5])
	if n > limit {
		return Frame{}, fmt.Errorf("%w: %d bytes for type 0x%02x (limit %d)", ErrTooLarge, n, hdr[0], limit)
	}
	payload := buf[:0]
	if uint32(cap(buf)) < n {
		payload = make([]byte, n)
	}
	payload = payload[:n]
	if _, err := io.ReadFull(r, payload); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return Frame{}, ErrTruncated
		}
		return Frame{}, err
	}
	return Frame{Type: t, Payload: payload}, nil
}
