//go:build linux

package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafterlb/rafter/internal/testutil"
)

// The failover tests run a client in its own namespace that sends requests
// to a linux VIP while every node's addresses are sampled every 50ms. Never
// may two namespaces hold the VIP in one sample. Each test logs the gap the
// client saw (first failed request to the first successful one after it)
// and the requests lost; RAFTER_VIP_RUNS=N repeats the scenarios N times
// and logs the median and worst ("vip failover report:" lines).

const (
	vipPort     = 8080
	sampleEvery = 50 * time.Millisecond
	holdDown    = 3 * time.Second
)

func vipIP(i int) string { return fmt.Sprintf("10.99.0.%d", 200+i) }

func vipRuns(t *testing.T) int {
	s := os.Getenv("RAFTER_VIP_RUNS")
	if s == "" {
		return 1
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 100 {
		t.Fatalf("RAFTER_VIP_RUNS=%q: want 1..100", s)
	}
	return n
}

// newVIPCluster starts three agents that may hold linux VIPs, with a
// listener on vipPort answering "ok", and one VIP per entry of homes
// (vip0 homed on homes[0], at vipIP(0)...).
func newVIPCluster(t *testing.T, homes ...string) *Rig {
	t.Helper()
	o := DefaultOptions()
	o.Bin = bin
	o.ExtraArgs = []string{"--vip-linux", "--vip-hold-down", holdDown.String()}
	r := New(t, o)
	r.StartAgents()
	r.Leader(60 * time.Second)
	putSpec(t, r, "listeners", "web", fmt.Sprintf(`{"port": %d}`, vipPort))
	putSpec(t, r, "routes", "ok", `{"listener": "web", "action": {"respond": {"status": 200, "body": "ok"}}}`)
	for i, home := range homes {
		putSpec(t, r, "vips", fmt.Sprintf("vip%d", i), fmt.Sprintf(
			`{"provider": "linux", "address": "%s/24", "home_node": %q, "candidates": ["n1", "n2", "n3"]}`, vipIP(i), home))
	}
	for i, home := range homes {
		waitHolder(t, r, vipIP(i), home, 30*time.Second)
	}
	return r
}

// putSpec writes one resource through whichever node takes it.
func putSpec(t *testing.T, r *Rig, kind, name, spec string) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, "PUT "+kind+"/"+name, func() error {
		var errs []error
		for _, n := range r.Nodes {
			if !n.Running() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			resp, err := r.API(ctx, n, http.MethodPut, "/v1/"+kind+"/"+name, []byte(spec))
			cancel()
			if err == nil && resp.Status == http.StatusOK {
				return nil
			}
			if err == nil {
				err = fmt.Errorf("%s: %d %s", n.Name, resp.Status, resp.Body)
			}
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
}

// holdersNow samples once which namespaces hold addr.
func holdersNow(r *Rig, addr string) []string {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := r.SampleAddresses(ctx, time.Hour, addr)
	return s[0].Holders
}

func waitHolder(t *testing.T, r *Rig, addr, node string, within time.Duration) {
	t.Helper()
	testutil.Eventually(t, within, addr+" on "+node+" alone", func() error {
		if h := holdersNow(r, addr); !slices.Equal(h, []string{node}) {
			return fmt.Errorf("holders %v", h)
		}
		return nil
	})
}

// watch samples addr and sends the client's requests to it until stop.
type watch struct {
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	served   atomic.Int64 // successful requests so far, while it runs
	samples  []Sample
	attempts []attempt
}

type attempt struct {
	at time.Time
	ok bool
}

func startWatch(r *Rig, addr string) *watch {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	w := &watch{cancel: cancel}
	w.wg.Go(func() { w.samples = r.SampleAddresses(ctx, sampleEvery, addr) })
	w.wg.Go(func() { w.attempts = load(ctx, r, addr, &w.served) })
	return w
}

// waitServed waits until the client has been served n more requests than
// when it was called: before a fault, so that the figures start from a
// working VIP, and after one, so that they end with the VIP serving again.
func (w *watch) waitServed(t *testing.T, n int64, what string) {
	t.Helper()
	want := w.served.Load() + n
	testutil.Eventually(t, 30*time.Second, fmt.Sprintf("%d requests to be served %s", n, what), func() error {
		if got := w.served.Load(); got < want {
			return fmt.Errorf("%d served", n-(want-got))
		}
		return nil
	})
}

func (w *watch) stop() {
	w.cancel()
	w.wg.Wait()
}

// load sends GET / to addr from the client namespace every 20ms, each on
// a new connection with a 250ms timeout, until ctx ends (at most 10000),
// and counts the successful ones in served as they happen.
func load(ctx context.Context, r *Rig, addr string, served *atomic.Int64) []attempt {
	c := &http.Client{
		Timeout:   250 * time.Millisecond,
		Transport: &http.Transport{DialContext: r.DialContext, DisableKeepAlives: true},
	}
	url := "http://" + net.JoinHostPort(addr, strconv.Itoa(vipPort)) + "/"
	var out []attempt
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for range 10000 {
		at := time.Now()
		ok := false
		if req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil); err == nil {
			if resp, err := c.Do(req); err == nil {
				ok = resp.StatusCode == http.StatusOK
				resp.Body.Close()
			}
		}
		if ctx.Err() != nil {
			return out
		}
		out = append(out, attempt{at, ok})
		if ok {
			served.Add(1)
		}
		select {
		case <-ctx.Done():
			return out
		case <-tick.C:
		}
	}
	return out
}

// outage is what the client saw from the event on: the time from its
// first failed request to the first successful one after the last
// failure, and how many failed.
func outage(as []attempt, event time.Time) (gap time.Duration, lost int) {
	var first, last time.Time
	for _, a := range as {
		if a.at.Before(event) || a.ok {
			continue
		}
		lost++
		if first.IsZero() {
			first = a.at
		}
		last = a.at
	}
	if lost == 0 {
		return 0, 0
	}
	for _, a := range as {
		if a.ok && a.at.After(last) {
			return a.at.Sub(first), lost
		}
	}
	return -1, lost // never recovered
}

// noTwoHolders fails on any sample in which two namespaces hold the VIP.
func noTwoHolders(t *testing.T, r *Rig, addr string, samples []Sample) {
	t.Helper()
	if len(samples) < 10 {
		t.Fatalf("only %d samples of %s", len(samples), addr)
	}
	for _, s := range samples {
		if len(s.Holders) > 1 {
			for _, n := range r.Nodes {
				t.Log(n.LogTail())
			}
			t.Fatalf("split brain: at %s %s is held by %v", s.At.Format("15:04:05.000"), addr, s.Holders)
		}
	}
}

// handover checks that from holds addr at no sampled instant after any
// other node held it: the old holder let go first.
func handover(t *testing.T, samples []Sample, from string) {
	t.Helper()
	lastOld, firstNew := -1, -1
	for i, s := range samples {
		if slices.Contains(s.Holders, from) {
			lastOld = i
		}
		if firstNew < 0 && len(s.Holders) == 1 && s.Holders[0] != from {
			firstNew = i
		}
	}
	if firstNew < 0 {
		t.Fatal("no other node ever held the vip")
	}
	if lastOld >= firstNew {
		t.Fatalf("old holder %s still held the vip at sample %d, after the new holder had it at sample %d", from, lastOld, firstNew)
	}
	t.Logf("%s let go %s before the next holder claimed", from,
		samples[firstNew].At.Sub(samples[lastOld].At).Round(time.Millisecond))
}

// failedOver waits until addr is held by a node other than from and the
// client of w is served again.
func failedOver(t *testing.T, r *Rig, w *watch, addr, from string) string {
	t.Helper()
	var to string
	testutil.Eventually(t, 60*time.Second, addr+" to move off "+from, func() error {
		h := holdersNow(r, addr)
		if len(h) != 1 || h[0] == from {
			return fmt.Errorf("holders %v", h)
		}
		to = h[0]
		return nil
	})
	w.waitServed(t, 10, "by "+to)
	return to
}

type figures struct {
	name string
	gaps []time.Duration
	lost []int
}

func (f *figures) add(t *testing.T, gap time.Duration, lost int) {
	t.Helper()
	if gap < 0 {
		t.Fatalf("%s: the client never recovered", f.name)
	}
	t.Logf("%s: client gap %s, %d requests lost", f.name, gap.Round(time.Millisecond), lost)
	f.gaps = append(f.gaps, gap)
	f.lost = append(f.lost, lost)
}

func (f *figures) report(t *testing.T) {
	if len(f.gaps) == 0 {
		return
	}
	g := slices.Clone(f.gaps)
	slices.Sort(g)
	l := slices.Clone(f.lost)
	sort.Ints(l)
	t.Logf("vip failover report: %s: runs %d, gap median %s worst %s, lost median %d worst %d",
		f.name, len(g), g[len(g)/2].Round(time.Millisecond), g[len(g)-1].Round(time.Millisecond), l[len(l)/2], l[len(l)-1])
}

// TestVIPKillHolder kills the holder with SIGKILL, once when it is a
// follower and once when it leads: the VIP answers from another node.
func TestVIPKillHolder(t *testing.T) {
	for _, leads := range []bool{false, true} {
		name := "follower holder"
		if leads {
			name = "leader holder"
		}
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			r := newVIPCluster(t, "n1")
			f := &figures{name: "kill -9 " + name}
			for run := range vipRuns(t) {
				leader := r.Leader(60 * time.Second)
				holder := r.Node("n1")
				if (leader == holder) != leads {
					moveLeadership(t, r, holder, leads)
				}
				waitHolder(t, r, vipIP(0), holder.Name, 60*time.Second)
				w := startWatch(r, vipIP(0))
				w.waitServed(t, 10, "before the kill")
				killed := time.Now()
				holder.Kill()
				failedOver(t, r, w, vipIP(0), holder.Name)
				w.stop()
				noTwoHolders(t, r, vipIP(0), w.samples)
				gap, lost := outageOf(w, killed)
				f.add(t, gap, lost)
				holder.Start()
				if run+1 < vipRuns(t) {
					waitHolder(t, r, vipIP(0), holder.Name, 60*time.Second) // failback after the hold-down
				}
			}
			f.report(t)
		})
	}
}

