package discovery_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/cluster/awsec2"
	"github.com/rafterlb/rafter/cluster/discovery"
	"github.com/rafterlb/rafter/cluster/leading"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/fakeec2"
	"github.com/rafterlb/rafter/internal/testutil"
)

var errNotLeader = errors.New("not the leader")

// memWriter is the cluster node reduced to the fsm: Apply runs fsm.Next,
// so validation and compare-and-set behave as in Raft.
type memWriter struct {
	mu       sync.Mutex
	cfg      *fsm.Config
	leader   bool
	writes   int // applied discovery writes
	verifies int
}

func newMemWriter() *memWriter { return &memWriter{cfg: fsm.Empty(), leader: true} }

func (w *memWriter) Config() *fsm.Config {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cfg
}

func (w *memWriter) VerifyLeader(context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.verifies++
	if !w.leader {
		return errNotLeader
	}
	return nil
}

func (w *memWriter) Apply(_ context.Context, cmd *fsm.Command) (uint64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.leader {
		return 0, errNotLeader
	}
	w.writes++
	return w.applyLocked(cmd)
}

func (w *memWriter) applyLocked(cmd *fsm.Command) (uint64, error) {
	next, err := fsm.Next(w.cfg, w.cfg.Index+1, cmd)
	if err != nil {
		return 0, err
	}
	w.cfg = next
	return next.Index, nil
}

func (w *memWriter) setLeader(v bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.leader = v
}

func (w *memWriter) counts() (writes, verifies int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writes, w.verifies
}

// put is an operator's write (not counted as a discovery write).
func (w *memWriter) put(t *testing.T, name string, spec fsm.PoolSpec) {
	t.Helper()
	raw, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.applyLocked(fsm.PutCommand(fsm.Object{Kind: fsm.KindPool, Name: name, Spec: raw}, nil)); err != nil {
		t.Fatalf("put pool %s: %v", name, err)
	}
}

// apply is an operator's (or a lease holder's) command.
func (w *memWriter) apply(t *testing.T, cmd *fsm.Command) uint64 {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	idx, err := w.applyLocked(cmd)
	if err != nil {
		t.Fatalf("apply %s: %v", cmd.Type, err)
	}
	return idx
}

func (w *memWriter) pool(t *testing.T, name string) *fsm.Pool {
	t.Helper()
	p, ok := w.Config().Pools[name]
	if !ok {
		t.Fatalf("pool %s missing", name)
	}
	return p
}

// clock is a manual clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// ec2Lister adapts the awsec2 client exactly as the agent wiring does.
type ec2Lister struct{ c *awsec2.Client }

func (l ec2Lister) ListInstances(ctx context.Context, tags map[string]string) ([]discovery.Instance, error) {
	ins, err := l.c.ListInstances(ctx, tags)
	if err != nil {
		return nil, err
	}
	out := make([]discovery.Instance, 0, len(ins))
	for _, in := range ins {
		out = append(out, discovery.Instance{ID: in.ID, PrivateIP: in.PrivateIP, Zone: in.Zone, Tags: in.Tags})
	}
	return out, nil
}

const refresh = 10 * time.Second

type rig struct {
	fake  *fakeec2.Server
	w     *memWriter
	clk   *clock
	d     *discovery.Discoverer
	reg   *prometheus.Registry
	ctx   context.Context
	lists atomic.Int64
}

