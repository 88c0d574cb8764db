//go:build linux

package dataplane

import (
	"context"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// ListenFreebind binds addr even while no interface has that address yet
// (IP_FREEBIND), so a VIP's listener is ready before the VIP arrives.
func ListenFreebind(_, addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(network, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
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
