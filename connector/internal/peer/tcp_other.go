//go:build !linux

package peer

import (
	"net"
	"time"
)

// userTimeoutConn is a no-op off Linux: keep-alives alone watch the connection.
func userTimeoutConn(net.Conn, time.Duration) error { return nil }
