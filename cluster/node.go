package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/rafterlb/rafter/cluster/leading"
	"github.com/rafterlb/rafter/fsm"
)

// Node is one member of the Raft group holding the replicated configuration.
type Node struct {
	cfg     Config
	log     *slog.Logger
	fsm     *fsm.FSM
	adapter *raftFSM
	raft    *raft.Raft
	trans   raft.Transport
	stream  *streamLayer // nil with a test transport
	logs    raft.LogStore
	closers []io.Closer // stores this node opened itself
	// storesStop, closed by Close before Raft shuts down, ends the log
	// guard's retries of an append it must not give up (see truncatingLog).
	storesStop chan struct{}
	http       *http.Client

	ctx    context.Context // cancelled by Close; every background goroutine watches it
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex // guards closing (with wg.Add), subs, nextSub, leadership
	closing    bool
	subs       map[int]chan leading.Leadership
	nextSub    int
	leadership leading.Leadership // the latest report to subscribers
	notifyCh   chan bool          // Raft's Config.NotifyCh; drainNotify takes every change

	leader    atomic.Bool
	readyTerm atomic.Uint64 // term in which this leader's barrier completed
	// lastLeader: the latest other node seen leading; predecessor: that
	// node and when this one last heard from it, taken as it became leader.
	lastLeader  atomic.Pointer[string]
	predecessor atomic.Pointer[Predecessor]
	// prior: observeLoop's record of leader changes; priorContact: the
	// bound it publishes (PriorContact).
	prior        priorState
	priorContact atomic.Pointer[PriorContact]
	closeOnce    sync.Once
	closeErr     error

	observer *raft.Observer
	obsCh    chan raft.Observation
	// peerObserver reports replication starting and stopping per peer, on
	// a channel of its own: notePrior reads obsCh's length to know that no
	// leader observation waits, and a new leader's peer observations would
	// always be waiting behind its own.
	peerObserver *raft.Observer
	peerObsCh    chan raft.Observation
	metrics      *nodeMetrics
	health       peerHealth

	peersMu sync.Mutex
	peers   map[string]PeerInfo // what forming and AddVoter learned about servers
}

// Open starts the node: Raft with its stores and transport and, in the
// background, forming the cluster (bootstrap or join) when this node has no
// Raft state yet. Close releases everything.
func Open(ctx context.Context, cfg Config) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cluster: invalid config: %w", err)
	}
	cfg = cfg.withDefaults()
	level, _ := parseRaftLogLevel(strings.ToLower(cfg.RaftLogLevel))
	hlog := newHCLogAdapter(cfg.Logger, level)

	n := &Node{
		cfg:       cfg,
		log:       cfg.Logger,
		fsm:       fsm.New(),
		subs:      make(map[int]chan leading.Leadership),
		peers:     make(map[string]PeerInfo),
		obsCh:     make(chan raft.Observation, 128),
		peerObsCh: make(chan raft.Observation, 32),
		// Unbuffered: drainNotify reads the term of a gain while Raft
		// waits to hand it over.
		notifyCh: make(chan bool),
		metrics:  newNodeMetrics(),
	}
	n.metrics.raft.leading = n.leader.Load
	if cfg.Registerer != nil {
		if err := n.metrics.register(cfg.Registerer); err != nil {
			return nil, fmt.Errorf("cluster: metrics: %w", err)
		}
	}
	logPath := ""
	if cfg.Transport == nil {
		logPath = filepath.Join(cfg.DataDir, "raft.db")
	}
	n.adapter = newRaftFSM(n.fsm, cfg.NodeID, logPath)
	n.adapter.metrics = n.metrics
	n.health.init()
	defer func() {
		if err != nil {
			n.closeResources()
			if n.stream == nil && cfg.RaftListener != nil {
				_ = cfg.RaftListener.Close()
			}
		}
	}()

	stable, snaps, err := n.openStores(hlog)
	if err != nil {
		return nil, err
	}
	if err := checkNewestSnapshot(snaps, cfg.DataDir); err != nil {
		return nil, err
	}
	hasState, err := raft.HasExistingState(n.logs, stable, snaps)
	if err != nil {
		return nil, fmt.Errorf("cluster: reading raft state: %w", err)
	}

	rc, err := cfg.raftConfig()
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	rc.Logger = hlog
	rc.NotifyCh = n.notifyCh
	// Per-peer figures come labelled; the legacy copies with the peer in
	// the name would only be dropped by the sink.
	rc.NoLegacyTelemetry = true
	raftMetricsHub.install()
	raftMetricsHub.attach(n.metrics.raft)
	r, err := raft.NewRaft(rc, n.adapter, n.logs, stable, snaps, withoutPipelining(n.trans))
	if err != nil {
		raftMetricsHub.detach(n.metrics.raft)
		return nil, fmt.Errorf("cluster: starting raft: %w", err)
	}
	n.raft = r
	if n.stream != nil {
		n.stream.setMembers(func() []raft.Server { return r.GetConfiguration().Configuration().Servers })
	}
	n.http = newPeerClient(cfg.ClientTLS)
	n.ctx, n.cancel = context.WithCancel(context.WithoutCancel(ctx))

	n.observer = raft.NewObserver(n.obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation, raft.LeaderObservation:
			return true
		}
		return false
	})
	r.RegisterObserver(n.observer)
	n.peerObserver = raft.NewObserver(n.peerObsCh, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.PeerObservation)
		return ok
	})
	r.RegisterObserver(n.peerObserver)

	n.goTracked(n.leaveOnCorruption)
	n.goTracked(n.observeLoop)
	n.goTracked(n.leadershipLoop)
	if !hasState {
		n.goTracked(n.form)
	} else {
		n.log.Info("raft state found, not forming", "node", cfg.NodeID, "last_index", r.LastIndex())
	}
	return n, nil
}

