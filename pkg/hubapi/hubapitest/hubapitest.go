// Package hubapitest gives tests of hub clients nodes that fail the way real ones do: an address where
// nothing listens any more (a node that is down) and one that accepts connections and never says a word (a
// node whose process hangs, or a black hole in front of it).
package hubapitest

import (
	"net"
	"sync"
	"testing"
)

// DeadURL is an https:// URL on loopback where nothing listens: connecting is refused.
func DeadURL(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "https://" + ln.Addr().String()
}

// HungURL is an https:// URL on loopback that accepts connections and never reads or writes on them, until
// the test ends.
func HungURL(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "https://" + ln.Addr().String()
}
