package systemtest

import (
	"fmt"
	"os"
	"testing"
)

// bin is the rafter binary built once for every test of the package.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rafter-systemtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin, err = Binary(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