// openStores opens (or adopts, in tests) the log, stable and snapshot
// stores and the transport.
func (n *Node) openStores(hlog hclog.Logger) (raft.StableStore, raft.SnapshotStore, error) {
	n.storesStop = make(chan struct{})
	cfg := n.cfg
	if cfg.Transport != nil {
		n.trans = cfg.Transport
		n.logs = cfg.LogStore
		stable, snaps := cfg.StableStore, cfg.SnapshotStore
		if n.logs == nil {
			n.logs = raft.NewInmemStore()
		}
		if stable == nil {
			stable = raft.NewInmemStore()
		}
		if snaps == nil {
			snaps = raft.NewInmemSnapshotStore()
		}
		n.logs = guardLog(n.logs, n.storesStop, n.log)
		return guardStable(stable), snaps, nil
	}

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("cluster: data dir: %w", err)
	}
	dbPath := filepath.Join(cfg.DataDir, "raft.db")
	db, err := raftboltdb.New(raftboltdb.Options{
		Path:   dbPath,
		NoSync: false, // an acknowledged write must survive power loss
		// bbolt holds an exclusive lock on the file while open: wait for
		// it only so long.
		BoltOptions: &bbolt.Options{Timeout: cfg.StoreLockWait},
	})
	if errors.Is(err, bbolt.ErrTimeout) {
		return nil, nil, fmt.Errorf("cluster: opening %s: waited %s: %w (or an upgrade's old process did not let go)",
			dbPath, cfg.StoreLockWait, ErrAgentRunning)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: opening %s: %w", dbPath, err)
	}
	bolt := &closingStore{bolt: db}
	n.closers = append(n.closers, bolt)
	logs, err := raft.NewLogCache(512, guardLog(bolt, n.storesStop, n.log))
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: log cache: %w", err)
	}
	n.logs = logs
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, snapshotsRetained, hlog)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: snapshot store: %w", err)
	}
	stream, err := newStreamLayer(cfg.RaftListener, cfg.RaftBind, cfg.RaftAdvertise, cfg.ServerTLS, cfg.ClientTLS)
	if err != nil {
		return nil, nil, err
	}
	n.stream = stream
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: transportMaxPool,
		Timeout: cfg.TransportTimeout,
		Logger:  hlog,
	})
	return guardStable(bolt), snaps, nil
}

// checkNewestSnapshot refuses to start from a damaged newest snapshot.
// Raft on its own would fall back to an older one and replay logs that
// compaction may already have removed; an operator must decide instead.
func checkNewestSnapshot(store raft.SnapshotStore, dataDir string) error {
	fix := "move the data directory aside and add this node to the cluster again so the leader sends it a fresh snapshot"
	if dataDir != "" {
		fix = "move " + dataDir + " aside and add this node to the cluster again so the leader sends it a fresh snapshot"
	}
	list, err := store.List()
	if err != nil {
		return fmt.Errorf("cluster: listing snapshots: %w", err)
	}
	if len(list) == 0 {
		return nil
	}
	meta := list[0]
	name := meta.ID
	if dataDir != "" {
		// FileSnapshotStore's layout: DIR/snapshots/ID/{meta.json,state.bin}.
		name = filepath.Join(dataDir, "snapshots", meta.ID, "state.bin")
	}
	_, rc, err := store.Open(meta.ID)
	if err != nil {
		return fmt.Errorf("cluster: snapshot %s (index %d): %w: %w; %s",
			name, meta.Index, fsm.ErrCorruptSnapshot, err, fix)
	}
	defer func() { _ = rc.Close() }()
	if _, err := fsm.ReadSnapshot(rc); err != nil {
		return fmt.Errorf("cluster: snapshot %s (index %d): %w; %s", name, meta.Index, err, fix)
	}
	return nil
}

