//go:build linux

package nsthread

import (
	"errors"
	"testing"

	"github.com/vishvananda/netns"
)

// Without an open namespace Run is a plain call; entering a namespace
// needs privileges and is exercised by the VIP holder's and the rig's
// tests.
func TestRunNotOpen(t *testing.T) {
	want := errors.New("fn ran")
	if err := Run(netns.None(), func() error { return want }); err != want {
		t.Fatalf("got %v, want fn's own error", err)
	}
}
