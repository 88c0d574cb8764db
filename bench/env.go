package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// gitSHA is the short commit of the working tree ("unknown" outside git),
// with "-dirty" when it has uncommitted changes.
func gitSHA() string {
	out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	sha := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		sha += "-dirty"
	}
	return sha
}

// rafterVersion names the rafter build proxy name (Rafter or RafterB)
// runs: the tree's commit when the harness built it, else the binary's
// path, since a binary given with --rafter or --rafter-b need not be the
// tree's.
func rafterVersion(cfg Config, name string) string {
	switch {
	case name == RafterB:
		return "rafter " + cfg.RafterBBin
	case cfg.RafterBin != "":
		return "rafter " + cfg.RafterBin
	}
	return "rafter " + gitSHA()
}

// machine describes this host from /proc and the Go runtime.
func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	return m
}

// ensureTools installs the Debian packages of missing tools when allowed.
func ensureTools(ctx context.Context, cfg Config, log *slog.Logger) error {
	need := map[string]string{cfg.WrkBin: "wrk"}
	for _, p := range cfg.Proxies {
		switch p {
		case HAProxy:
			need[cfg.HAProxyBin] = "haproxy"
		case Nginx:
			need[cfg.NginxBin] = "nginx"
		}
	}
	var missing []string
	for bin, pkg := range need {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, pkg)
		}
	}
	if _, err := exec.LookPath("taskset"); err != nil && cfg.Pin {
		missing = append(missing, "util-linux")
	}
	if len(missing) == 0 {
		return nil
	}
	if !cfg.Install {
		return fmt.Errorf("missing %v and install is off (run: apt-get install -y %s)", missing, strings.Join(missing, " "))
	}
	log.Info("installing", "packages", missing)
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	for _, args := range [][]string{{"update"}, append([]string{"install", "-y", "--no-install-recommends"}, missing...)} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %w: %s", args[0], err, LogTailBytes(out, 800))
		}
	}
	return nil
}

// LogTailBytes is the last n bytes of b as text.
func LogTailBytes(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// pinSelf moves every thread of this process to core, so the backend and
// the paced client share the load core with wrk. Threads made later inherit it.
func pinSelf(core int) error {
	out, err := exec.Command("taskset", "-a", "-p", "-c", strconv.Itoa(core), strconv.Itoa(os.Getpid())).CombinedOutput()
	if err != nil {
		return fmt.Errorf("taskset self: %w: %s", err, out)
	}
	return nil
}

// buildRafter builds ./cmd/rafter of the module in the current directory
// the way `make package` builds the binary operators run: static (no cgo),
// without symbol tables. The harness measures what is shipped.
func buildRafter(ctx context.Context, dir string) (string, error) {
	return goBuild(ctx, "", "./cmd/rafter", filepath.Join(dir, "bin", "rafter"))
}

// buildFloor builds the floors' command (floorproxy) to dir/name, the
// same way; like buildRafter it runs from the repository's root.
func buildFloor(ctx context.Context, dir, name string) (string, error) {
	out, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	return goBuild(ctx, "bench", "./floorproxy", out)
}

// goBuild builds pkg of the module in moduleDir ("": the current
// directory) to out, static and without symbol tables.
func goBuild(ctx context.Context, moduleDir, pkg, out string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w: %s", filepath.Join(moduleDir, pkg), err, LogTailBytes(b, 800))
	}
	return out, nil
}