// leaveOnCorruption shuts Raft down once the adapter has met a corrupt
// log entry: a node that cannot apply its log must not vote, lead or
// replicate it. The node stays open so that its data plane keeps serving
// the last good state and GET /v1/status reports the error.
func (n *Node) leaveOnCorruption() {
	select {
	case <-n.ctx.Done():
		return
	case <-n.adapter.corruptCh:
	}
	c := n.adapter.corruption()
	n.log.Error(c.Error(), "index", c.Index, "file", c.Path, "last_good_index", c.LastGood)
	if err := n.raft.Shutdown().Error(); err != nil {
		n.log.Error("raft shutdown after a corrupt log entry", "err", err)
	}
}

// goTracked runs fn in a goroutine Close waits for. It reports false (and
// runs nothing) once Close has begun.
func (n *Node) goTracked(fn func()) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closing {
		return false
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		fn()
	}()
	return true
}

// Close stops forming and the leader's tasks, shuts Raft down and closes
// the stores. It is idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.mu.Lock()
		n.closing = true
		n.mu.Unlock()
		n.cancel()
		close(n.storesStop)
		var errs []error
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("cluster: raft shutdown: %w", err))
		}
		n.raft.DeregisterObserver(n.observer)
		n.raft.DeregisterObserver(n.peerObserver)
		raftMetricsHub.detach(n.metrics.raft)
		n.wg.Wait()
		n.http.CloseIdleConnections()
		n.closeSubscribers()
		errs = append(errs, n.closeResources())
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// closeResources closes what Raft does not: the transport when it cannot
// be closed by Raft, and stores this node opened.
func (n *Node) closeResources() error {
	var errs []error
	if n.raft == nil && n.cfg.Transport == nil && n.trans != nil {
		if c, ok := n.trans.(raft.WithClose); ok {
			errs = append(errs, c.Close())
		}
	}
	for _, c := range n.closers {
		errs = append(errs, c.Close())
	}
	n.closers = nil
	return errors.Join(errs...)
}

// Apply proposes cmd and waits until it is applied on this (leader) node.
// The command is validated against the current state first, so bad input
// never reaches the log. It returns the Raft index of the entry and the
// fsm's error, if the command failed at apply time (a concurrent write won).
func (n *Node) Apply(ctx context.Context, cmd *fsm.Command) (uint64, error) {
	if n.raft.State() != raft.Leader {
		return 0, n.notLeader(nil)
	}
	cur := n.fsm.Config()
	data, err := fsm.EncodeCommand(cmd)
	if err != nil {
		// What the fsm finds wrong with it says more (a version, a field).
		if _, nerr := n.fsm.Next(cur, cur.Index+1, cmd); nerr != nil {
			return 0, nerr
		}
		return 0, fmt.Errorf("cluster: encode command: %w", err)
	}
	// Checked as the entry will be applied; when nothing else is applied
	// first, applying it publishes the document built here.
	next, err := n.fsm.Check(cur, cur.Index+1, data)
	if err != nil {
		return 0, err
	}
	n.fsm.Expect(cur, cur.Index+1, data, next)
	start := time.Now()
	f := n.raft.Apply(data, enqueueTimeout(ctx))
	if err := n.await(ctx, f); err != nil {
		return 0, err
	}
	n.metrics.apply.Observe(time.Since(start).Seconds())
	if ferr, ok := f.Response().(error); ok && ferr != nil {
		return f.Index(), ferr
	}
	return f.Index(), nil
}

// enqueueTimeout is how long raft.Apply may wait to hand the entry to the
// leader loop; the rest of ctx's deadline covers the commit.
func enqueueTimeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Millisecond)
	}
	return 0
}

// await waits for a Raft future, giving up when ctx ends (the operation
// itself may still complete) or the node closes.
//
// The waiting goroutine is deliberately not tracked by Close: Raft leaves
// some futures unanswered when it shuts down (those still queued in its
// buffered channels), and Close must not wait on them. Every other future
// is answered at commit, loss of leadership or shutdown, ending it.
func (n *Node) await(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return n.mapRaftErr(err)
	case <-ctx.Done():
		return fmt.Errorf("%w: %w (the operation may still complete)", ErrTimeout, ctx.Err())
	case <-n.ctx.Done():
		return ErrShutdown
	}
}

func (n *Node) mapRaftErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader),
		errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress),
		errors.Is(err, raft.ErrNotVoter):
		return n.notLeader(err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %w", ErrShutdown, err)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return fmt.Errorf("cluster: %w", err)
}

