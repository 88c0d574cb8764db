package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/testutil"
)

const waitTimeout = 15 * time.Second

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, waitTimeout, what, cond)
}

func listenerCmd(name string, port int) *fsm.Command {
	spec, _ := json.Marshal(fsm.ListenerSpec{Port: port})
	return fsm.PutCommand(fsm.Object{Kind: fsm.KindListener, Name: name, Spec: spec}, nil)
}

// diskConfig is a single node on loopback TCP with its state in dir.
func diskConfig(id, dir, bind string) Config {
	cfg := DefaultConfig()
	cfg.NodeID = id
	cfg.Zone = "zone-a"
	cfg.DataDir = dir
	cfg.RaftBind = bind
	cfg.AdminAddr = "127.0.0.1:1"
	cfg.BootstrapExpect = 1
	return cfg
}

func openNode(t testing.TB, cfg Config) *Node {
	t.Helper()
	n, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open %s: %v", cfg.NodeID, err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

func waitLeader(t testing.TB, n *Node) {
	t.Helper()
	waitFor(t, n.cfg.NodeID+" leading with its node record", func() bool {
		_, ok := n.Config().Nodes[n.cfg.NodeID]
		return n.IsLeader() && ok
	})
}

func apply(t testing.TB, n *Node, cmd *fsm.Command) uint64 {
	t.Helper()
	idx, err := n.Apply(testCtx(t), cmd)
	if err != nil {
		t.Fatalf("apply on %s: %v", n.cfg.NodeID, err)
	}
	return idx
}

// TestDiskRestartKeepsState: a node on BoltDB and file snapshots comes
// back with the same document at the same index, from the log alone and
// from a snapshot plus the log after it.
func TestDiskRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	cfg := diskConfig("solo", dir, "127.0.0.1:0")
	n := openNode(t, cfg)
	waitLeader(t, n)
	cfg.RaftBind = n.PeerInfo().RaftAddr // come back on the address in the Raft configuration

	restart := func(n *Node) *Node {
		t.Helper()
		want := n.Config()
		if err := n.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		if err := n.Close(); err != nil {
			t.Fatalf("second close: %v", err)
		}
		n = openNode(t, cfg)
		got, err := n.WaitForIndex(testCtx(t), want.Index)
		if err != nil {
			t.Fatalf("after restart: %v", err)
		}
		if got.Index != want.Index || !reflect.DeepEqual(got.Listeners, want.Listeners) || !reflect.DeepEqual(got.Nodes, want.Nodes) {
			t.Fatalf("after restart: index %d listeners %v, want index %d listeners %v", got.Index, got.Listeners, want.Index, want.Listeners)
		}
		return n
	}

	for i := range 5 {
		apply(t, n, listenerCmd(fmt.Sprintf("a%d", i), 3000+i))
	}
	n = restart(n)
	waitLeader(t, n)

	for i := range 5 {
		apply(t, n, listenerCmd(fmt.Sprintf("b%d", i), 4000+i))
	}
	if err := n.TakeSnapshot(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	apply(t, n, listenerCmd("after-snapshot", 5000))
	n = restart(n)
	if n.Config().Listeners["b4"] == nil || n.Config().Listeners["after-snapshot"] == nil {
		t.Fatal("state lost across snapshot and restart")
	}
	entries, err := os.ReadDir(filepath.Join(dir, "snapshots"))
	if err != nil || len(entries) == 0 {
		t.Fatalf("no snapshot on disk: %v %v", entries, err)
	}
}

// TestCorruptSnapshotRefused: a damaged newest snapshot stops the node at
// Open with an error naming it, instead of a silent fallback.
func TestCorruptSnapshotRefused(t *testing.T) {
	tests := []struct {
		name    string
		corrupt func(t *testing.T, snapDir string)
	}{
		{"flipped byte (store checksum)", func(t *testing.T, snapDir string) {
			p := filepath.Join(snapDir, "state.bin")
			b := readFile(t, p)
			b[len(b)/2] ^= 0xff
			writeFile(t, p, b)
		}},
		{"garbage with valid store checksum (fsm checksum)", func(t *testing.T, snapDir string) {
			p := filepath.Join(snapDir, "state.bin")
			b := readFile(t, p)
			b = bytes.Repeat([]byte{0x1f}, len(b))
			writeFile(t, p, b)
			rewriteSnapshotCRC(t, snapDir, b)
		}},
		{"truncated with valid store checksum", func(t *testing.T, snapDir string) {
			p := filepath.Join(snapDir, "state.bin")
			b := readFile(t, p)
			b = b[:len(b)/2]
			writeFile(t, p, b)
			rewriteSnapshotCRC(t, snapDir, b)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := diskConfig("solo", dir, "127.0.0.1:0")
			n := openNode(t, cfg)
			waitLeader(t, n)
			cfg.RaftBind = n.PeerInfo().RaftAddr
			apply(t, n, listenerCmd("web", 8080))
			if err := n.TakeSnapshot(); err != nil {
				t.Fatalf("snapshot: %v", err)
			}
			if err := n.Close(); err != nil {
				t.Fatal(err)
			}
			snaps, err := os.ReadDir(filepath.Join(dir, "snapshots"))
			if err != nil || len(snaps) != 1 {
				t.Fatalf("snapshots: %v %v", snaps, err)
			}
			tt.corrupt(t, filepath.Join(dir, "snapshots", snaps[0].Name()))

			n2, err := Open(context.Background(), cfg)
			if err == nil {
				_ = n2.Close()
				t.Fatal("Open accepted a corrupt snapshot")
			}
			file := filepath.Join(dir, "snapshots", snaps[0].Name())
			if !errors.Is(err, fsm.ErrCorruptSnapshot) || !strings.Contains(err.Error(), file) {
				t.Fatalf("Open: %v; want ErrCorruptSnapshot naming %s", err, file)
			}
			t.Logf("refused: %v", err)
		})
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// rewriteSnapshotCRC makes raft's FileSnapshotStore accept state, so the
// damage reaches the fsm's own checks.
func rewriteSnapshotCRC(t *testing.T, snapDir string, state []byte) {
	t.Helper()
	p := filepath.Join(snapDir, "meta.json")
	var meta map[string]any
	if err := json.Unmarshal(readFile(t, p), &meta); err != nil {
		t.Fatal(err)
	}
	h := crc64.New(crc64.MakeTable(crc64.ECMA))
	h.Write(state)
	meta["CRC"] = h.Sum(nil)
	meta["Size"] = len(state)
	b, err := json.Marshal(meta)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, p, b)
}

// countingHandler counts log records by message, for "happened once" checks.
type countingHandler struct {
	mu     *sync.Mutex
	counts map[string]int
}

func newCountingHandler() *countingHandler {
	return &countingHandler{mu: new(sync.Mutex), counts: map[string]int{}}
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.counts[r.Message]++
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }
func (h *countingHandler) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.counts[msg]
}
