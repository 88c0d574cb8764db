package systemtest

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafterlb/rafter/internal/testutil"
)

// proxyRig is 3 voters (n1..n3 on 127.0.0.1-3) and 4 proxies (p1..p4 on
// 127.0.0.4-7), real agent processes. Every agent's --join lists all
// seven admin addresses, so the voters meet the proxies while forming and
// must not count them toward --bootstrap-expect 3.
type proxyRig struct {
	t        *testing.T
	admin    testutil.Admin
	agents   []*Agent
	roles    map[string]string
	adminP   int
	raftP    int
	mu       sync.Mutex
	procs    map[string]*testutil.Process
	joinList string
}

const proxyToken = "proxy-test-token"

func newProxyRig(t *testing.T) *proxyRig {
	t.Helper()
	var ips []string
	for i := 1; i <= 7; i++ {
		ips = append(ips, fmt.Sprintf("127.0.0.%d", i))
	}
	ports, err := testutil.FreePorts(ips, 2)
	if err != nil {
		t.Fatalf("rig setup: %v", err)
	}
	r := &proxyRig{t: t, admin: testutil.Admin{Token: proxyToken}, roles: map[string]string{},
		adminP: ports[0], raftP: ports[1], procs: map[string]*testutil.Process{}}
	dir := t.TempDir()
	var join []string
	for i, ip := range ips {
		id, role := fmt.Sprintf("n%d", i+1), "voter"
		if i >= 3 {
			id, role = fmt.Sprintf("p%d", i-2), "proxy"
		}
		a := &Agent{ID: id, Zone: string(rune('a' + i%3)), IP: ip, AdminPort: r.adminP, RaftPort: r.raftP,
			DataDir: filepath.Join(dir, id), Log: filepath.Join(dir, id+".log")}
		r.agents = append(r.agents, a)
		r.roles[id] = role
		join = append(join, a.AdminAddr())
	}
	r.joinList = strings.Join(join, ",")
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, p := range r.procs {
			if p.Running() {
				if _, err := p.Kill(); err != nil {
					t.Errorf("cleanup: %v", err)
				}
			}
		}
		if t.Failed() {
			for _, a := range r.agents {
				t.Logf("---- log of %s (tail) ----\n%s", a.ID, testutil.LogTail(a.Log, 4000))
			}
		}
	})
	for _, a := range r.agents {
		r.start(a)
	}
	return r
}

func (r *proxyRig) start(a *Agent) {
	r.t.Helper()
	args := []string{"agent", "--node-id", a.ID, "--zone", a.Zone, "--data-dir", a.DataDir,
		"--bind", a.IP, "--admin-port", strconv.Itoa(a.AdminPort), "--raft-port", strconv.Itoa(a.RaftPort),
		"--join", r.joinList, "--token", proxyToken, "--access-log", "off", "--log-level", "warn"}
	if r.roles[a.ID] == "proxy" {
		args = append(args, "--role", "proxy")
	} else {
		args = append(args, "--bootstrap-expect", "3")
	}
	p, err := testutil.StartProcess(testutil.ProcessSpec{Name: a.ID, Path: bin, Log: a.Log, Args: args})
	if err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	r.procs[a.ID] = p
	r.mu.Unlock()
}

func (r *proxyRig) kill(a *Agent) {
	r.t.Helper()
	r.mu.Lock()
	p := r.procs[a.ID]
	r.mu.Unlock()
	if _, err := p.Kill(); err != nil {
		r.t.Fatal(err)
	}
}

func (r *proxyRig) proxies() []*Agent { return r.agents[3:] }

// leader waits for a voter that leads and sees every member with the
// suffrage its role gives.
func (r *proxyRig) leader() *Agent {
	r.t.Helper()
	var leader *Agent
	testutil.Eventually(r.t, 90*time.Second, "3 voters and 4 proxies in the leader's status", func() error {
		for _, a := range r.agents[:3] {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			st, err := r.admin.Status(ctx, a.URL())
			cancel()
			if err != nil || st.State != "Leader" {
				continue
			}
			if len(st.Members) != 7 {
				return fmt.Errorf("%s sees %d members", a.ID, len(st.Members))
			}
			for _, m := range st.Members {
				want := "Voter"
				if r.roles[m.ID] == "proxy" {
					want = "Nonvoter"
				}
				if m.Suffrage != want {
					return fmt.Errorf("%s is %s, want %s", m.ID, m.Suffrage, want)
				}
			}
			leader = a
			return nil
		}
		return fmt.Errorf("no voter leads")
	})
	return leader
}

// put writes listener name on port through a and returns the index.
func (r *proxyRig) put(a *Agent, name string, port int) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := r.admin.Do(ctx, a.URL(), "PUT", "/v1/listeners/"+name, []byte(fmt.Sprintf(`{"port":%d}`, port)))
	if err != nil {
		return 0, err
	}
	if resp.Status != 200 {
		return 0, fmt.Errorf("PUT /v1/listeners/%s on %s: %d %s", name, a.ID, resp.Status, resp.Body)
	}
	return resp.Index, nil
}

