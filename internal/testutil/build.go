package testutil

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// rafterPkg is built by import path, so the build works from any
// directory inside the module (a test runs in its package's directory).
const rafterPkg = "github.com/rafterlb/rafter/cmd/rafter"

// BuildRafter builds ./cmd/rafter into dir and returns the binary's path.
func BuildRafter(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "rafter")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, rafterPkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building rafter: %w\n%s", err, b)
	}
	return out, nil
}

// RunWithRafter is the body of a TestMain whose tests run the rafter
// binary: it builds it once into a temporary directory, sets *bin to its
// path, runs the tests and removes the directory. It returns the exit code
// for os.Exit.
func RunWithRafter(m *testing.M, bin *string) int {
	dir, err := os.MkdirTemp("", "rafter-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if *bin, err = BuildRafter(context.Background(), dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}
