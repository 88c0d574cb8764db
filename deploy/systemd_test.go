package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnitsVerify runs systemd-analyze verify on both units in a
// throwaway root holding the binary they start and systemd's own units, and
// takes any warning (an unknown key, a bad value) as a failure.
func TestSystemdUnitsVerify(t *testing.T) {
	need(t, "systemd-analyze")
	root := t.TempDir()
	copyFile(t, rafterBinary(t), filepath.Join(root, "usr/bin/rafter"), 0o755)
	kill, err := exec.LookPath("kill")
	if err != nil {
		t.Fatalf("kill: %v", err)
	}
	copyFile(t, kill, filepath.Join(root, "usr/bin/kill"), 0o755)
	if err := os.Symlink("usr/bin", filepath.Join(root, "bin")); err != nil {
		t.Fatal(err)
	}
	// verify loads the units' default dependencies (sysinit.target ...).
	if err := os.MkdirAll(filepath.Join(root, "usr/lib/systemd"), 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "", nil, "cp", "-a", "/usr/lib/systemd/system", filepath.Join(root, "usr/lib/systemd/"))
	units := []string{"rafter.service", "rafter-register@.service"}
	for _, u := range units {
		copyFile(t, filepath.Join(repoRoot(t), "deploy/systemd", u), filepath.Join(root, "etc/systemd/system", u), 0o644)
	}
	cmd := exec.Command("systemd-analyze", "verify", "--man=no", "--root="+root,
		"/etc/systemd/system/rafter.service", "/etc/systemd/system/rafter-register@web.service")
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestSystemdUnitShape pins the properties the operations guide promises.
func TestSystemdUnitShape(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy/systemd/rafter.service"))
	if err != nil {
		t.Fatal(err)
	}
	caps := "CAP_NET_BIND_SERVICE CAP_NET_ADMIN CAP_NET_RAW"
	for _, line := range []string{
		"Type=notify", "User=rafter", "NoNewPrivileges=yes", "ProtectSystem=strict",
		"ReadWritePaths=/var/lib/rafter", "AmbientCapabilities=" + caps, "CapabilityBoundingSet=" + caps,
		"ExecReload=/bin/kill -HUP $MAINPID", "LimitNOFILE=1048576",
	} {
		if !strings.Contains("\n"+string(data)+"\n", "\n"+line+"\n") {
			t.Errorf("rafter.service lacks the line %q", line)
		}
	}
}
