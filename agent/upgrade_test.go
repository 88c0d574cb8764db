package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rafterlb/rafter/dataplane"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/testutil"
)

const sampleManifest = `
kind: listener
name: web
spec: {port: 8080}
---
kind: pool
name: app
spec:
  backends: [{addr: 127.0.0.1:9000}]
---
kind: route
name: app
spec: {listener: web, action: {split: [{pool: app, weight: 100}]}}
`

func TestUpgradeStateRoundTrip(t *testing.T) {
	src := newFakeSource()
	src.apply(t, manifest(t, sampleManifest))
	want := src.Config()
	dir := t.TempDir()
	if err := writeUpgradeState(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := readUpgradeState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Index != want.Index || !reflect.DeepEqual(got.Listeners, want.Listeners) ||
		!reflect.DeepEqual(got.Routes, want.Routes) || !reflect.DeepEqual(got.Pools, want.Pools) {
		t.Fatalf("read back %+v, wrote %+v", got, want)
	}
	// Only the state file is left: the temporary one was renamed.
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 || entries[0].Name() != upgradeStateFile {
		t.Fatalf("data dir holds %v (%v), want only %s", entries, err, upgradeStateFile)
	}

	// A damaged or missing file is refused, never half read.
	path := upgradeStatePath(dir)
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, b[:len(b)-3], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readUpgradeState(dir); !errors.Is(err, fsm.ErrCorruptSnapshot) {
		t.Fatalf("truncated state: err %v, want ErrCorruptSnapshot", err)
	}
	os.Remove(path)
	if _, err := readUpgradeState(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing state: err %v, want ErrNotExist", err)
	}
}

// A new process's node starts from its own older snapshot and catches up;
// the data plane must not see that older state in between.
func TestHandoffSourceNeverGoesBack(t *testing.T) {
	live := newFakeSource()
	live.apply(t, manifest(t, sampleManifest)) // index 1: what the node restores
	old := live.Config()
	handed := &fsm.Config{}
	*handed = *old
	handed.Index = 3 // the old process had applied two more entries

	s := newHandoffSource(handed)
	if s.Config() != handed {
		t.Fatal("before attach: not the handed-over state")
	}
	changed := s.Changed()
	s.attach(live)
	select {
	case <-changed:
	default:
		t.Fatal("attach did not signal a change")
	}
	if s.Config() != handed {
		t.Fatal("attached to a node behind the handed-over state: it must not be served")
	}
	select {
	case <-s.caughtUp():
		t.Fatal("caught up before the node reached the handed-over index")
	default:
	}
	changed = s.Changed()
	live.apply(t, fsm.DeleteCommand(fsm.KindRoute, "app", nil)) // index 2
	<-changed
	if s.Config() != handed {
		t.Fatal("index 2 < 3 served")
	}
	live.apply(t, fsm.DeleteCommand(fsm.KindPool, "app", nil)) // index 3
	if got := s.Config(); got != live.Config() {
		t.Fatalf("at the handed-over index: serving index %d, want the node's", got.Index)
	}
	select {
	case <-s.caughtUp():
	default:
		t.Fatal("caughtUp not closed")
	}
	live.apply(t, fsm.DeleteCommand(fsm.KindListener, "web", nil))
	if got := s.Config(); got.Index != 4 {
		t.Fatalf("after catching up: index %d, want 4", got.Index)
	}
}

// fakeUpgrader keeps a duplicate of every registered socket, as tableflip
// does, and fails every upgrade.
type fakeUpgrader struct {
	mu        sync.Mutex
	dups      []*os.File
	ready     int
	upgrades  int
	stateSeen []uint64 // the index in the state file at each Upgrade
	dataDir   string
}

func (f *fakeUpgrader) HasParent() bool { return false }

func (f *fakeUpgrader) ListenWithCallback(network, addr string, open func(string, string) (net.Listener, error)) (net.Listener, error) {
	ln, err := open(network, addr)
	if err != nil {
		return nil, err
	}
	dup, err := ln.(*net.TCPListener).File()
	if err != nil {
		ln.Close()
		return nil, err
	}
	f.mu.Lock()
	f.dups = append(f.dups, dup)
	f.mu.Unlock()
	return ln, nil
}

func (f *fakeUpgrader) Ready() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ready++
	return nil
}

func (f *fakeUpgrader) Upgrade() error {
	st, err := readUpgradeState(f.dataDir)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.upgrades++
	if err != nil {
		return fmt.Errorf("no state handed over: %w", err)
	}
	f.stateSeen = append(f.stateSeen, st.Index)
	return errors.New("the new process exited: exit status 1")
}

func (f *fakeUpgrader) Stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range f.dups {
		d.Close()
	}
}

func (f *fakeUpgrader) counts() (ready, upgrades int, seen []uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ready, f.upgrades, append([]uint64(nil), f.stateSeen...)
}

