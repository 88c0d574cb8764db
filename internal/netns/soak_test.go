//go:build linux

package netns

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/rafterlb/rafter/internal/linearize"
	"github.com/rafterlb/rafter/internal/testutil"
)

// TestChaosSoak runs three agents in the namespace rig under continuous
// load while a nemesis injects one fault after another, and checks
// afterwards that nothing a client was promised was broken.
//
// Load: a client of a linux VIP (GET every 20ms), four clients of the
// admin API doing put / consistent get / compare-and-set through random
// nodes (recorded for porcupine), a writer of never-overwritten pools
// through random nodes, and three `rafter register` processes keeping
// backends under 10s leases.
//
// Faults (one at a time, picked by a seeded RNG in rounds of every kind in
// random order): kill -9 (restart after 1-3s), SIGSTOP for 1-5s, one node
// cut off its peers, one zone (its node) cut off everyone including the
// client, 100ms delay and 5% loss on what one node sends (tc netem, or its
// NFQUEUE emulation where the kernel has no sch_netem), and one node's
// data-dir filesystem filled up. Each fault is healed, and the cluster
// seen whole again (every agent running, one leader, the VIP on one
// node), before the next.
//
// Violations, which fail the test: two namespaces holding the VIP in one
// sample; a history that is not linearizable; an acknowledged write
// missing on any node after the last heal; nodes that do not converge to
// one applied index, one document and the same VIP assignments; an agent
// that exits by itself; a cluster that is not whole again within a minute
// of a heal; a registered backend missing from its pool at the end.
// Budget, reported per fault kind but not failing: client requests that
// fail while a fault is in effect or being recovered from (a request to a
// killed, stopped or cut off node, the VIP's blind window while it moves,
// writes refused for want of a leader), and leases registered again after
// a fault.
//
// RAFTER_SOAK_DURATION sets how long the nemesis runs (default 60s; `make
// soak` runs 10m), RAFTER_SOAK_SEED replays a run's faults,
// RAFTER_SOAK_FAULTS (comma separated) picks the fault kinds,
// RAFTER_SOAK_LOG_LEVEL sets the agents' --log-level, and
// RAFTER_SOAK_KEEP_LOGS=1 keeps their logs after a run that passed too.
func TestChaosSoak(t *testing.T) {
	cfg := soakConfig(t)
	t.Logf("soak: duration %s, seed %d (RAFTER_SOAK_SEED=%d replays), faults %s",
		cfg.duration, cfg.seed, cfg.seed, strings.Join(cfg.faults, ","))

	o := DefaultOptions()
	o.Bin = bin
	o.ExtraArgs = []string{"--vip-linux", "--vip-hold-down", holdDown.String()}
	if cfg.logLevel != "" {
		o.ExtraArgs = append(o.ExtraArgs, "--log-level", cfg.logLevel)
	}
	r := New(t, o)
	if slices.Contains(cfg.faults, faultNetem) {
		t.Logf("soak: the netem fault uses %s", requireNetem(t, r))
	}
	mountDataDirs(t, r)
	keepLogsOnFailure(t, r, cfg.seed)
	r.StartAgents()
	r.Leader(60 * time.Second)
	putSpec(t, r, "listeners", "web", fmt.Sprintf(`{"port": %d}`, vipPort))
	putSpec(t, r, "routes", "ok", `{"listener": "web", "action": {"respond": {"status": 200, "body": "ok"}}}`)
	putSpec(t, r, "pools", "reg", `{}`)
	vip := vipIP(0)
	putSpec(t, r, "vips", "vip0", fmt.Sprintf(
		`{"provider": "linux", "address": "%s/24", "home_node": "n1", "candidates": ["n1", "n2", "n3"]}`, vip))
	waitHolder(t, r, vip, "n1", 60*time.Second)

	const regTTL = 10 * time.Second
	var regs []*registrar
	for i := range 3 {
		addr := fmt.Sprintf("10.99.0.%d:80", 150+i)
		g, err := startRegistrar(r, "reg", addr, regTTL, filepath.Join(t.TempDir(), fmt.Sprintf("register-%d.log", i)))
		if err != nil {
			t.Fatalf("soak: %v", err)
		}
		t.Cleanup(func() { g.proc.Kill() })
		regs = append(regs, g)
	}
	testutil.Eventually(t, 60*time.Second, "the registered backends in pool reg", func() error {
		return registered(r, regs)
	})

	// Every client stops by itself at the latest when its context ends:
	// the nemesis's time plus a margin for the last heal.
	rnd := rand.New(rand.NewPCG(cfg.seed, 0x50a6))
	loadCtx, stopLoad := context.WithTimeout(context.Background(), cfg.duration+3*time.Minute)
	defer stopLoad()
	ev := &events{}
	rec := linearize.NewRecorder()
	led := &ledger{}
	maxOps := int(cfg.duration/(20*time.Millisecond)) + 20000
	var load sync.WaitGroup
	load.Go(func() { vipClient(loadCtx, r, vip, 20*time.Millisecond, maxOps, ev) })
	const linClients = 4
	for i := range linClients {
		c := &linClient{r: r, id: i, rnd: rand.New(rand.NewPCG(cfg.seed, uint64(i))), rec: rec, ev: ev, start: time.Now()}
		load.Go(func() { c.run(loadCtx, 100*time.Millisecond, maxOps) })
	}
	ledRnd := rand.New(rand.NewPCG(cfg.seed, 99))
	load.Go(func() { led.run(loadCtx, r, ledRnd, ev, 200*time.Millisecond, maxOps) })
	samplesCh := make(chan []Sample, 1)
	go func() { samplesCh <- r.SampleAddresses(loadCtx, sampleEvery, vip) }()

	// A quiet start, so that the figures begin from a working cluster.
	testutil.WaitFor(t, 30*time.Second, "the load to get going", func() bool {
		n := 0
		for _, e := range ev.all() {
			if e.ok {
				n++
			}
		}
		return n >= 100
	})

	m := &nemesis{t: t, r: r, rnd: rnd, vip: vip, whole: clusterWhole(r, vip)}
	var faults []*fault
	var recoveryErrs []string
	nemCtx, stopNemesis := context.WithTimeout(context.Background(), cfg.duration)
	var bag []string
	for nemCtx.Err() == nil {
		if len(bag) == 0 {
			bag = slices.Clone(cfg.faults)
			rnd.Shuffle(len(bag), func(i, j int) { bag[i], bag[j] = bag[j], bag[i] })
		}
		kind := bag[0]
		bag = bag[1:]
		f := m.inject(nemCtx, kind)
		faults = append(faults, f)
		err := m.recover(f, time.Minute)
		t.Logf("soak: %-15s %-8s (%s): healed after %s, whole again %s later",
			f.kind, f.target, f.detail, f.healed.Sub(f.start).Round(time.Millisecond), recoveredIn(f))
		if err != nil {
			recoveryErrs = append(recoveryErrs, fmt.Sprintf("%s on %s: not whole within a minute of the heal: %v", f.kind, f.target, err))
			break
		}
		hold(nemCtx, m.between(time.Second, 2*time.Second))
	}
	stopNemesis()
	end := time.Now()

	// Quiet again: the load runs on a few seconds over a healed cluster,
	// then stops; the checks run on what it recorded.
	testutil.WaitFor(t, 60*time.Second, "load after the last heal", func() bool {
		n := 0
		for _, e := range ev.all() {
			if e.ok && e.at.After(end) {
				n++
			}
		}
		return n >= 100
	})
	stopLoad()
	load.Wait()
	samples := <-samplesCh

	rep := newReport(faults)
	for _, e := range ev.all() {
		rep.request(e)
	}
	rep.blindWindows(ev.all())
	for _, s := range samples {
		if len(s.Holders) > 1 {
			rep.violation(s.At, fmt.Sprintf("two vip holders at %s: %v", s.At.Format("15:04:05.000"), s.Holders))
		}
	}
	for _, e := range recoveryErrs {
		rep.violation(end, e)
	}

	// Acknowledged writes and convergence, on every node.
	acked, sent := led.snapshot()
	rep.check("acknowledged writes on every node", testutil.Poll(time.Minute, func() error { return allAcked(r, acked) }))
	rep.check("every node at one applied index, document and vip assignments", testutil.Poll(time.Minute, func() error { return converged(r) }))
	rep.check("registered backends in their pool", testutil.Poll(time.Minute, func() error { return registered(r, regs) }))
	ops := rec.Operations()
	unknown := 0
	for _, op := range ops {
		if op.Output.(linearize.Output).Outcome == linearize.Unknown {
			unknown++
		}
	}
	checkStart := time.Now()
	rep.check("api history linearizable (porcupine)", linearize.Check(ops, 5*time.Minute))
	for _, n := range r.Nodes {
		if !n.Running() {
			rep.violation(end, "agent "+n.Name+" is not running at the end")
		}
	}

	reregistered := 0
	for _, g := range regs {
		reregistered += strings.Count(testutil.LogTail(g.proc.Log, 1<<20), "lease lost")
	}
	t.Logf("soak: %d faults in %s; %d api operations in the history (%d of unknown outcome, checked in %s); "+
		"%d of %d ledger writes acknowledged; %d vip samples; leases registered again after a fault: %d",
		len(faults), cfg.duration, len(ops), unknown, time.Since(checkStart).Round(time.Millisecond),
		len(acked), sent, len(samples), reregistered)
	t.Log("soak: fault table (budget: client requests failed, longest vip blind window; violations must be 0)\n" + rep.table())
	if v := rep.violations(); len(v) > 0 {
		t.Fatalf("soak: %d violations (replay with RAFTER_SOAK_SEED=%d):\n  %s", len(v), cfg.seed, strings.Join(v, "\n  "))
	}
	if len(faults) == 0 {
		t.Fatal("soak: the nemesis injected no fault")
	}
}

