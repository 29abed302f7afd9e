//go:build linux

package peer

import (
	"context"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/spiffetest"
	"golang.org/x/sys/unix"
)

// TestTCPUserTimeout: a dialled TCP connection gives up on unacknowledged data after the idle timeout, as
// QUIC's idle timeout would.
func TestTCPUserTimeout(t *testing.T) {
	ca := spiffetest.New(t, "mydata.test")
	a, b := pair(t, ca, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := a.dialTCP(ctx, b.TCPAddr().String(), b.id)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := tcpConnOf(c).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got int
	var gerr error
	if err := raw.Control(func(fd uintptr) { got, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT) }); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	if want := int((10 * time.Second).Milliseconds()); got != want {
		t.Errorf("TCP_USER_TIMEOUT %d ms, want %d", got, want)
	}
}
