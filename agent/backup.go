package agent

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

// Backup bounds, checked by Config.Validate.
const (
	minBackupEvery = time.Second
	maxBackupKeep  = 10000
)

// backups saves this node's copy of the replicated state to a directory on
// a timer, in the format of `rafter snapshot save`, keeping the newest few.
//
// Every node that has --backup-dir saves, not only the leader: a node's
// copy is committed state, saving it needs no network, and it keeps going
// when the quorum is lost — the moment a recent copy matters most. A file
// is written only when the state changed since the last one.
type backups struct {
	dir    string
	nodeID string
	every  time.Duration
	keep   int
	state  func() *fsm.Config
	now    func() time.Time
	log    *slog.Logger

	lastIndex uint64
}

// Run saves once at start and then every b.every until ctx is done.
func (b *backups) Run(ctx context.Context) {
	t := time.NewTicker(b.every)
	defer t.Stop()
	for {
		if err := b.save(); err != nil {
			b.log.Error("backup failed", "dir", b.dir, "err", err,
				"action", "check that --backup-dir exists, is writable by rafter and has free space; the next backup is tried at the next interval")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

const backupSuffix = ".snap"

// save writes rafter-NODE-TIME-INDEX.snap unless the state is unchanged,
// then removes all but the newest b.keep of this node's files.
func (b *backups) save() error {
	cfg := b.state()
	if cfg == nil || cfg.Index == 0 || cfg.Index == b.lastIndex {
		return nil
	}
	var buf bytes.Buffer
	if err := fsm.WriteSnapshot(&buf, cfg); err != nil {
		return err
	}
	// The index is zero-padded so that names sort in the order the files
	// were written, also within one second.
	name := fmt.Sprintf("rafter-%s-%s-%020d%s", b.nodeID, b.now().UTC().Format("20060102T150405Z"), cfg.Index, backupSuffix)
	if err := writeFileAtomic(filepath.Join(b.dir, name), buf.Bytes()); err != nil {
		return err
	}
	b.lastIndex = cfg.Index
	b.log.Info("backup saved", "file", name, "index", cfg.Index, "objects", len(cfg.Objects()))
	return b.prune()
}

func (b *backups) prune() error {
	entries, err := os.ReadDir(b.dir)
	if err != nil {
		return err
	}
	prefix := "rafter-" + b.nodeID + "-"
	var mine []string
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, prefix) && strings.HasSuffix(n, backupSuffix) && e.Type().IsRegular() {
			mine = append(mine, n)
		}
	}
	// The timestamp sorts by name; the index breaks ties within a second.
	slices.SortFunc(mine, func(x, y string) int {
		if c := strings.Compare(x[:len(prefix)+16], y[:len(prefix)+16]); c != 0 {
			return c
		}
		return backupIndex(x) - backupIndex(y)
	})
	for len(mine) > b.keep {
		if err := os.Remove(filepath.Join(b.dir, mine[0])); err != nil {
			return err
		}
		mine = mine[1:]
	}
	return nil
}

func backupIndex(name string) int {
	s := strings.TrimSuffix(name, backupSuffix)
	n, _ := strconv.Atoi(s[strings.LastIndexByte(s, '-')+1:])
	return n
}

// writeFileAtomic replaces path with data so that a crash leaves either
// no file or the whole new one.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		defer d.Close()
		return d.Sync()
	}
	return nil
}