func outageOf(w *watch, event time.Time) (time.Duration, int) { return outage(w.attempts, event) }

// moveLeadership restarts nodes until holder leads (want) or does not.
func moveLeadership(t *testing.T, r *Rig, holder *Node, want bool) {
	t.Helper()
	for range 10 {
		leader := r.Leader(60 * time.Second)
		if (leader == holder) == want {
			return
		}
		// Stop the leader so another node leads (the holder wins about
		// half the time when it should lead; then try again), and start it
		// again so the cluster stays whole.
		victim := leader
		if !want {
			victim = holder
		}
		victim.Stop()
		r.Leader(60*time.Second, others(r, victim)...)
		victim.Start()
		testutil.Eventually(t, 60*time.Second, victim.Name+" back", func() error {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, err := r.Status(ctx, victim)
			return err
		})
	}
	t.Fatalf("could not make %s leader=%v", holder.Name, want)
}

// TestVIPIsolateHolder cuts the holder off: it drops the VIP by itself
// before the majority's leader hands it on; after healing the VIP goes
// home once the hold-down has passed.
func TestVIPIsolateHolder(t *testing.T) {
	r := newVIPCluster(t, "n2")
	f := &figures{name: "holder cut off"}
	for run := range vipRuns(t) {
		leader := r.Leader(60 * time.Second)
		holder := r.Node("n2")
		if leader == holder {
			moveLeadership(t, r, holder, false)
		}
		waitHolder(t, r, vipIP(0), holder.Name, 60*time.Second)
		w := startWatch(r, vipIP(0))
		w.waitServed(t, 10, "before the cut")
		cut := time.Now()
		var rest []string
		for _, n := range others(r, holder) {
			rest = append(rest, n.Name)
		}
		r.Partition([]string{holder.Name}, rest)
		failedOver(t, r, w, vipIP(0), holder.Name)
		r.Heal()
		healed := time.Now()
		waitHolder(t, r, vipIP(0), holder.Name, 60*time.Second)
		back := time.Since(healed)
		w.waitServed(t, 10, "by "+holder.Name+" after the failback")
		w.stop()
		noTwoHolders(t, r, vipIP(0), w.samples)
		var cutAttempts []attempt
		for _, a := range w.attempts {
			if a.at.Before(healed) {
				cutAttempts = append(cutAttempts, a)
			}
		}
		gap, lost := outage(cutAttempts, cut)
		var cutSamples []Sample
		for _, s := range w.samples {
			if s.At.Before(healed) {
				cutSamples = append(cutSamples, s)
			}
		}
		handover(t, cutSamples, holder.Name)
		f.add(t, gap, lost)
		if back < holdDown {
			t.Fatalf("the vip went home %s after healing, before the %s hold-down", back, holdDown)
		}
		t.Logf("run %d: failback %s after healing", run+1, back.Round(time.Millisecond))
	}
	f.report(t)
}

