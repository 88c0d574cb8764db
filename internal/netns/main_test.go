//go:build linux

package netns

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// bin is the rafter binary built once for every test of the package.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rafter-netns-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "rafter")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/rafterlb/rafter/cmd/rafter").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building rafter: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func newCluster(t *testing.T, nodes int) *Rig {
	t.Helper()
	o := DefaultOptions()
	o.Nodes, o.Bin = nodes, bin
	r := New(t, o)
	r.StartAgents()
	return r
}