// notLeader says where the write should go: ErrNotLeader when another node
// leads, ErrNoLeader during an election or without quorum.
func (n *Node) notLeader(cause error) error {
	id, _ := n.Leader()
	sentinel := ErrNotLeader
	if id == "" || id == n.cfg.NodeID {
		sentinel = ErrNoLeader
	}
	if cause != nil {
		return fmt.Errorf("%w: %w", sentinel, cause)
	}
	if sentinel == ErrNotLeader {
		return fmt.Errorf("%w: leader is %s", sentinel, id)
	}
	return sentinel
}

// Config returns the local copy of the replicated configuration.
func (n *Node) Config() *fsm.Config { return n.fsm.Config() }

// Changed returns a channel closed at the next change of Config.
func (n *Node) Changed() <-chan struct{} { return n.fsm.Changed() }

// Leader returns the leader's node id and admin address ("" when unknown).
func (n *Node) Leader() (id, adminAddr string) {
	_, lid := n.raft.LeaderWithID()
	id = string(lid)
	if id == "" {
		return "", ""
	}
	return id, n.adminAddrOf(id)
}

func (n *Node) adminAddrOf(id string) string {
	if id == n.cfg.NodeID {
		return n.cfg.AdminAddr
	}
	if node, ok := n.fsm.Config().Nodes[id]; ok && node.AdminAddr != "" {
		return node.AdminAddr
	}
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	return n.peers[id].AdminAddr
}

// IsLeader reports whether this node is the leader right now (without
// checking with the followers; see VerifyLeader).
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// VerifyLeader checks with a quorum that this node is still the leader.
func (n *Node) VerifyLeader(ctx context.Context) error {
	if n.raft.State() != raft.Leader {
		return n.notLeader(nil)
	}
	return n.await(ctx, n.raft.VerifyLeader())
}

// ConsistentConfig returns a Config that reflects every write acknowledged
// before the call (a linearizable read): the leader confirms it still leads,
// then waits until it has applied everything committed before that check.
func (n *Node) ConsistentConfig(ctx context.Context) (*fsm.Config, error) {
	if n.raft.State() != raft.Leader {
		return nil, n.notLeader(nil)
	}
	commit := n.raft.CommitIndex()
	if err := n.VerifyLeader(ctx); err != nil {
		return nil, err
	}
	// Until the new leader has committed an entry of its own term its commit
	// index may lag the previous leader's; a barrier settles both at once.
	if n.readyTerm.Load() != n.raft.CurrentTerm() {
		if err := n.await(ctx, n.raft.Barrier(enqueueTimeout(ctx))); err != nil {
			return nil, err
		}
		return n.fsm.Config(), nil
	}
	if err := n.waitApplied(ctx, commit); err != nil {
		return nil, err
	}
	return n.fsm.Config(), nil
}

// waitApplied waits until the fsm has applied every entry up to index.
func (n *Node) waitApplied(ctx context.Context, index uint64) error {
	const poll = 2 * time.Millisecond
	t := time.NewTicker(poll)
	defer t.Stop()
	for polls := 0; ; polls++ {
		if n.appliedThrough(index) {
			return nil
		}
		// A configuration entry taken over by a snapshot restore is never
		// handed to the adapter; after a short wait let a barrier decide.
		if polls > 25 && n.raft.AppliedIndex() >= index {
			return n.await(ctx, n.raft.Barrier(enqueueTimeout(ctx)))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: waiting for index %d: %w", ErrTimeout, index, ctx.Err())
		case <-n.ctx.Done():
			return ErrShutdown
		case <-t.C:
		}
	}
}

// appliedThrough: Raft hands no-ops and barriers to nobody, so an index
// that is one of them counts as applied once Raft has passed it and the fsm
// has applied what came before.
func (n *Node) appliedThrough(index uint64) bool {
	applied := n.adapter.applied.Load()
	if applied >= index {
		return true
	}
	if n.raft.AppliedIndex() < index {
		return false
	}
	for i := index; i > applied; i-- {
		var l raft.Log
		if err := n.logs.GetLog(i, &l); err != nil {
			return false
		}
		if l.Type != raft.LogNoop && l.Type != raft.LogBarrier {
			return false
		}
	}
	return true
}

// WaitForIndex blocks until the local Config has reached index (a watch:
// `?index=N&wait=30s`), and returns it.
func (n *Node) WaitForIndex(ctx context.Context, index uint64) (*fsm.Config, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(n.ctx, func() { cancel(ErrShutdown) })
	defer stop()
	c, err := fsm.WaitIndex(ctx, n.fsm, index)
	switch {
	case err == nil:
		return c, nil
	case errors.Is(context.Cause(ctx), ErrShutdown):
		return c, ErrShutdown
	}
	return c, fmt.Errorf("%w: waiting for index %d: %w", ErrTimeout, index, err)
}

// TakeSnapshot compacts the log now instead of at the next threshold.
func (n *Node) TakeSnapshot() error {
	if err := n.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("cluster: snapshot: %w", err)
	}
	return nil
}
