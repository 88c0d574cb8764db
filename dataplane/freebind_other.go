//go:build !linux

package dataplane

import "net"

// ListenFreebind binds addr; systems other than Linux have no IP_FREEBIND,
// so the address must already be present.
func ListenFreebind(_, addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
