package main

import (
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rafterlb/rafter/agent"
)

func TestAgentUpgradeFlag(t *testing.T) {
	if _, err := run(t, nil, "agent", "--upgrade"); err == nil || !strings.Contains(err.Error(), "--data-dir") {
		t.Fatalf("--upgrade without --data-dir: err %v, want one naming --data-dir", err)
	}
	if _, err := run(t, nil, "agent", "--upgrade", "--check", "--data-dir", t.TempDir()); err == nil || !strings.Contains(err.Error(), "--check") {
		t.Fatalf("--upgrade with --check: err %v", err)
	}
	if _, err := run(t, nil, "agent", "--upgrade", "--data-dir", t.TempDir()); err == nil || !strings.Contains(err.Error(), "running") {
		t.Fatalf("--upgrade with no agent running: err %v", err)
	}

	// The running "agent" is this process: on SIGHUP it names a new PID
	// (this test's parent, alive) in its PID file, as a new process would.
	dir := t.TempDir()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := os.WriteFile(agent.PIDFile(dir), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		t.Fatal(err)
	}
	go func() {
		select {
		case <-hup:
			_ = os.WriteFile(filepath.Join(dir, agent.PIDFileName), []byte(strconv.Itoa(os.Getppid())), 0o600)
		case <-time.After(30 * time.Second):
		}
	}()
	out, err := run(t, nil, "agent", "--upgrade", "--data-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	want := "upgraded: pid " + strconv.Itoa(os.Getppid()) + " serves now (was " + strconv.Itoa(os.Getpid()) + ")"
	if strings.TrimSpace(out) != want {
		t.Fatalf("output %q, want %q", out, want)
	}
}
