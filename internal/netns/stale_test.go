//go:build linux

package netns

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// TestRemovesStaleNamespaces leaves a namespace named as a run whose
// process is gone would have, and one of this (live) process; a new rig
// removes the first and keeps the second.
func TestRemovesStaleNamespaces(t *testing.T) {
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatalf("running true: %v", err)
	}
	stale := fmt.Sprintf("%s%d-%s-n1", namePrefix, gone.Process.Pid, randomID())
	live := fmt.Sprintf("%s%d-%s-n1", namePrefix, 1, randomID()) // pid 1 is always alive
	for _, name := range []string{stale, live} {
		if err := ipCmd("netns", "add", name); err != nil {
			t.Fatalf("creating namespace: %v", err)
		}
		name := name
		t.Cleanup(func() { _ = ipCmd("netns", "del", name) })
	}
	o := DefaultOptions()
	o.Nodes, o.Bin = 1, bin
	New(t, o)
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	if strings.Contains(string(out), stale) {
		t.Errorf("stale namespace %s of a finished run was not removed", stale)
	}
	if !strings.Contains(string(out), live) {
		t.Errorf("namespace %s of a live run was removed", live)
	}
}