type soakCfg struct {
	duration time.Duration
	seed     uint64
	faults   []string
	logLevel string // of the agents; empty: their default
}

func soakConfig(t *testing.T) soakCfg {
	t.Helper()
	c := soakCfg{duration: 60 * time.Second, seed: uint64(time.Now().UnixNano()), faults: allFaults}
	if s := os.Getenv("RAFTER_SOAK_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 10*time.Second || d > 24*time.Hour {
			t.Fatalf("RAFTER_SOAK_DURATION=%q: want a duration of 10s..24h", s)
		}
		c.duration = d
	}
	if s := os.Getenv("RAFTER_SOAK_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("RAFTER_SOAK_SEED=%q: want an unsigned integer", s)
		}
		c.seed = n
	}
	switch s := os.Getenv("RAFTER_SOAK_LOG_LEVEL"); s {
	case "", "debug", "info", "warn", "error":
		c.logLevel = s
	default:
		t.Fatalf("RAFTER_SOAK_LOG_LEVEL=%q: want debug, info, warn or error", s)
	}
	if s := os.Getenv("RAFTER_SOAK_FAULTS"); s != "" {
		c.faults = nil
		for _, k := range strings.Split(s, ",") {
			k = strings.TrimSpace(k)
			if !slices.Contains(allFaults, k) {
				t.Fatalf("RAFTER_SOAK_FAULTS: unknown fault kind %q; kinds: %s", k, strings.Join(allFaults, ","))
			}
			if !slices.Contains(c.faults, k) {
				c.faults = append(c.faults, k)
			}
		}
	}
	return c
}

