//go:build linux

package linux

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/testutil"
)

// keeperStore is a settable local replicated state.
type keeperStore struct {
	mu  sync.Mutex
	cfg *fsm.Config
	ch  chan struct{}
}

func (s *keeperStore) Config() *fsm.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

func (s *keeperStore) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

func (s *keeperStore) assign(holder string, token uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg := *s.cfg
	cfg.Assignments = map[string]*fsm.Assignment{"web": {VIP: "web", Holder: holder, Token: token}}
	s.cfg = &cfg
	close(s.ch)
	s.ch = make(chan struct{})
}

// keeperRig is a test's namespaces with a Holder in them, and a local
// state holding one linux VIP, "web" at addr, assigned to nobody yet.
func keeperRig(t *testing.T, addr string) (*rig, *Holder, netip.Prefix, *keeperStore) {
	r := newRig(t)
	h := r.holder(t, Options{})
	p := netip.MustParsePrefix(addr)
	cfg := fsm.Empty()
	v := testVIP("web", p.String())
	cfg.VIPs["web"] = &v
	return r, h, p, &keeperStore{cfg: cfg, ch: make(chan struct{})}
}

// runKeeper runs k until the test ends.
func runKeeper(t *testing.T, k *Keeper) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); k.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestKeeper(t *testing.T) {
	r, h, p, store := keeperRig(t, "10.77.0.100/24")
	var contact atomic.Pointer[time.Time]
	fresh := func() { now := time.Now(); contact.Store(&now) }
	fresh()
	k, err := NewKeeper(KeeperConfig{
		NodeID: "n1", Store: store, Holder: h, Every: 10 * time.Millisecond,
		QuorumContact: func() time.Time { return *contact.Load() },
	})
	if err != nil {
		t.Fatal(err)
	}
	runKeeper(t, k)
	// Keep the lease fresh, as answered probes would.
	stopContact := make(chan struct{})
	var contactWG sync.WaitGroup
	contactWG.Go(func() {
		for {
			select {
			case <-stopContact:
				return
			case <-time.After(50 * time.Millisecond):
				fresh()
			}
		}
	})
	has := func() bool { _, ok := r.addrOf(t, p); return ok }
	never := func(what string) {
		t.Helper()
		for range 20 {
			if has() {
				t.Fatalf("address added %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	store.assign("n1", 5)
	never("without a grant")
	k.SetGrants(0, map[string]uint64{"web": 4})
	never("with a grant for an older token")
	k.SetGrants(0, map[string]uint64{"web": 5})
	eventually(t, 5*time.Second, "claim once holder, grant and lease agree", has)
	if got := k.Holding(); got["web"] != 5 {
		t.Fatalf("Holding = %v", got)
	}

	store.assign("n2", 6)
	eventually(t, 5*time.Second, "release when reassigned", func() bool { return !has() })
	store.assign("n1", 7)
	// Grants answering a probe sent before that release claim nothing:
	// a later probe may have told the leader this node holds nothing.
	stale := time.Now().Add(-time.Hour)
	contact.Store(&stale)
	k.SetGrants(0, map[string]uint64{"web": 7})
	fresh()
	never("on grants answering a probe sent before the release")
	k.SetGrants(0, map[string]uint64{"web": 7})
	eventually(t, 5*time.Second, "claim again", has)

	// Writing a probe first acts on the grant its predecessor's answer
	// brought, so the probe reports the claim.
	store.assign("n2", 8)
	eventually(t, 5*time.Second, "release when reassigned again", func() bool { return !has() })
	store.assign("n1", 9)
	if got := k.Report(1); len(got) != 0 {
		t.Fatalf("probe 1 reports %v", got)
	}
	fresh() // the probe was sent after the release, and answered
	k.SetGrants(1, map[string]uint64{"web": 9})
	if got := k.Report(2); got["web"] != 9 {
		t.Fatalf("probe 2 reports %v, want the claim on probe 1's grant", got)
	}
	// A grant answering a probe older than the newest written is void:
	// that newer probe may have said this node holds nothing, and the
	// leader may give the VIP away on its word.
	store.assign("n2", 10)
	eventually(t, 5*time.Second, "release when reassigned a third time", func() bool { return !has() })
	store.assign("n1", 11)
	k.Report(3)
	k.Report(4)
	fresh() // the probe was sent after the release, and answered
	k.SetGrants(3, map[string]uint64{"web": 11})
	never("on the answer to probe 3 after probe 4 was written")
	if got := k.Report(5); len(got) != 0 {
		t.Fatalf("probe 5 reports %v after a void grant", got)
	}
	fresh() // the probe was sent after the release, and answered
	k.SetGrants(5, map[string]uint64{"web": 11})
	eventually(t, 5*time.Second, "claim on the answer to the newest probe", has)

	// The lease lapses: the address goes although nothing else changed.
	close(stopContact)
	contactWG.Wait()
	eventually(t, 5*time.Second, "release when the lease lapses", func() bool { return !has() })
	never("while the lease is stale")
	fresh()
	k.SetGrants(5, map[string]uint64{"web": 11})
	eventually(t, 5*time.Second, "claim once the lease holds again", has)

	if err := k.ReleaseAll(); err != nil {
		t.Fatalf("ReleaseAll: %v", err)
	}
	if has() {
		t.Fatal("address still there after ReleaseAll")
	}
	fresh()
	never("after ReleaseAll (stopping)")
}

// A VIP assigned to this node that stays unclaimed is said at WARN with
// the reason, once per token, and its claim afterwards at INFO.
func TestKeeperSaysWhyAnAssignedVIPStaysUnclaimed(t *testing.T) {
	r, h, p, store := keeperRig(t, "10.77.0.101/24")
	var contact atomic.Pointer[time.Time]
	var live atomic.Bool // answered probes keep the lease fresh
	live.Store(true)
	fresh := func() { now := time.Now(); contact.Store(&now) }
	fresh()
	var logs testutil.SyncBuffer
	k, err := NewKeeper(KeeperConfig{
		NodeID: "n1", Store: store, Holder: h, Every: 10 * time.Millisecond, WarnAfter: 200 * time.Millisecond,
		QuorumContact: func() time.Time {
			if live.Load() {
				fresh()
			}
			return *contact.Load()
		},
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	runKeeper(t, k)
	has := func() bool { _, ok := r.addrOf(t, p); return ok }
	const warning = `"msg":"linux vip assigned to this node is still not claimed"`
	warnedOf := func(token, reason string) func() bool {
		return func() bool {
			for line := range strings.Lines(logs.String()) {
				if strings.Contains(line, warning) && strings.Contains(line, `"token":`+token+`,`) && strings.Contains(line, reason) {
					return true
				}
			}
			return false
		}
	}

	store.assign("n1", 5)
	eventually(t, 5*time.Second, "a warning naming the missing grant", warnedOf("5", `"reason":"not granted by the leader yet`))
	time.Sleep(100 * time.Millisecond) // still waiting: no second warning
	k.SetGrants(0, map[string]uint64{"web": 5})
	eventually(t, 5*time.Second, "the claim", has)
	eventually(t, 5*time.Second, "the claim said", func() bool {
		return strings.Contains(logs.String(), `"msg":"linux vip no longer waiting to be claimed","vip":"web","token":5,`)
	})
	if s := logs.String(); strings.Count(s, warning) != 1 || !strings.Contains(s, `"claimed":true`) {
		t.Fatalf("want one warning and the claim said:\n%s", s)
	}

	// Without quorum contact the reason is the lease.
	live.Store(false)
	store.assign("n2", 6)
	eventually(t, 5*time.Second, "the release", func() bool { return !has() })
	store.assign("n1", 7)
	eventually(t, 5*time.Second, "a warning naming the lease", warnedOf("7", `"reason":"no quorum contact within the lease period`))

	// Grants answering a probe sent before the last release are no grant.
	stale := time.Now().Add(-time.Hour)
	contact.Store(&stale)
	k.SetGrants(0, map[string]uint64{"web": 8}) // answers a probe sent an hour ago
	live.Store(true)
	store.assign("n1", 8)
	eventually(t, 5*time.Second, "a warning naming the release", warnedOf("8", `"reason":"the leader's last answer predates this node's last release`))
	if has() {
		t.Fatal("claimed on a grant older than the release")
	}
	// Unassigned before it was claimed: no longer waiting, not claimed.
	store.assign("n2", 9)
	eventually(t, 5*time.Second, "the wait's end said", func() bool {
		return strings.Contains(logs.String(), `"msg":"linux vip no longer waiting to be claimed","vip":"web","token":8,`)
	})
	if s := logs.String(); !strings.Contains(s, `"token":8,"waited"`) || !strings.Contains(s, `"claimed":false`) {
		t.Fatalf("the end of the wait for token 8 does not say it was not claimed:\n%s", s)
	}

	// Assigned here at token 9 while the leader grants 10: the states differ.
	store.assign("n1", 9)
	k.SetGrants(0, map[string]uint64{"web": 10})
	eventually(t, 5*time.Second, "a warning naming the other token", warnedOf("9",
		`"reason":"the leader granted token 10, not 9 (the two replicated states differ)"`))
	store.assign("n2", 9)

	// A grant of a token this node has not applied yet: its state lags.
	k.SetGrants(0, map[string]uint64{"web": 12})
	eventually(t, 5*time.Second, "a warning naming the lagging state", warnedOf("12",
		`"reason":"the leader granted token 12, which this node's replicated state has not applied yet (it has token 9 for node n2`))
	store.assign("n1", 12)
	eventually(t, 5*time.Second, "the claim once applied", has)
	eventually(t, 5*time.Second, "the claim said", func() bool {
		return strings.Contains(logs.String(), `"msg":"linux vip no longer waiting to be claimed","vip":"web","token":12,`)
	})
}
