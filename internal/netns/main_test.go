//go:build linux

package netns

import (
	"os"
	"testing"

	"github.com/rafterlb/rafter/internal/testutil"
)

// bin is the rafter binary built once for every test of the package.
var bin string

func TestMain(m *testing.M) { os.Exit(testutil.RunWithRafter(m, &bin)) }

func newCluster(t *testing.T, nodes int) *Rig {
	t.Helper()
	o := DefaultOptions()
	o.Nodes, o.Bin = nodes, bin
	r := New(t, o)
	r.StartAgents()
	return r
}
