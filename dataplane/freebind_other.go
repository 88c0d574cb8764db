//go:build !linux

package dataplane

import "net"

// ListenShared binds addr. Elsewhere than on Linux the kernel does not
// balance connections over sockets sharing a port, so a listener has one.
func ListenShared(_ string, _ int, addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

// ListenFreebind binds addr; systems other than Linux have no IP_FREEBIND,
// so the address must already be present.
func ListenFreebind(_ string, _ int, addr string) (net.Listener, error) {
	return net.Listen("tcp", addr)
}

func defaultListenShards() int { return 1 }
