//go:build linux

package peer

import (
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// setUserTimeout has the kernel end a TCP connection whose sent data stays unacknowledged for d. Keep-alives
// probe only an idle connection: without this a DP sending to an SP that vanished (unplugged, cut off)
// would retransmit for about 15 minutes (tcp_retries2) where QUIC gives up after its idle timeout. A peer
// that acknowledges but advertises no window (a slow reader) is alive and not cut.
func setUserTimeout(c syscall.RawConn, d time.Duration) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.Milliseconds()))
	}); err != nil {
		return err
	}
	return serr
}

// userTimeoutConn sets the user timeout on an accepted or dialled connection.
func userTimeoutConn(c net.Conn, d time.Duration) error {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	return setUserTimeout(raw, d)
}