// keepLogsOnFailure copies the agents' whole logs out of the test's
// temporary directory when the test fails (the rig shows only their
// tails), after a goroutine dump of each, or always with
// RAFTER_SOAK_KEEP_LOGS=1: into $RAFTER_ARTIFACTS/soak-SEED, or a
// directory it logs.
func keepLogsOnFailure(t *testing.T, r *Rig, seed uint64) {
	t.Cleanup(func() {
		if !t.Failed() && os.Getenv("RAFTER_SOAK_KEEP_LOGS") != "1" {
			return
		}
		if t.Failed() {
			dumpStacks(r)
		}
		dir := filepath.Join(os.Getenv("RAFTER_ARTIFACTS"), fmt.Sprintf("soak-%d", seed))
		if os.Getenv("RAFTER_ARTIFACTS") == "" {
			d, err := os.MkdirTemp("", fmt.Sprintf("rafter-soak-%d-", seed))
			if err != nil {
				t.Logf("soak: keeping logs: %v", err)
				return
			}
			dir = d
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Logf("soak: keeping logs: %v", err)
			return
		}
		for _, n := range r.Nodes {
			b, err := os.ReadFile(n.LogPath)
			if err == nil {
				err = os.WriteFile(filepath.Join(dir, n.Name+".log"), b, 0o644)
			}
			if err != nil {
				t.Logf("soak: keeping %s's log: %v", n.Name, err)
			}
		}
		t.Logf("soak: the agents' logs are in %s", dir)
	})
}

// dumpStacks ends every running agent with SIGQUIT, on which a Go program
// prints every goroutine's stack: the logs then show where an agent that
// stopped making progress was stuck.
func dumpStacks(r *Rig) {
	for _, n := range r.Nodes {
		if p := n.current(); p != nil && p.Running() {
			p.Signal(syscall.SIGCONT)
			p.Signal(syscall.SIGQUIT)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			p.Wait(ctx)
			cancel()
		}
	}
}

func recoveredIn(f *fault) string {
	if f.recovered.IsZero() {
		return "never"
	}
	return f.recovered.Sub(f.healed).Round(time.Millisecond).String()
}

