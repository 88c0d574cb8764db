package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rafterlb/rafter/client"
	"github.com/rafterlb/rafter/fsm"
)

func TestBackupsKeepTheNewestAndSkipUnchanged(t *testing.T) {
	dir := t.TempDir()
	f := fsm.New()
	clock := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	b := &backups{dir: dir, nodeID: "n1", every: time.Hour, keep: 3, state: f.Config,
		now: func() time.Time { return clock }, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	// Another node's files in the same directory are left alone.
	other := filepath.Join(dir, "rafter-n2-20261204T000000Z-1.snap")
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		objs, err := fsm.ParseManifest(fmt.Appendf(nil, "kind: listener\nname: l%d\nspec: {port: %d}\n", i, 8000+i))
		if err != nil {
			t.Fatal(err)
		}
		data, err := fsm.EncodeCommand(fsm.NewCommand(&fsm.Put{Objects: objs}))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Apply(uint64(i), data); err != nil {
			t.Fatal(err)
		}
		if err := b.save(); err != nil {
			t.Fatal(err)
		}
		if err := b.save(); err != nil { // unchanged: no second file
			t.Fatal(err)
		}
		clock = clock.Add(time.Minute)
	}
	names := backupFiles(t, dir)
	want := []string{
		"rafter-n1-20261204T100200Z-00000000000000000003.snap",
		"rafter-n1-20261204T100300Z-00000000000000000004.snap",
		"rafter-n1-20261204T100400Z-00000000000000000005.snap",
		"rafter-n2-20261204T000000Z-1.snap",
	}
	if !slices.Equal(names, want) {
		t.Fatalf("files %v, want %v", names, want)
	}
	data, err := os.ReadFile(filepath.Join(dir, want[2]))
	if err != nil {
		t.Fatal(err)
	}
	got, err := fsm.ReadSnapshot(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("the newest backup does not read back: %v", err)
	}
	if got.Index != 5 || len(got.Objects()) != 5 {
		t.Fatalf("newest backup: index %d with %d objects, want 5 and 5", got.Index, len(got.Objects()))
	}
}

// TestAgentSavesBackups runs a node with --backup-dir and restores what it
// saved into a fresh node: the file is what `rafter snapshot save` writes.
func TestAgentSavesBackups(t *testing.T) {
	backupDir := t.TempDir()
	c := singleNode(t, t.TempDir())
	c.BackupDir, c.BackupEvery, c.BackupKeep = backupDir, time.Second, 2
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, done := startAgent(t, ctx, c)
	cl := client.New(a.AdminAddr(), "", nil)
	newest := func() (*fsm.Config, []byte, error) {
		files := backupFiles(t, backupDir)
		if len(files) == 0 {
			return nil, nil, errors.New("no backup yet")
		}
		snap, err := os.ReadFile(filepath.Join(backupDir, files[len(files)-1]))
		if err != nil {
			return nil, nil, err
		}
		cfg, err := fsm.ReadSnapshot(bytes.NewReader(snap))
		return cfg, snap, err
	}
	for i := range 4 {
		if err := ApplyWhenLeader(ctx, cl, fmt.Appendf(nil, "kind: listener\nname: l%d\nspec: {port: %d}\n", i, freePort(t)), 30*time.Second); err != nil {
			t.Fatal(err)
		}
		eventually(t, "a backup of the latest state", func() error {
			cfg, _, err := newest()
			if err != nil {
				return err
			}
			if cfg.Listeners[fmt.Sprintf("l%d", i)] == nil {
				return fmt.Errorf("the newest backup (index %d) lacks listener l%d", cfg.Index, i)
			}
			return nil
		})
	}
	// Stopped first: a running node may save (and prune) once more while
	// the directory is read.
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if files := backupFiles(t, backupDir); len(files) != 2 {
		t.Fatalf("files %v, want the newest 2", files)
	}
	saved, snap, err := newest()
	if err != nil || len(saved.Listeners) != 4 {
		t.Fatalf("newest backup: %v, %v; want 4 listeners", saved, err)
	}

	// A new cluster restores it as it would a `rafter snapshot save` file.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	a2, done2 := startAgent(t, ctx2, singleNode(t, t.TempDir()))
	cl2 := client.New(a2.AdminAddr(), "", nil)
	eventually(t, "restore", func() error {
		_, err := cl2.Restore(ctx2, snap, false)
		return err
	})
	objs, _, err := cl2.List(ctx2, fsm.KindListener)
	if err != nil || len(objs) != 4 {
		t.Fatalf("restored listeners: %d, %v; want 4", len(objs), err)
	}
	cancel2()
	<-done2
}

func backupFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), backupSuffix) {
			out = append(out, e.Name())
		}
	}
	return out
}
