package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rafterlb/rafter/internal/testutil"
)

// status is the part of GET /v1/status the harness reads.
type status struct {
	Leader  string `json:"leader"`
	Members []struct {
		ID        string `json:"id"`
		AdminAddr string `json:"admin_addr"`
	} `json:"members"`
}

// waitLeader polls adminURL's status until a leader is known and members
// are present, and returns the leader's admin URL.
func waitLeader(ctx context.Context, adminURL string, members int, within time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	c := &http.Client{Timeout: 2 * time.Second}
	defer c.CloseIdleConnections()
	last := "no answer"
	for i := 0; i < 100000; i++ {
		var st status
		if err := getJSON(ctx, c, adminURL+"/v1/status", &st); err != nil {
			last = err.Error()
		} else if st.Leader == "" || len(st.Members) < members {
			last = fmt.Sprintf("leader %q, %d members", st.Leader, len(st.Members))
		} else {
			for _, m := range st.Members {
				if m.ID == st.Leader && m.AdminAddr != "" {
					return "http://" + m.AdminAddr, nil
				}
			}
			last = "leader " + st.Leader + " has no admin address"
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no leader at %s within %v: %s", adminURL, within, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return "", fmt.Errorf("no leader at %s: %s", adminURL, last)
}

func getJSON(ctx context.Context, c *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, v)
}

// send does one admin write and returns its status and body.
func send(ctx context.Context, c *http.Client, method, url, ctype, body string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(bytes.TrimSpace(b)), nil
}

// applyManifest POSTs a YAML manifest, retrying while there is no leader (503).
func applyManifest(ctx context.Context, adminURL, manifest string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	c := &http.Client{Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	for i := 0; i < 1000; i++ {
		code, body, err := send(ctx, c, http.MethodPost, adminURL+"/v1/apply", "application/yaml", manifest)
		switch {
		case err == nil && code == http.StatusOK:
			return nil
		case err == nil && code != http.StatusServiceUnavailable:
			return fmt.Errorf("apply: %d %s", code, body)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("apply not accepted within %v: %d %s %v", within, code, body, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("apply not accepted")
}

// RunCluster starts three rafter nodes on 127.0.0.1-3 and measures config
// propagation and Raft apply throughput. Errors are reported in the result.
func RunCluster(ctx context.Context, cfg ClusterConfig, bin, dir string, log *slog.Logger) *Cluster {
	out := &Cluster{Nodes: 3}
	ips := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	ports, err := commonFreePorts(ips, 3)
	if err != nil {
		out.Err = err.Error()
		return out
	}
	admin, raftPort, dataPort := ports[0], ports[1], ports[2]
	var join []string
	for _, ip := range ips {
		join = append(join, net.JoinHostPort(ip, strconv.Itoa(admin)))
	}
	var procs []*Proc
	defer func() {
		for _, p := range procs {
			p.Stop(5 * time.Second)
		}
	}()
	for i, ip := range ips {
		id := "n" + strconv.Itoa(i+1)
		p, err := StartProc(ProcSpec{Name: id, Path: bin, Core: -1, CPUList: allCPUs(), Log: filepath.Join(dir, id+".log"),
			Args: []string{"agent", "--node-id", id, "--zone", string(rune('a' + i)),
				"--data-dir", filepath.Join(dir, id), "--bind", ip, "--admin-port", strconv.Itoa(admin),
				"--raft-port", strconv.Itoa(raftPort), "--bootstrap-expect", "3", "--join", strings.Join(join, ","),
				"--access-log", "off", "--log-level", "warn"}})
		if err != nil {
			out.Err = err.Error()
			return out
		}
		procs = append(procs, p)
	}
	fail := func(err error) *Cluster {
		out.Err = fmt.Sprintf("%v; n1 log: %s", err, testutil.LogTail(filepath.Join(dir, "n1.log"), 600))
		return out
	}
	leader, err := waitLeader(ctx, "http://"+join[0], 3, 60*time.Second)
	if err != nil {
		return fail(err)
	}
	manifest := fmt.Sprintf("kind: listener\nname: prop\nspec: {port: %d}\n", dataPort)
	if err := applyManifest(ctx, leader, manifest, 20*time.Second); err != nil {
		return fail(err)
	}
	var nodes []string
	for _, ip := range ips {
		nodes = append(nodes, net.JoinHostPort(ip, strconv.Itoa(dataPort)))
	}
	log.Info("cluster up", "leader", leader, "data", nodes)

	prop := measurePropagation(ctx, cfg, leader, nodes)
	out.Propagation = &prop
	if prop.Count == 0 {
		return fail(fmt.Errorf("no write propagated (%d timeouts)", prop.Timeouts))
	}
	ap := measureApply(ctx, cfg, leader)
	out.Apply = &ap
	if cfg.Routes > 0 && ctx.Err() == nil {
		out.Routes = measureRoutes(ctx, cfg, bin, dir, leader, "prop", nodes, log)
	}
	return out
}

// allCPUs lists every core for taskset: without it a child would inherit
// the harness's own pinning to the load core.
func allCPUs() string {
	return "0-" + strconv.Itoa(runtime.NumCPU()-1)
}

// commonFreePorts finds n ports free on every one of ips.
func commonFreePorts(ips []string, n int) ([]int, error) {
	var got []int
	for tries := 0; tries < 100 && len(got) < n; tries++ {
		p, err := freePort(ips[0])
		if err != nil {
			return nil, err
		}
		ok := !slices.Contains(got, p)
		for _, ip := range ips[1:] {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			got = append(got, p)
		}
	}
	if len(got) < n {
		return nil, fmt.Errorf("no %d ports free on all of %v", n, ips)
	}
	return got, nil
}

// measurePropagation times cfg.Writes route changes: each poller watches one
// node's data plane from before the write is sent, and a write's figure is
// the last node's first sighting minus the acknowledgement time (0 when
// every node served it before the answer arrived).
func measurePropagation(ctx context.Context, cfg ClusterConfig, leader string, nodes []string) LatencySummary {
	var s LatencySummary
	api := &http.Client{Timeout: 5 * time.Second}
	defer api.CloseIdleConnections()
	data := newPollClient()
	defer data.CloseIdleConnections()
	var samples []time.Duration
	for i := 1; i <= cfg.Writes && ctx.Err() == nil; i++ {
		want := "w" + strconv.Itoa(i)
		wctx, cancel := context.WithTimeout(ctx, cfg.WriteTimeout.D())
		seen := make([]time.Time, len(nodes))
		var wg sync.WaitGroup
		for n, addr := range nodes {
			wg.Go(func() { seen[n] = pollFor(wctx, data, "http://"+addr+"/", want) })
		}
		code, _, err := send(wctx, api, http.MethodPut, leader+"/v1/routes/prop", "application/json", PropagationRoute("prop", i))
		ack := time.Now()
		if err != nil || code != http.StatusOK {
			cancel()
			wg.Wait()
			s.Timeouts++
			continue
		}
		wg.Wait()
		cancel()
		last, ok := ack, true
		for _, t := range seen {
			if t.IsZero() {
				ok = false
			} else if t.After(last) {
				last = t
			}
		}
		if !ok {
			s.Timeouts++
			continue
		}
		samples = append(samples, last.Sub(ack))
	}
	s.Count = len(samples)
	for _, d := range samples {
		s.RawMs = append(s.RawMs, ms(d))
	}
	slices.Sort(samples)
	if len(samples) > 0 {
		s.P50Ms, s.P99Ms, s.MaxMs = ms(Percentile(samples, 50)), ms(Percentile(samples, 99)), ms(samples[len(samples)-1])
	}
	return s
}

// newPollClient is the client pollFor uses: a few kept connections per node.
func newPollClient() *http.Client {
	return &http.Client{Timeout: time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// pollFor GETs url until its body is want and returns when it first saw it
// (zero if ctx ended first). It polls every 500µs: finer than the figures
// it measures, coarse enough not to starve the nodes of CPU.
func pollFor(ctx context.Context, c *http.Client, url, want string) time.Time {
	for i := 0; i < 1_000_000 && ctx.Err() == nil; i++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.Do(req)
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
			resp.Body.Close()
			if string(b) == want {
				return time.Now()
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Microsecond):
		}
	}
	return time.Time{}
}

// measureApply drives route updates at the leader from cfg.ApplyWorkers
// writers for cfg.ApplyDuration (and at most cfg.MaxApplyWrites): every
// acknowledged write is one Raft entry committed and applied.
func measureApply(ctx context.Context, cfg ClusterConfig, leader string) ApplySummary {
	ctx, cancel := context.WithTimeout(ctx, cfg.ApplyDuration.D())
	defer cancel()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.ApplyWorkers}}
	defer c.CloseIdleConnections()
	var budget, errs atomic.Int64
	budget.Store(int64(cfg.MaxApplyWrites))
	lat := make([][]time.Duration, cfg.ApplyWorkers)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < cfg.ApplyWorkers; w++ {
		wg.Go(func() {
			name := "scale-" + strconv.Itoa(w)
			for i := 0; ctx.Err() == nil && budget.Add(-1) >= 0; i++ {
				spec := fmt.Sprintf(`{"listener":"prop","match":{"path":{"prefix":"/%s"}},"action":{"respond":{"status":200,"body":"%d"}}}`, name, i)
				t0 := time.Now()
				code, _, err := send(ctx, c, http.MethodPut, leader+"/v1/routes/"+name, "application/json", spec)
				if ctx.Err() != nil {
					return // cut off by the deadline: neither success nor failure
				}
				if err != nil || code != http.StatusOK {
					errs.Add(1)
					continue
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	s := ApplySummary{Workers: cfg.ApplyWorkers, Writes: int64(len(all)), Errors: errs.Load(), Seconds: el.Seconds()}
	if el > 0 {
		s.WritesPerSec = float64(len(all)) / el.Seconds()
	}
	if len(all) > 0 {
		s.P50Ms, s.P99Ms = ms(Percentile(all, 50)), ms(Percentile(all, 99))
	}
	return s
}
