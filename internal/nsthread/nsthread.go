//go:build linux

package nsthread

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Run runs fn on an OS thread inside ns (in the current namespace when ns
// is not open). Sockets fn opens stay in ns for their whole life. A thread
// is handed back to the runtime only once it is in its own namespace
// again; one that cannot go back stays locked and dies with its
// goroutine, and Run reports that when fn itself succeeded.
func Run(ns netns.NsHandle, fn func() error) error {
	if !ns.IsOpen() {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("reading current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			// Still in the original namespace: the thread may be reused.
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering network namespace: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err == nil {
			runtime.UnlockOSThread()
		} else if ferr == nil {
			ferr = fmt.Errorf("leaving network namespace: %w", err)
		}
		errc <- ferr
	}()
	return <-errc
}
