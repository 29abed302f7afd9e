package federationtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/pemfile"
	"github.com/mydatafed/mydata/pkg/spiffetest"
	"github.com/mydatafed/mydata/pkg/wire"
	"github.com/quic-go/quic-go"
)

// LoadSVID reads a connector's SVID and key from its data directory, as a TLS certificate.
func (c *Connector) LoadSVID(t testing.TB) tls.Certificate {
	t.Helper()
	svid, err := pemfile.ReadSVID(filepath.Join(c.DataDir(), "identity", "svid.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return spiffetest.TLSCertificate(svid)
}

// DialRaw opens a QUIC connection to addr presenting cert, without checking the server: it plays a peer, or
// an impostor, in tests of what the server accepts.
func DialRaw(ctx context.Context, addr string, cert tls.Certificate) (*quic.Conn, error) {
	conf := &tls.Config{
		Certificates:       []tls.Certificate{cert},
		InsecureSkipVerify: true, // the test looks at what the server does, not who it is
		NextProtos:         []string{wire.ALPN},
		MinVersion:         tls.VersionTLS13,
	}
	return quic.DialAddr(ctx, addr, conf, &quic.Config{MaxIdleTimeout: time.Minute, KeepAlivePeriod: 5 * time.Second, HandshakeIdleTimeout: 5 * time.Second})
}

// PingConn sends one ping on a new stream of conn.
func PingConn(ctx context.Context, conn *quic.Conn) error {
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	if dl, ok := ctx.Deadline(); ok {
		st.SetDeadline(dl)
	}
	nonce := make([]byte, 8)
	rand.Read(nonce)
	if err := wire.Write(st, wire.Frame{Type: wire.TypePing, Payload: nonce}); err != nil {
		return err
	}
	f, err := wire.Read(st)
	if err != nil {
		return err
	}
	if f.Type != wire.TypePong || !bytes.Equal(f.Payload, nonce) {
		return fmt.Errorf("unexpected answer type 0x%02x %q", uint8(f.Type), f.Payload)
	}
	return nil
}
