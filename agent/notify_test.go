package agent

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/rafterlb/rafter/internal/sdnotify"
)

// singleNode is a one-node cluster on 127.0.0.1 with free ports.
func singleNode(t *testing.T, dataDir string) Config {
	t.Helper()
	c := DefaultConfig()
	c.NodeID = "n1"
	c.Zone = "a"
	c.DataDir = dataDir
	c.AdminPort, c.RaftPort = 0, 0
	c.BootstrapExpect = 1
	c.AccessLog = "off"
	return c
}

func TestAgentTellsSystemdReadyThenStopping(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	recv := func() string {
		t.Helper()
		buf := make([]byte, 256)
		ln.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, err := ln.Read(buf)
		if err != nil {
			t.Fatalf("waiting for a notification: %v", err)
		}
		return string(buf[:n])
	}

	c := singleNode(t, t.TempDir())
	c.NotifySocket = sock
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, done := startAgent(t, ctx, c)
	if got := recv(); got != sdnotify.Ready {
		t.Fatalf("first notification %q, want %q", got, sdnotify.Ready)
	}
	cancel()
	if got := recv(); got != sdnotify.Stopping {
		t.Fatalf("second notification %q, want %q", got, sdnotify.Stopping)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
