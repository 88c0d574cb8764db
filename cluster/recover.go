package cluster

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/rafterlb/rafter/fsm"
)

// ErrAgentRunning: the data directory is in use by a running agent.
var ErrAgentRunning = errors.New("the data directory is in use: stop the agent first")

// RecoverPeer is one voter of a recovered cluster.
type RecoverPeer struct {
	ID, RaftAddr string
}

// RecoverOptions say which node's data to turn into a new cluster.
type RecoverOptions struct {
	DataDir string
	NodeID  string // the node whose data DataDir holds
	// Peers are the voters of the new cluster. Empty: NodeID alone, at the
	// Raft address the data last recorded for it.
	Peers []RecoverPeer
	// LockTimeout bounds the wait for the Raft store's file lock; a
	// running agent holds it.
	LockTimeout time.Duration
}

// RecoverResult describes the recovered state.
type RecoverResult struct {
	Index   uint64   // the state's Raft index
	Objects int      // listeners, routes, pools and vips kept
	Nodes   []string // node records kept (remove the lost ones once it runs)
	Voters  []raft.Server
}

// Recover rewrites a stopped node's Raft data so that, started again, it
// forms a new cluster of opts.Peers (or of itself alone) with the whole
// configuration it had: the way back when a quorum is lost for good. It is
// hashicorp/raft's RecoverCluster over this node's stores; it refuses while
// an agent has the store open.
func Recover(opts RecoverOptions) (RecoverResult, error) {
	var res RecoverResult
	if opts.NodeID == "" {
		return res, errors.New("node id: required")
	}
	dbPath := filepath.Join(opts.DataDir, "raft.db")
	if _, err := os.Stat(dbPath); err != nil {
		return res, fmt.Errorf("no Raft state to recover in %s: %w", opts.DataDir, err)
	}
	timeout := opts.LockTimeout
	if timeout <= 0 {
		timeout = time.Second
	}
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: dbPath, BoltOptions: &bbolt.Options{Timeout: timeout}})
	if errors.Is(err, bbolt.ErrTimeout) {
		return res, fmt.Errorf("%s is locked: %w", dbPath, ErrAgentRunning)
	}
	if err != nil {
		return res, fmt.Errorf("opening %s: %w", dbPath, err)
	}
	defer bolt.Close()
	hlog := hclog.New(&hclog.LoggerOptions{Output: io.Discard})
	snaps, err := raft.NewFileSnapshotStoreWithLogger(opts.DataDir, snapshotsRetained, hlog)
	if err != nil {
		return res, fmt.Errorf("snapshot store: %w", err)
	}
	if err := checkNewestSnapshot(snaps, opts.DataDir); err != nil {
		return res, err
	}

	var voters []raft.Server
	if len(opts.Peers) == 0 {
		last, err := lastConfiguration(bolt, snaps)
		if err != nil {
			return res, err
		}
		for _, s := range last.Servers {
			if string(s.ID) == opts.NodeID {
				voters = []raft.Server{{Suffrage: raft.Voter, ID: s.ID, Address: s.Address}}
			}
		}
		if voters == nil {
			return res, fmt.Errorf("node %q is not in the last Raft configuration of %s; give --peers", opts.NodeID, opts.DataDir)
		}
	} else {
		self := false
		for _, p := range opts.Peers {
			voters = append(voters, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.RaftAddr)})
			self = self || p.ID == opts.NodeID
		}
		if !self {
			return res, fmt.Errorf("peers: must include this node %q", opts.NodeID)
		}
		if err := CheckBootstrapExpect(len(voters)); err != nil {
			return res, fmt.Errorf("peers: %w", err)
		}
	}

	cfg := DefaultConfig()
	cfg.NodeID = opts.NodeID
	cfg = cfg.withDefaults()
	rc, err := cfg.raftConfig()
	if err != nil {
		return res, err
	}
	rc.Logger = hlog
	adapter := &raftFSM{f: fsm.New()}
	_, trans := raft.NewInmemTransport("")
	defer trans.Close()
	if err := raft.RecoverCluster(rc, adapter, bolt, bolt, snaps, trans, raft.Configuration{Servers: voters}); err != nil {
		return res, fmt.Errorf("recovering %s: %w", opts.DataDir, err)
	}
	state := adapter.f.Config()
	res.Index = state.Index
	res.Objects = len(state.Objects())
	for id := range state.Nodes {
		res.Nodes = append(res.Nodes, id)
	}
	res.Voters = voters
	return res, nil
}

// lastConfiguration is the newest Raft configuration in the log, or the
// newest snapshot's when the log holds none.
func lastConfiguration(logs raft.LogStore, snaps raft.SnapshotStore) (raft.Configuration, error) {
	first, err := logs.FirstIndex()
	if err != nil {
		return raft.Configuration{}, err
	}
	last, err := logs.LastIndex()
	if err != nil {
		return raft.Configuration{}, err
	}
	for i := last; i >= first && i > 0; i-- {
		var l raft.Log
		if err := logs.GetLog(i, &l); err != nil {
			if errors.Is(err, raft.ErrLogNotFound) {
				continue
			}
			return raft.Configuration{}, fmt.Errorf("reading log %d: %w", i, err)
		}
		if l.Type == raft.LogConfiguration {
			return raft.DecodeConfiguration(l.Data), nil
		}
	}
	list, err := snaps.List()
	if err != nil {
		return raft.Configuration{}, err
	}
	if len(list) == 0 {
		return raft.Configuration{}, errors.New("no Raft configuration in the log or snapshots")
	}
	return list[0].Configuration, nil
}
