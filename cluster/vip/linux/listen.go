//go:build linux

package linux

import (
	"context"
	"fmt"
	"net"
	"syscall"
)

// FreebindListen listens on addr with IP_FREEBIND set, so it succeeds even
// while addr is on no interface of this node (a VIP another node holds);
// connections arrive once the VIP is claimed here.
func FreebindListen(network, addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: FreebindControl}
	ln, err := lc.Listen(context.Background(), network, addr)
	if err != nil {
		return nil, fmt.Errorf("vip/linux: freebind listen %s %s: %w", network, addr, err)
	}
	return ln, nil
}

// FreebindControl is a net.ListenConfig/net.Dialer Control function that
// sets IP_FREEBIND on the socket (it applies to IPv6 sockets too).
func FreebindControl(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_IP, syscall.IP_FREEBIND, 1)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("setting IP_FREEBIND: %w", serr)
	}
	return nil
}