// watchPast blocks until a's state is at least index (a blocking read
// from after, the index before the write) and returns when it saw it.
func (r *proxyRig) watchPast(a *Agent, after, index uint64) (time.Time, error) {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		resp, err := r.admin.Do(ctx, a.URL(), "GET", fmt.Sprintf("/v1/status?index=%d&wait=10s", after), nil)
		cancel()
		now := time.Now()
		if err != nil {
			return now, err
		}
		if resp.Index >= index {
			return now, nil
		}
		after = resp.Index
	}
}

// propagation writes n listeners through leader one at a time, each
// watched for on every proxy by a blocking read sent before the write,
// and returns how long after the write's answer each proxy had applied it.
func (r *proxyRig) propagation(leader *Agent, n, base int) []time.Duration {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	first, err := r.admin.Do(ctx, leader.URL(), "GET", "/v1/status", nil)
	cancel()
	if err != nil {
		r.t.Fatal(err)
	}
	cur := first.Index
	var samples []time.Duration
	for i := range n {
		type seen struct {
			at  time.Time
			err error
		}
		results := make([]chan seen, len(r.proxies()))
		var wrote uint64
		ready := make(chan struct{})
		for j, p := range r.proxies() {
			results[j] = make(chan seen, 1)
			go func() {
				<-ready
				at, err := r.watchPast(p, cur, wrote)
				results[j] <- seen{at, err}
			}()
		}
		idx, err := r.put(leader, fmt.Sprintf("w%d", i%10), base+i)
		answered := time.Now()
		if err != nil {
			close(ready)
			r.t.Fatalf("write %d: %v", i, err)
		}
		wrote = idx
		close(ready)
		for j := range results {
			s := <-results[j]
			if s.err != nil {
				r.t.Fatalf("proxy %s, index %d: %v", r.proxies()[j].ID, idx, s.err)
			}
			samples = append(samples, max(s.at.Sub(answered), 0))
		}
		cur = idx
	}
	return samples
}

// TestProxyProcesses: 3 voters and 4 proxies as real processes. The
// proxies join as non-voters although the voters met them while forming;
// writes reach every proxy with propagation p99 at most 100 ms over 200
// writes; with every proxy killed (-9) writes go on under the same leader
// and term; restarted proxies catch up to the same state.
func TestProxyProcesses(t *testing.T) {
	r := newProxyRig(t)
	leader := r.leader()

	// The bound is the system's; the machine is shared. A round disturbed
	// by other processes is measured again, at most three times, and every
	// round's figures are logged.
	const writes, rounds = 200, 3
	var p99 time.Duration
	for round := 1; round <= rounds; round++ {
		samples := r.propagation(leader, writes, 10000+round*writes)
		sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
		p99 = samples[len(samples)*99/100]
		t.Logf("round %d: propagation from the write's answer to a blocking read returning on each of 4 proxies, %d writes: p50 %v, p99 %v, max %v",
			round, writes, samples[len(samples)/2].Round(time.Microsecond), p99.Round(time.Microsecond), samples[len(samples)-1].Round(time.Microsecond))
		if p99 <= 100*time.Millisecond {
			break
		}
	}
	if p99 > 100*time.Millisecond {
		t.Errorf("propagation p99 %v in each of %d rounds, want at most 100ms", p99, rounds)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	before, err := r.admin.Status(ctx, leader.URL())
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range r.proxies() {
		r.kill(p)
	}
	var last uint64
	for i := range 30 {
		start := time.Now()
		idx, err := r.put(leader, fmt.Sprintf("down%d", i), 20000+i)
		if err != nil {
			t.Fatalf("write %d with every proxy killed: %v", i, err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("write %d with every proxy killed took %v", i, took)
		}
		last = idx
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	after, err := r.admin.Status(ctx, leader.URL())
	cancel()
	if err != nil || after.State != "Leader" || after.Term != before.Term {
		t.Fatalf("leader %s with every proxy killed: %+v, %v (term before %d)", leader.ID, after, err, before.Term)
	}

	for _, p := range r.proxies() {
		r.start(p)
	}
	for _, p := range r.proxies() {
		testutil.Eventually(t, 60*time.Second, p.ID+" serving at index "+strconv.FormatUint(last, 10)+" after restart", func() error {
			_, err := r.watchPast(p, 0, last)
			return err
		})
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	want, err := r.admin.Do(ctx, leader.URL(), "GET", "/v1/listeners", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range r.proxies() {
		got, err := r.admin.Do(ctx, p.URL(), "GET", "/v1/listeners?index="+strconv.FormatUint(last-1, 10)+"&wait=5s", nil)
		if err != nil {
			t.Fatalf("%s after restart: %v", p.ID, err)
		}
		if g, w := listItems(t, got.Body), listItems(t, want.Body); g != w {
			t.Errorf("%s after restart: listeners differ from the leader's:\n%s\nwant\n%s", p.ID, g, w)
		}
	}
}

// listItems is the items of a list answer, as raw JSON.
func listItems(t *testing.T, body []byte) string {
	t.Helper()
	var l struct {
		Items json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(body, &l); err != nil {
		t.Fatalf("decoding %s: %v", body, err)
	}
	return string(l.Items)
}
