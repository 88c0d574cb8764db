package browsertest

import (
	"os"
	"testing"

	"github.com/rafterlb/rafter/internal/testutil"
)

// bin is the rafter binary built once for every test of the package.
var bin string

func TestMain(m *testing.M) { os.Exit(testutil.RunWithRafter(m, &bin)) }
