//go:build linux

package linux

import (
	"errors"
	"fmt"
	"syscall"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrStaleToken: a claim carries a token older than one this holder
	// has already seen for the VIP.
	ErrStaleToken = errors.New("stale assignment token")
	// ErrPermission: the process lacks a capability the operation needs;
	// the message names it (CAP_NET_ADMIN or CAP_NET_RAW).
	ErrPermission = errors.New("missing capability")
)

// errGrantVoid: the grant answered a probe that is no longer this node's
// newest (Keeper.Report).
var errGrantVoid = errors.New("grant void")

const (
	capNetAdmin = "CAP_NET_ADMIN"
	capNetRaw   = "CAP_NET_RAW"
)

// withCap turns EPERM/EACCES from the kernel into ErrPermission naming the
// capability, because a bare "operation not permitted" from a netlink call
// says nothing about how to fix the unit file.
func withCap(err error, capability, action string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
		return fmt.Errorf("%w: %s needs %s (grant it, e.g. AmbientCapabilities=%s): %w",
			ErrPermission, action, capability, capability, err)
	}
	return fmt.Errorf("%s: %w", action, err)
}