// newRig: a fake EC2 reached through the real SDK, pool "app" discovered
// by tag svc=web on port 8080 with one static backend, pool "plain"
// without discovery.
func newRig(t *testing.T, wrap func(discovery.Lister) discovery.Lister) *rig {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	for _, k := range []string{"AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"} {
		t.Setenv(k, "")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	r := &rig{fake: fakeec2.New(t), w: newMemWriter(), clk: &clock{now: time.Unix(1_700_000_000, 0)}, reg: prometheus.NewRegistry(), ctx: ctx}
	c, err := awsec2.New(ctx, awsec2.Options{
		Region: "us-east-1", Endpoint: r.fake.URL(),
		Credentials: &awsec2.StaticCredentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret"},
		MaxAttempts: 2, BaseDelay: time.Millisecond, ThrottleDelay: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
		PageSize: 5,
	})
	if err != nil {
		t.Fatal(err)
	}
	var l discovery.Lister = discovery.ListerFunc(func(ctx context.Context, tags map[string]string) ([]discovery.Instance, error) {
		r.lists.Add(1)
		return ec2Lister{c}.ListInstances(ctx, tags)
	})
	if wrap != nil {
		l = wrap(l)
	}
	r.w.put(t, "app", fsm.PoolSpec{
		Backends:  []fsm.Backend{{Addr: "192.0.2.1:80", Weight: 3, Zone: "us-east-1a"}},
		Discovery: &fsm.Discovery{EC2: &fsm.EC2Discovery{Tags: map[string]string{"svc": "web"}, Port: 8080, Refresh: fsm.Duration(refresh)}},
	})
	r.w.put(t, "plain", fsm.PoolSpec{Backends: []fsm.Backend{{Addr: "192.0.2.2:80"}}})
	r.d, err = discovery.New(discovery.Config{Lister: l, Writer: r.w, Registerer: r.reg, Now: r.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func web(id, ip, zone string) fakeec2.Instance {
	return fakeec2.Instance{ID: id, PrivateIP: ip, Zone: zone, Tags: map[string]string{"svc": "web"}}
}

// addrs lists a pool's backends as "addr/zone/weight".
func (r *rig) addrs(t *testing.T, pool string) []string {
	t.Helper()
	var out []string
	for _, b := range r.w.pool(t, pool).Spec.Backends {
		out = append(out, fmt.Sprintf("%s/%s/%d", b.Addr, b.Zone, b.Weight))
	}
	return out
}

func (r *rig) expect(t *testing.T, step string, want ...string) {
	t.Helper()
	if got := r.addrs(t, "app"); !slices.Equal(got, want) {
		t.Fatalf("%s: app backends = %v, want %v", step, got, want)
	}
}

// round advances the clock by d and runs one round.
func (r *rig) round(d time.Duration) {
	r.clk.Advance(d)
	r.d.Round(r.ctx)
}

const static = "192.0.2.1:80/us-east-1a/3"

func TestAddRemoveRetag(t *testing.T) {
	r := newRig(t, nil)
	r.fake.AddInstance(web("i-1", "10.0.1.1", "us-east-1a"))
	r.fake.AddInstance(web("i-2", "10.0.2.1", "us-east-1b"))
	r.fake.AddInstance(fakeec2.Instance{ID: "i-db", PrivateIP: "10.0.3.1", Zone: "us-east-1c", Tags: map[string]string{"svc": "db"}})
	plainIndex := r.w.pool(t, "plain").ModifyIndex

	r.round(0)
	r.expect(t, "first round", static, "10.0.1.1:8080/us-east-1a/1", "10.0.2.1:8080/us-east-1b/1")
	writes, _ := r.w.counts()
	if writes != 1 {
		t.Fatalf("writes = %d, want 1", writes)
	}

	// Not due yet: no listing. Due but unchanged: listing, no write.
	lists := r.lists.Load()
	r.round(refresh / 2)
	if r.lists.Load() != lists {
		t.Fatal("listed before the refresh interval")
	}
	r.round(refresh / 2)
	if r.lists.Load() != lists+1 {
		t.Fatal("not listed at the refresh interval")
	}
	if w, _ := r.w.counts(); w != 1 {
		t.Fatalf("wrote %d times without a change", w)
	}

	r.fake.AddInstance(web("i-3", "10.0.3.9", "us-east-1c"))
	r.round(refresh)
	r.expect(t, "instance added", static, "10.0.1.1:8080/us-east-1a/1", "10.0.2.1:8080/us-east-1b/1", "10.0.3.9:8080/us-east-1c/1")

	// Retagged away: absent from now on, removed after 2 × refresh.
	r.fake.SetTags("i-1", map[string]string{"svc": "other"})
	r.round(refresh)
	r.round(refresh)
	r.expect(t, "inside the grace period", static, "10.0.1.1:8080/us-east-1a/1", "10.0.2.1:8080/us-east-1b/1", "10.0.3.9:8080/us-east-1c/1")
	r.round(refresh)
	r.expect(t, "after the grace period", static, "10.0.2.1:8080/us-east-1b/1", "10.0.3.9:8080/us-east-1c/1")

	// Retagged in, and a stopped instance goes like a vanished one.
	r.fake.SetTags("i-db", map[string]string{"svc": "web"})
	r.fake.SetState("i-2", fakeec2.StateStopped)
	r.round(refresh)
	r.expect(t, "retagged in", static, "10.0.2.1:8080/us-east-1b/1", "10.0.3.9:8080/us-east-1c/1", "10.0.3.1:8080/us-east-1c/1")
	r.round(2 * refresh)
	r.expect(t, "stopped removed", static, "10.0.3.9:8080/us-east-1c/1", "10.0.3.1:8080/us-east-1c/1")

	if got := r.w.pool(t, "plain").ModifyIndex; got != plainIndex {
		t.Fatalf("pool without discovery changed: modify_index %d -> %d", plainIndex, got)
	}
	if got := r.metric(t, "rafter_discovery_backends_added_total"); got != 4 {
		t.Fatalf("added metric = %v, want 4", got)
	}
	if got := r.metric(t, "rafter_discovery_backends_removed_total"); got != 2 {
		t.Fatalf("removed metric = %v, want 2", got)
	}
}

// metric sums every series of a counter family.
func (r *rig) metric(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var sum float64
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	return 0
}

func TestFailedListingRemovesNothing(t *testing.T) {
	tests := []struct {
		name   string
		inject func(*fakeec2.Server)
	}{
		{"throttled beyond retries", func(f *fakeec2.Server) { f.Throttle(fakeec2.ActionDescribeInstances, -1) }},
		{"internal errors", func(f *fakeec2.Server) { f.FailInternal(fakeec2.ActionDescribeInstances, -1) }},
		{"second page fails", func(f *fakeec2.Server) { f.FailPage(2, -1) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, nil)
			// Twelve instances: pages of five; ten still need two pages.
			all := []string{static}
			var gone []string
			for i := range 12 {
				ip := fmt.Sprintf("10.0.0.%d", i+10)
				r.fake.AddInstance(web(fmt.Sprintf("i-%02d", i), ip, "us-east-1a"))
				all = append(all, ip+":8080/us-east-1a/1")
				if i == 0 || i == 11 {
					gone = append(gone, ip+":8080/us-east-1a/1")
				}
			}
			r.round(0)
			r.expect(t, "initial", all...)

			// i-00 is on the first page, i-11 on the third.
			r.fake.RemoveInstance("i-00")
			r.fake.RemoveInstance("i-11")
			tc.inject(r.fake)
			for range 6 {
				r.round(10 * time.Minute) // past any backoff
			}
			r.expect(t, "while listings fail", all...)
			if got := r.metric(t, "rafter_discovery_errors_total"); got != 6 {
				t.Fatalf("errors metric = %v, want 6", got)
			}

			// Once listings succeed, absence starts counting only then.
			r.fake.ClearFaults()
			r.round(10 * time.Minute)
			r.expect(t, "first good listing", all...)
			r.round(refresh)
			r.round(refresh)
			r.expect(t, "after the grace period", slices.DeleteFunc(slices.Clone(all), func(s string) bool { return slices.Contains(gone, s) })...)
		})
	}
}

func TestVanishedReturnsWithinGrace(t *testing.T) {
	r := newRig(t, nil)
	r.fake.AddInstance(web("i-1", "10.0.1.1", "us-east-1a"))
	r.round(0)
	r.fake.RemoveInstance("i-1")
	r.round(refresh)
	r.round(refresh / 2) // not due
	r.fake.AddInstance(web("i-1", "10.0.1.1", "us-east-1a"))
	r.round(refresh / 2)
	r.fake.RemoveInstance("i-1")
	r.round(refresh)
	r.round(refresh)
	// Absent again only since the last-but-one round: the timer restarted.
	r.expect(t, "absence restarted", static, "10.0.1.1:8080/us-east-1a/1")
	r.round(refresh)
	r.expect(t, "removed", static)
}

func TestFollowerNeverWrites(t *testing.T) {
	r := newRig(t, nil)
	r.fake.AddInstance(web("i-1", "10.0.1.1", "us-east-1a"))
	r.w.setLeader(false)
	r.round(0)
	r.round(refresh)
	writes, verifies := r.w.counts()
	if writes != 0 || verifies == 0 {
		t.Fatalf("follower: writes %d, leader checks %d; want 0 writes after a failed check", writes, verifies)
	}
	r.expect(t, "follower", static)
}

func TestLeaseAndStaticBackendsKept(t *testing.T) {
	r := newRig(t, nil)
	lease := r.w.apply(t, fsm.LeaseGrantCommand(30*time.Second, r.clk.Now()))
	r.w.apply(t, fsm.BackendRegisterCommand("app", fsm.Backend{Addr: "10.0.7.7:8080", Weight: 1, Zone: "us-east-1b", Lease: lease}))
	r.fake.AddInstance(web("i-1", "10.0.1.1", "us-east-1a"))
	r.round(0)
	r.fake.RemoveInstance("i-1")
	for range 4 {
		r.round(refresh)
	}
	r.expect(t, "lease and static kept", static, "10.0.7.7:8080/us-east-1b/1")
}

func TestConcurrentEditWins(t *testing.T) {
	var r *rig
	var once sync.Once
	edited := make(chan struct{})
	r = newRig(t, func(l discovery.Lister) discovery.Lister {
		return discovery.ListerFunc(func(ctx context.Context, tags map[string]string) ([]discovery.Instance, error) {
			out, err := l.ListInstances(ctx, tags)
			// An operator changes the pool between discovery's read and write.
			once.Do(func() {
				spec := r.w.pool(t, "app").Spec
				spec.Balancer = fsm.BalancerLeastRequest
				r.w.put(t, "app", spec)
				close(edited)
			})
			return out, err
		})
	})
	r.fake.AddInstance(web("i-1", "10.0.1.1", "us-east-1a"))
	r.round(0)
	<-edited
	r.expect(t, "after conflict", static)
	if got := r.metric(t, "rafter_discovery_errors_total"); got != 1 {
		t.Fatalf("conflicts = %v, want 1", got)
	}
	r.round(0) // retried at the next round, without waiting a refresh
	r.expect(t, "retried", static, "10.0.1.1:8080/us-east-1a/1")
	if b := r.w.pool(t, "app").Spec.Balancer; b != fsm.BalancerLeastRequest {
		t.Fatalf("operator's edit lost: balancer %q", b)
	}
}

func TestRunFollowsLeadership(t *testing.T) {
	r := newRig(t, nil)
	r.fake.AddInstance(web("i-1", "10.0.1.1", "us-east-1a"))
	d, err := discovery.New(discovery.Config{
		Lister: ec2ListerFor(t, r), Writer: r.w, Now: r.clk.Now,
		Tick: 5 * time.Millisecond, MinRefresh: time.Millisecond, DefaultRefresh: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(r.ctx)
	leadership := make(chan leading.Leadership) // unbuffered: a send returns once Run took it
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, leadership) }()
	var once sync.Once
	var runErr error
	stop := func() {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
	}
	t.Cleanup(stop)

	leadership <- leading.Leadership{}
	leadership <- leading.Leadership{}
	if n := r.fake.Calls(fakeec2.ActionDescribeInstances); n != 0 {
		t.Fatalf("listed %d times while not leading", n)
	}
	leadership <- leading.Leadership{Leader: true, Term: 2}
	waitFor(t, "discovered backend", func() bool { return len(r.addrs(t, "app")) == 2 })
	leadership <- leading.Leadership{}
	leadership <- leading.Leadership{} // the previous value has been handled: rounds have stopped
	n := r.fake.Calls(fakeec2.ActionDescribeInstances)
	r.fake.AddInstance(web("i-2", "10.0.2.1", "us-east-1b"))
	r.clk.Advance(time.Hour)
	// Give a stray round many ticks to show itself.
	deadline := time.Now().Add(100 * time.Millisecond)
	for time.Now().Before(deadline) {
		if r.fake.Calls(fakeec2.ActionDescribeInstances) != n {
			t.Fatal("listed after losing leadership")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(leadership)
	stop()
	if runErr != nil {
		t.Fatalf("Run = %v", runErr)
	}
}

func ec2ListerFor(t *testing.T, r *rig) discovery.Lister {
	t.Helper()
	c, err := awsec2.New(r.ctx, awsec2.Options{
		Region: "us-east-1", Endpoint: r.fake.URL(),
		Credentials: &awsec2.StaticCredentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret"},
		MaxAttempts: 2, BaseDelay: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return ec2Lister{c}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, 20*time.Second, what, cond)
}

func TestConfigValidate(t *testing.T) {
	w := newMemWriter()
	l := discovery.ListerFunc(func(context.Context, map[string]string) ([]discovery.Instance, error) { return nil, nil })
	tests := []struct {
		name  string
		cfg   discovery.Config
		field string
	}{
		{"ok", discovery.Config{Lister: l, Writer: w}, ""},
		{"no lister", discovery.Config{Writer: w}, "discovery.lister"},
		{"no writer", discovery.Config{Lister: l}, "discovery.writer"},
		{"refresh below min", discovery.Config{Lister: l, Writer: w, DefaultRefresh: time.Second, MinRefresh: 5 * time.Second}, "discovery.default_refresh"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := discovery.New(tc.cfg)
			switch {
			case tc.field == "" && err != nil:
				t.Fatal(err)
			case tc.field != "" && (err == nil || !strings.Contains(err.Error(), tc.field)):
				t.Fatalf("New = %v, want an error naming %s", err, tc.field)
			}
		})
	}
}

// TestFreshLeaderRemovesDiscoveredBackend: ownership lives in the pool
// (source ec2), so a discoverer that never added a backend, as after a
// leader change, still removes it once its instance stays absent.
func TestFreshLeaderRemovesDiscoveredBackend(t *testing.T) {
	r := newRig(t, nil)
	r.fake.AddInstance(web("i-1", "10.0.1.1", "us-east-1a"))
	r.round(0)
	r.expect(t, "added", static, "10.0.1.1:8080/us-east-1a/1")
	for _, b := range r.w.pool(t, "app").Spec.Backends {
		want := ""
		if b.Addr == "10.0.1.1:8080" {
			want = fsm.BackendSourceEC2
		}
		if b.Source != want {
			t.Fatalf("backend %s source = %q, want %q", b.Addr, b.Source, want)
		}
	}

	// The old leader saw the instance go, then lost leadership.
	r.fake.RemoveInstance("i-1")
	r.round(refresh)
	r.expect(t, "absent, inside grace", static, "10.0.1.1:8080/us-east-1a/1")

	fresh, err := discovery.New(discovery.Config{Lister: ec2ListerFor(t, r), Writer: r.w, Now: r.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	step := func(d time.Duration) {
		r.clk.Advance(d)
		fresh.Round(r.ctx)
	}
	step(refresh)
	r.expect(t, "fresh leader, inside grace", static, "10.0.1.1:8080/us-east-1a/1")
	step(refresh)
	step(refresh)
	r.expect(t, "fresh leader, after grace", static)
}