// TestVIPPartitionLeaderZone partitions the leader's node (its zone) away:
// the majority elects a leader and moves the old leader's VIP; the VIPs of
// the majority stay where they are.
func TestVIPPartitionLeaderZone(t *testing.T) {
	r := newVIPCluster(t, "n1", "n2", "n3")
	leader := r.Leader(60 * time.Second)
	idx := slices.Index(r.Nodes, leader)
	addr := vipIP(idx)
	var ws []*watch
	for i := range r.Nodes {
		ws = append(ws, startWatch(r, vipIP(i)))
	}
	for i, w := range ws {
		w.waitServed(t, 10, "on "+vipIP(i)+" before the partition")
	}
	cut := time.Now()
	var rest []string
	for _, n := range others(r, leader) {
		rest = append(rest, n.Name)
	}
	r.Partition([]string{leader.Name}, rest)
	newLeader := r.Leader(60*time.Second, others(r, leader)...)
	failedOver(t, r, ws[idx], addr, leader.Name)
	for _, w := range ws {
		w.stop()
	}
	for i, w := range ws {
		noTwoHolders(t, r, vipIP(i), w.samples)
	}
	handover(t, ws[idx].samples, leader.Name)
	f := &figures{name: "leader's zone partitioned"}
	gap, lost := outageOf(ws[idx], cut)
	f.add(t, gap, lost)
	for i, n := range r.Nodes {
		if n == leader {
			continue
		}
		if h := holdersNow(r, vipIP(i)); !slices.Equal(h, []string{n.Name}) {
			t.Fatalf("vip of majority node %s moved to %v", n.Name, h)
		}
		// Holders renew their lease only through the leader, so while the
		// majority elects one, its own VIPs may go dark for a moment; they
		// come back on the same node without waiting out any hand-over.
		gap, lost := outageOf(ws[i], cut)
		if gap < 0 || gap > 3*time.Second {
			t.Fatalf("vip of majority node %s: gap %s, %d requests lost", n.Name, gap, lost)
		}
		t.Logf("vip of majority node %s stayed; blip during the election: %s, %d requests lost", n.Name, gap.Round(time.Millisecond), lost)
	}
	t.Logf("new leader %s", newLeader.Name)
	f.report(t)
	r.Heal()
}

// TestVIPGracefulStop stops the holder with SIGTERM: it hands the VIP over
// while it still serves, so the client sees at most a short gap, and it
// never holds the VIP at the same time as its successor.
func TestVIPGracefulStop(t *testing.T) {
	r := newVIPCluster(t, "n2")
	holder := r.Node("n2")
	if r.Leader(60*time.Second) == holder {
		moveLeadership(t, r, holder, false)
		waitHolder(t, r, vipIP(0), holder.Name, 60*time.Second)
	}
	w := startWatch(r, vipIP(0))
	w.waitServed(t, 10, "before the stop")
	stopped := time.Now()
	holder.Stop()
	took := time.Since(stopped)
	to := failedOver(t, r, w, vipIP(0), holder.Name)
	w.stop()
	noTwoHolders(t, r, vipIP(0), w.samples)
	handover(t, w.samples, holder.Name)
	gap, lost := outageOf(w, stopped)
	t.Logf("SIGTERM hand-over to %s: stop took %s; client gap %s, %d requests lost", to, took.Round(time.Millisecond), gap.Round(time.Millisecond), lost)
	if gap < 0 || gap > time.Second {
		t.Fatalf("graceful hand-over left the client without the vip for %s (%d requests lost)", gap, lost)
	}
}
