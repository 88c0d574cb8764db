package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/sdnotify"
)

// Upgrader hands this process's listening sockets to a new process started
// from the same path, and tells it when it may serve
// (github.com/cloudflare/tableflip.Upgrader is one).
type Upgrader interface {
	// HasParent reports whether an upgrade started this process.
	HasParent() bool
	// ListenWithCallback returns the socket the parent passed on under
	// addr, or registers the one open returns.
	ListenWithCallback(network, addr string, open func(network, addr string) (net.Listener, error)) (net.Listener, error)
	// Ready tells the parent this process serves, and writes the PID file.
	Ready() error
	// Upgrade starts the new process and returns once it is ready, or
	// with why it failed (the new process is then gone).
	Upgrade() error
	// Stop forbids further upgrades and closes the registered sockets.
	Stop()
}

// Hand-over timing.
const (
	// upgradeStateFile holds the replicated state the old process hands
	// the new one (fsm snapshot format), in the data directory.
	upgradeStateFile = "upgrade-state"
	// PIDFileName is where the serving process of a data directory writes
	// its PID; `rafter agent --upgrade` signals it.
	PIDFileName = "rafter.pid"
	// handOffTimeout bounds the leadership transfer before the old
	// process closes Raft.
	handOffTimeout = 5 * time.Second
	// takeOverTimeout bounds how long the old process keeps probing the
	// leader and renewing linux VIP addresses for the new one, which
	// takes over once its Raft is open and the leader answered it.
	takeOverTimeout = 30 * time.Second
	// connCloseGrace is how long the old process answers with
	// Connection: close before it stops its listeners and closes idle
	// connections: a client on a busy keep-alive connection then moves to
	// the new process after a response, never by finding its connection
	// closed as it sends.
	connCloseGrace = time.Second
	// storeLockWaitUpgrade bounds how long the new process waits for the
	// old one to close raft.db: the old one closes it after handing
	// leadership over, while its data plane drains.
	storeLockWaitUpgrade = time.Minute
)

// PIDFile is where the agent of dataDir records its PID.
func PIDFile(dataDir string) string { return filepath.Join(dataDir, PIDFileName) }

func upgradeStatePath(dataDir string) string { return filepath.Join(dataDir, upgradeStateFile) }

// writeUpgradeState writes c where the new process reads it, atomically:
// a reader sees the whole file or none.
func writeUpgradeState(dataDir string, c *fsm.Config) error {
	var buf bytes.Buffer
	if err := fsm.WriteSnapshot(&buf, c); err != nil {
		return err
	}
	path := upgradeStatePath(dataDir)
	tmp, err := os.CreateTemp(dataDir, upgradeStateFile+".tmp*")
	if err != nil {
		return fmt.Errorf("upgrade state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("upgrade state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("upgrade state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("upgrade state: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("upgrade state: %w", err)
	}
	return nil
}

// readUpgradeState reads what writeUpgradeState wrote; a damaged file is
// refused (fsm.ErrCorruptSnapshot).
func readUpgradeState(dataDir string) (*fsm.Config, error) {
	f, err := os.Open(upgradeStatePath(dataDir))
	if err != nil {
		return nil, fmt.Errorf("upgrade state: %w", err)
	}
	defer f.Close()
	c, err := fsm.ReadSnapshot(f)
	if err != nil {
		return nil, fmt.Errorf("upgrade state %s: %w", f.Name(), err)
	}
	return c, nil
}

// handoffSource is the configuration a new process serves during an
// upgrade: the state the old process handed over until this process's
// own Raft node is attached and has caught up with it, then the node's.
// It never goes back to an older state than the one handed over, which
// a freshly opened node has until it has replayed its log.
type handoffSource struct {
	mu       sync.Mutex
	static   *fsm.Config
	live     fsm.Source
	attached chan struct{}
	switched chan struct{} // closed once Config follows live
}

func newHandoffSource(static *fsm.Config) *handoffSource {
	return &handoffSource{static: static, attached: make(chan struct{}), switched: make(chan struct{})}
}

// attach makes live the source to follow once it reaches the handed-over
// index.
func (s *handoffSource) attach(live fsm.Source) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.live = live
	close(s.attached)
}

// Config is the handed-over state until the live one has reached it.
func (s *handoffSource) Config() *fsm.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.live == nil {
		return s.static
	}
	c := s.live.Config()
	select {
	case <-s.switched:
		return c
	default:
	}
	if c == nil || c.Index < s.static.Index {
		return s.static
	}
	close(s.switched)
	return c
}

// Changed fires when Config may have changed.
func (s *handoffSource) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.live == nil {
		return s.attached
	}
	return s.live.Changed()
}

// caughtUp is closed once Config follows the live source.
func (s *handoffSource) caughtUp() <-chan struct{} { return s.switched }