// A retired listener stops listening although the upgrader keeps a copy of
// its socket, and its port can be bound again; after the hand-over,
// closing leaves the socket listening for the new process.
func TestRetiredListenerStopsListeningDespiteCopies(t *testing.T) {
	up := &fakeUpgrader{}
	defer up.Stop()
	s := &sockets{upg: up}
	ln, err := s.listen("listener web", "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("a retired listener's socket still accepts connections on %s", addr)
	}
	again, err := s.listen("listener web", addr, nil)
	if err != nil {
		t.Fatalf("binding a retired listener's port again: %v", err)
	}

	s.share()
	if err := again.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("after the hand-over the socket must stay listening for the new process: %v", err)
	}
	c.Close()
}

// An upgrade whose new process fails leaves this one serving, with the
// state file gone; a later request tries again.
func TestFailedUpgradeKeepsServing(t *testing.T) {
	c := singleNode(t, t.TempDir())
	up := &fakeUpgrader{dataDir: c.DataDir}
	defer up.Stop()
	reqs := make(chan struct{})
	c.Upgrader, c.UpgradeRequests = up, reqs
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, done := startAgent(t, ctx, c)
	testutil.WaitFor(t, 30*time.Second, "the agent to mark itself ready for upgrades", func() bool {
		r, _, _ := up.counts()
		return r == 1
	})
	for attempt := 1; attempt <= 2; attempt++ {
		select {
		case reqs <- struct{}{}:
		case <-time.After(30 * time.Second):
			t.Fatal("the agent does not take upgrade requests")
		}
		testutil.WaitFor(t, 30*time.Second, "the upgrade attempt", func() bool {
			_, n, _ := up.counts()
			return n == attempt
		})
		testutil.Eventually(t, 10*time.Second, "the state file removed after the failure", func() error {
			if _, err := os.Stat(upgradeStatePath(c.DataDir)); !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("state file: %v", err)
			}
			return nil
		})
		// Still serving: Raft, the admin API.
		testutil.Eventually(t, 10*time.Second, "the agent to answer", func() error {
			if !a.Node().IsLeader() {
				return errors.New("not leading")
			}
			conn, err := net.DialTimeout("tcp", a.AdminAddr(), time.Second)
			if err != nil {
				return err
			}
			return conn.Close()
		})
	}
	_, _, seen := up.counts() // one readable state file per attempt
	if len(seen) != 2 {
		t.Fatalf("the new processes found the handed-over state %d times, want 2", len(seen))
	}
	select {
	case err := <-done:
		t.Fatalf("the agent stopped after a failed upgrade: %v", err)
	default:
	}
	// A stopping agent removes its PID file, so that nobody signals a
	// reused PID later.
	if err := os.WriteFile(PIDFile(c.DataDir), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := os.Stat(PIDFile(c.DataDir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("PID file after the stop: %v", err)
	}
}

// `rafter agent --upgrade` signals the PID in the data directory's PID
// file and waits until another live process is named there.
func TestRequestUpgradeSignalsAndWaits(t *testing.T) {
	dir := t.TempDir()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := os.WriteFile(PIDFile(dir), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The "new process": the parent of this test (alive, and not us).
	newPID := os.Getppid()
	go func() {
		select {
		case <-hup:
			_ = os.WriteFile(PIDFile(dir), []byte(strconv.Itoa(newPID)), 0o600)
		case <-time.After(30 * time.Second):
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	oldPID, gotPID, err := RequestUpgrade(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if oldPID != os.Getpid() || gotPID != newPID {
		t.Fatalf("RequestUpgrade = %d, %d; want %d, %d", oldPID, gotPID, os.Getpid(), newPID)
	}

	// Nobody takes over: it gives up when ctx ends, naming the old PID.
	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := os.WriteFile(PIDFile(dir), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := RequestUpgrade(ctx, dir); err == nil {
		t.Fatal("no new process, yet RequestUpgrade succeeded")
	}
	// Without a PID file it says the agent does not run.
	if _, _, err := RequestUpgrade(context.Background(), filepath.Join(dir, "none")); err == nil {
		t.Fatal("no PID file, yet RequestUpgrade succeeded")
	}
}

// fakeChildUpgrader is the upgrader of a process an upgrade started: it
// hands out copies of the old process's sockets, and fails Ready.
type fakeChildUpgrader struct {
	parent map[string]net.Listener
	mu     sync.Mutex
	taken  []string // keys of the parent's sockets handed out
}

func (f *fakeChildUpgrader) HasParent() bool { return true }

func (f *fakeChildUpgrader) ListenWithCallback(network, addr string, open func(string, string) (net.Listener, error)) (net.Listener, error) {
	ln, ok := f.parent[addr]
	if !ok {
		return open(network, addr)
	}
	f.mu.Lock()
	f.taken = append(f.taken, addr)
	f.mu.Unlock()
	file, err := ln.(*net.TCPListener).File()
	if err != nil {
		return nil, err
	}
	defer file.Close()
	return net.FileListener(file)
}

func (f *fakeChildUpgrader) Ready() error   { return errors.New("the old process is gone") }
func (f *fakeChildUpgrader) Upgrade() error { return errors.New("not ready") }
func (f *fakeChildUpgrader) Stop()          {}

// A new process that fails before it serves leaves the old process's
// sockets listening: the old process keeps serving on them.
func TestFailingNewProcessLeavesSocketsListening(t *testing.T) {
	c := singleNode(t, t.TempDir())
	parent := map[string]net.Listener{}
	listen := func(key string) net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		parent[key] = ln
		return ln
	}
	listen("admin " + c.AdminAddr())
	listen("raft " + c.RaftAddr())
	web := listen("") // keyed below, once its port is known
	delete(parent, "")
	port := web.Addr().(*net.TCPAddr).Port
	parent["listener web 127.0.0.1:"+strconv.Itoa(port)] = web

	src := newFakeSource()
	src.apply(t, manifest(t, fmt.Sprintf(`
kind: listener
name: web
spec: {port: %d}
---
kind: route
name: ok
spec: {listener: web, action: {respond: {status: 200, body: ok}}}
`, port)))
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := writeUpgradeState(c.DataDir, src.Config()); err != nil {
		t.Fatal(err)
	}
	c.Upgrader = &fakeChildUpgrader{parent: parent}
	a, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Run(context.Background()); err == nil {
		t.Fatal("Run succeeded although Ready failed")
	}
	for key, ln := range parent {
		conn, err := net.DialTimeout("tcp", ln.Addr().String(), 2*time.Second)
		if err != nil {
			t.Fatalf("%s: the old process's socket stopped listening: %v", key, err)
		}
		conn.Close()
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
		got, err := ln.Accept()
		if err != nil {
			t.Fatalf("%s: the old process cannot accept any more: %v", key, err)
		}
		got.Close()
	}
}

// A new process takes over every socket of a listener served by several
// (SO_REUSEPORT), each under its own key, rather than opening any anew.
func TestUpgradeTakesOverEveryListenerSocket(t *testing.T) {
	c := singleNode(t, t.TempDir())
	c.ListenSockets = 3
	parent := map[string]net.Listener{}
	keep := func(key string, ln net.Listener) {
		t.Cleanup(func() { ln.Close() })
		parent[key] = ln
	}
	for _, key := range []string{"admin " + c.AdminAddr(), "raft " + c.RaftAddr()} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		keep(key, ln)
	}
	first, err := dataplane.ListenShared("web", 0, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := first.Addr().(*net.TCPAddr).Port
	addr := "127.0.0.1:" + strconv.Itoa(port)
	keep("listener web "+addr, first)
	want := []string{"listener web " + addr}
	for shard := 1; shard < c.ListenSockets; shard++ {
		ln, err := dataplane.ListenShared("web", shard, addr)
		if err != nil {
			t.Fatal(err)
		}
		key := shardKey("listener web", shard) + " " + addr
		keep(key, ln)
		want = append(want, key)
	}

	src := newFakeSource()
	src.apply(t, manifest(t, fmt.Sprintf(`
kind: listener
name: web
spec: {port: %d}
---
kind: route
name: ok
spec: {listener: web, action: {respond: {status: 200, body: ok}}}
`, port)))
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := writeUpgradeState(c.DataDir, src.Config()); err != nil {
		t.Fatal(err)
	}
	up := &fakeChildUpgrader{parent: parent}
	c.Upgrader = up
	a, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Run(context.Background()); err == nil {
		t.Fatal("Run succeeded although Ready failed")
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	for _, key := range want {
		if !slices.Contains(up.taken, key) {
			t.Errorf("socket %q not taken over; taken: %q", key, up.taken)
		}
	}
}

// A data-plane socket registered with the upgrader can have its Accept
// interrupted and resumed: that is how a changed listener's new server
// takes the socket over from the old one.
func TestListenerSocketAcceptCanBeInterrupted(t *testing.T) {
	up := &fakeUpgrader{}
	defer up.Stop()
	s := &sockets{upg: up}
	ln, err := s.listen("listener web", "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dl, ok := ln.(interface{ SetDeadline(time.Time) error })
	if !ok {
		t.Fatalf("%T has no SetDeadline", ln)
	}
	if err := dl.SetDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	var ne net.Error
	if _, err := ln.Accept(); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Accept past its deadline: %v, want a timeout", err)
	}
	if err := dl.SetDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, err := ln.Accept()
	if err != nil {
		t.Fatalf("Accept once the deadline is cleared: %v", err)
	}
	a.Close()
}
