package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	frames := []Frame{{TypePing, []byte("12345678")}, {TypePong, nil}, {TypeError, []byte("no")}}
	for _, f := range frames {
		if err := Write(&buf, f); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range frames {
		got, err := Read(&buf)
		if err != nil || got.Type != want.Type || !bytes.Equal(got.Payload, want.Payload) {
			t.Fatalf("got %+v %v, want %+v", got, err, want)
		}
	}
	if _, err := Read(&buf); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
}

func TestReadErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"unknown type", []byte{0x55, 0, 0, 0, 0}, ErrUnknownType},
		{"too large", []byte{byte(TypePing), 0, 0, 1, 0}, ErrTooLarge},
		{"huge length", []byte{byte(TypeError), 0xff, 0xff, 0xff, 0xff}, ErrTooLarge},
		{"truncated header", []byte{byte(TypePing), 0}, ErrTruncated},
		{"truncated payload", []byte{byte(TypePing), 0, 0, 0, 8, 1, 2}, ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Read(bytes.NewReader(tt.in)); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if err := Write(io.Discard, Frame{Type: TypePing, Payload: make([]byte, 65)}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("write too large: %v", err)
	}
}

func FuzzRead(f *testing.F) {
	f.Add([]byte{byte(TypePing), 0, 0, 0, 2, 'h', 'i'})
	f.Add([]byte{byte(TypeError), 0, 0, 0, 0})
	f.Add([]byte{0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := Read(bytes.NewReader(data))
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := Write(&buf, fr); err != nil {
			t.Fatalf("a frame that reads must write: %v", err)
		}
		if !bytes.Equal(buf.Bytes(), data[:buf.Len()]) {
			t.Fatal("re-encoding differs")
		}
	})
}

func TestReadIntoReusesBuffer(t *testing.T) {
	var stream bytes.Buffer
	Write(&stream, Frame{TypePing, []byte("abc")})
	Write(&stream, Frame{TypePong, []byte("defgh")})
	buf := make([]byte, 64)
	f, err := ReadInto(&stream, buf)
	if err != nil || string(f.Payload) != "abc" || &f.Payload[0] != &buf[0] {
		t.Fatalf("first frame: %q %v (reused %v)", f.Payload, err, err == nil && &f.Payload[0] == &buf[0])
	}
	f, err = ReadInto(&stream, buf[:0:2]) // too small: a fresh slice
	if err != nil || string(f.Payload) != "defgh" {
		t.Fatalf("second frame: %q %v", f.Payload, err)
	}
}