// RequestUpgrade asks the agent of dataDir to upgrade itself (SIGHUP to
// the PID in its PID file) and waits, within ctx, until a new process
// has taken over: the PID file names another live process. It returns
// the old and new PIDs.
func RequestUpgrade(ctx context.Context, dataDir string) (oldPID, newPID int, err error) {
	path := PIDFile(dataDir)
	oldPID, err = readPID(path)
	if err != nil {
		return 0, 0, fmt.Errorf("--upgrade: %w (is the agent of --data-dir %s running?)", err, dataDir)
	}
	if err := syscall.Kill(oldPID, syscall.SIGHUP); err != nil {
		return oldPID, 0, fmt.Errorf("--upgrade: signalling the agent (pid %d from %s): %w", oldPID, path, err)
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if pid, err := readPID(path); err == nil && pid != oldPID && syscall.Kill(pid, 0) == nil {
			return oldPID, pid, nil
		}
		select {
		case <-ctx.Done():
			return oldPID, 0, fmt.Errorf("--upgrade: no new process took over from pid %d: %w; the agent's log says why, and the old process keeps serving",
				oldPID, ctx.Err())
		case <-tick.C:
		}
	}
}

// removeOwnPIDFile removes the PID file of a stopping agent, unless it
// names another process already, so that `rafter agent --upgrade` never
// signals a PID that has been reused.
func removeOwnPIDFile(dataDir string) {
	if pid, err := readPID(PIDFile(dataDir)); err == nil && pid == os.Getpid() {
		_ = os.Remove(PIDFile(dataDir))
	}
}

func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s: not a PID: %q", path, b)
	}
	return pid, nil
}

// errNoUpgrader: SIGHUP reached an agent that cannot upgrade (run
// in-process, without an Upgrader).
var errNoUpgrader = errors.New("this agent was started without an upgrader")

// startUpgrade hands the node's sockets to a new process started from the
// same path and reports whether it serves them now. On failure the new
// process is gone, this one keeps serving, and a later request may try
// again.
func (a *Agent) startUpgrade(node *cluster.Node) bool {
	log := a.log
	if a.cfg.Upgrader == nil {
		log.Warn("upgrade requested", "err", errNoUpgrader)
		return false
	}
	start := time.Now()
	a.notify(reloading())
	state := node.Config()
	if err := writeUpgradeState(a.cfg.DataDir, state); err != nil {
		log.Error("upgrade: not started: writing the state to hand over", "err", err)
		a.notify(sdnotify.Ready)
		return false
	}
	log.Info("upgrade: starting the new process", "index", state.Index)
	if err := a.cfg.Upgrader.Upgrade(); err != nil {
		_ = os.Remove(upgradeStatePath(a.cfg.DataDir))
		log.Error("upgrade failed; this process keeps serving, and another SIGHUP tries again", "err", err)
		a.notify(sdnotify.Ready)
		return false
	}
	pid, err := readPID(PIDFile(a.cfg.DataDir))
	if err != nil {
		log.Error("upgrade: the new process serves but its PID is unknown; systemd still follows this one", "err", err)
	} else {
		// systemd follows the new process from here (NotifyAccess=main:
		// only this, the main process, may say so).
		a.notify(fmt.Sprintf("MAINPID=%d\n%s", pid, sdnotify.Ready))
	}
	log.Info("upgrade: the new process serves; handing over", "pid", pid, "took", time.Since(start).Round(time.Millisecond))
	a.upgraded = true
	return true
}

// waitTakeOver waits (bounded) until the new process has taken over, which
// it shows by removing the state file.
func (a *Agent) waitTakeOver(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), takeOverTimeout)
	defer cancel()
	path := upgradeStatePath(a.cfg.DataDir)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return
		}
		select {
		case <-ctx.Done():
			a.log.Warn("upgrade: the new process has not taken over yet; this one stops probing and renewing anyway",
				"waited", takeOverTimeout)
			return
		case <-tick.C:
		}
	}
}

// takeOver runs in a process an upgrade started: once its node has caught
// up with the handed-over state, its probes are answered and it holds its
// linux VIPs, it removes the state file, which lets the old process stop.
func (a *Agent) takeOver(ctx context.Context, src *handoffSource, vips *vipRuntime) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, takeOverTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	caughtUp := src.caughtUp()
	for {
		select {
		case <-caughtUp:
			caughtUp = nil
		default:
		}
		if caughtUp == nil && vips.tookOver() {
			break
		}
		select {
		case <-ctx.Done():
			a.log.Warn("upgrade: taking over is taking long; the old process may stop now", "waited", time.Since(start).Round(time.Millisecond))
			_ = os.Remove(upgradeStatePath(a.cfg.DataDir))
			return
		case <-tick.C:
			continue
		}
	}
	if err := os.Remove(upgradeStatePath(a.cfg.DataDir)); err != nil {
		a.log.Error("upgrade: removing the state file (the old process stops after its timeout)", "err", err)
	}
	a.log.Info("upgrade: took over", "took", time.Since(start).Round(time.Millisecond))
}

// reloading is systemd's RELOADING=1 with the CLOCK_MONOTONIC time it
// asks for.
func reloading() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return "RELOADING=1"
	}
	return fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", ts.Nano()/1000)
}