// registered reports nil once every node's pool reg has every
// registrar's backend.
func registered(r *Rig, regs []*registrar) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, n := range r.Nodes {
		got, err := poolBackends(ctx, r, n, "reg")
		if err != nil {
			return err
		}
		for _, g := range regs {
			if !g.proc.Running() {
				return fmt.Errorf("rafter register for %s exited: %s", g.addr, testutil.LogTail(g.proc.Log, 2000))
			}
			if !got[g.addr] {
				return fmt.Errorf("%s's pool reg lacks %s", n.Name, g.addr)
			}
		}
	}
	return nil
}

// allAcked reports nil once every node holds every acknowledged pool.
func allAcked(r *Rig, acked []string) error {
	for _, n := range r.Nodes {
		got, err := pools(r, n)
		if err != nil {
			return err
		}
		var missing []string
		for _, name := range acked {
			if !got[name] {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%s lacks %d of %d acknowledged writes: %s", n.Name, len(missing), len(acked), strings.Join(missing[:min(5, len(missing))], ", "))
		}
	}
	return nil
}

// report attributes what the clients saw to the fault in effect then: a
// fault's window runs from its start to the next fault's start (so it
// includes the recovery); before the first fault is "none".
type report struct {
	faults []*fault
	rows   map[string]*row
	checks []string
	viol   []string
}

type row struct {
	count, violations int
	failed            map[string]int // by client: vip, api
	blind             time.Duration
}

func newReport(faults []*fault) *report {
	rp := &report{faults: faults, rows: map[string]*row{"none": {failed: map[string]int{}}}}
	for _, f := range faults {
		if rp.rows[f.kind] == nil {
			rp.rows[f.kind] = &row{failed: map[string]int{}}
		}
		rp.rows[f.kind].count++
	}
	return rp
}

func (rp *report) kindAt(at time.Time) string {
	kind := "none"
	for _, f := range rp.faults {
		if !f.start.After(at) {
			kind = f.kind
		}
	}
	return kind
}

func (rp *report) request(e event) {
	if !e.ok {
		rp.rows[rp.kindAt(e.at)].failed[e.kind]++
	}
}

// blindWindows finds each run of failed VIP requests (from the first
// failure to the first success after it) and keeps the longest per kind.
func (rp *report) blindWindows(evs []event) {
	var first time.Time
	for _, e := range evs {
		if e.kind != "vip" {
			continue
		}
		switch {
		case !e.ok && first.IsZero():
			first = e.at
		case e.ok && !first.IsZero():
			row := rp.rows[rp.kindAt(first)]
			row.blind = max(row.blind, e.at.Sub(first))
			first = time.Time{}
		}
	}
	if !first.IsZero() {
		rp.violation(first, "the vip never answered again after "+first.Format("15:04:05.000"))
	}
}

func (rp *report) violation(at time.Time, what string) {
	rp.rows[rp.kindAt(at)].violations++
	rp.viol = append(rp.viol, what)
}

// check records a whole-run check; err is its violation.
func (rp *report) check(name string, err error) {
	if err != nil {
		rp.checks = append(rp.checks, fmt.Sprintf("%s: VIOLATED: %v", name, err))
		rp.viol = append(rp.viol, name+": "+err.Error())
		return
	}
	rp.checks = append(rp.checks, name+": ok")
}

func (rp *report) violations() []string { return rp.viol }

func (rp *report) table() string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "fault kind\tcount\tclient requests failed\tlongest blind window\tviolations")
	kinds := []string{"none"}
	for _, k := range allFaults {
		if rp.rows[k] != nil {
			kinds = append(kinds, k)
		}
	}
	total := row{failed: map[string]int{}}
	failed := func(rw row) string {
		return fmt.Sprintf("%d (vip %d, api %d)", rw.failed["vip"]+rw.failed["api"], rw.failed["vip"], rw.failed["api"])
	}
	for _, k := range kinds {
		rw := rp.rows[k]
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%d\n", k, rw.count, failed(*rw), rw.blind.Round(time.Millisecond), rw.violations)
		total.count += rw.count
		total.failed["vip"] += rw.failed["vip"]
		total.failed["api"] += rw.failed["api"]
		total.blind = max(total.blind, rw.blind)
		total.violations += rw.violations
	}
	whole := 0
	for _, c := range rp.checks {
		if strings.Contains(c, "VIOLATED") {
			whole++
		}
	}
	fmt.Fprintf(w, "whole-run checks\t-\t-\t-\t%d\n", whole)
	fmt.Fprintf(w, "total\t%d\t%s\t%s\t%d\n", total.count, failed(total), total.blind.Round(time.Millisecond), total.violations+whole)
	w.Flush()
	for _, c := range rp.checks {
		b.WriteString("  " + c + "\n")
	}
	return b.String()
}
