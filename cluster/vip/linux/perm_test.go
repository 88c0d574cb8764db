//go:build linux

package linux

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// TestClaimWithoutCapNetAdmin drops CAP_NET_ADMIN on one thread (Linux
// capabilities are per thread), opens a Holder there and claims: the
// error must match ErrPermission and name the capability. The thread is
// never handed back, so it dies with its goroutine.
func TestClaimWithoutCapNetAdmin(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread is discarded
		errc <- func() error {
			if err := netns.Set(r.node); err != nil {
				return err
			}
			hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
			var data [2]unix.CapUserData
			if err := unix.Capget(&hdr, &data[0]); err != nil {
				return err
			}
			data[0].Effective &^= 1 << unix.CAP_NET_ADMIN
			if err := unix.Capset(&hdr, &data[0]); err != nil {
				return err
			}
			h, err := NewHolder(Options{Interface: nodeIface}) // this thread's namespace
			if err != nil {
				return err
			}
			defer h.Close()
			return h.Claim(context.Background(), testVIP("web", "10.77.0.100/24"), 1)
		}()
	}()
	err := <-errc
	if !errors.Is(err, ErrPermission) || !strings.Contains(err.Error(), "CAP_NET_ADMIN") {
		t.Fatalf("Claim without CAP_NET_ADMIN = %v, want ErrPermission naming CAP_NET_ADMIN", err)
	}
}
