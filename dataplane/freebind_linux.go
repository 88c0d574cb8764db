//go:build linux

package dataplane

import (
	"context"
	"net"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// ListenShared binds addr with SO_REUSEPORT: a listener is served by
// several sockets on the same address, one accept loop each, and the
// kernel spreads new connections across them. Only sockets of the same
// user with the option set share an address; any other holder of the port
// still makes the bind fail.
func ListenShared(_ string, _ int, addr string) (net.Listener, error) {
	return listenWith(addr, false)
}

// ListenFreebind binds addr even while no interface has that address yet
// (IP_FREEBIND), so a VIP's listener is ready before the VIP arrives. Its
// sockets share the address like ListenShared's.
func ListenFreebind(_ string, _ int, addr string) (net.Listener, error) {
	return listenWith(addr, true)
}

func listenWith(addr string, freebind bool) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(network, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); serr != nil || !freebind {
				return
			}
			if network == "tcp6" {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
				return
			}
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return lc.Listen(context.Background(), "tcp", addr)
}

// defaultListenShards is one socket per P: each core can run an accept
// loop of its own.
func defaultListenShards() int { return runtime.GOMAXPROCS(0) }
