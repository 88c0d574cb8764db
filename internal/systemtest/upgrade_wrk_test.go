package systemtest

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/rafterlb/rafter/internal/testutil"
)

// TestUpgradeUnderWrk upgrades a follower while wrk (2 threads, 50
// keep-alive connections) loads its listener: wrk counts no socket error
// and no answer other than 2xx/3xx, the load spans the whole upgrade, and
// membership and VIP assignments stay as they were.
func TestUpgradeUnderWrk(t *testing.T) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		t.Fatal("wrk is not installed: apt-get install wrk (make deps installs it)")
	}
	c := StartCluster(t, bin, 3)
	port, backend := upgradeScenario(t, c)
	leader := c.Leader(30 * time.Second)
	target := c.Agents[(slices.Index(c.Agents, leader)+1)%len(c.Agents)]
	before := clusterView(t, c, leader)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, wrk, "-t2", "-c50", "-d25s", "--timeout", "5s", proxyURL(target, port, "/"))
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting wrk: %v", err)
	}
	var waitErr error
	finished := make(chan struct{})
	go func() {
		waitErr = cmd.Wait()
		close(finished)
	}()
	defer func() {
		cancel()
		<-finished
	}()

	mark := backend.hits.Load()
	testutil.WaitFor(t, 20*time.Second, "wrk's requests to reach the backend", func() bool { return backend.hits.Load() >= mark+1000 })
	pid := upgrade(t, target, target.process().Pid())
	waitWhole(t, c, target)
	mark = backend.hits.Load()
	testutil.WaitFor(t, 20*time.Second, "wrk's requests served by the new process", func() bool { return backend.hits.Load() >= mark+1000 })
	select {
	case <-finished:
		t.Fatalf("wrk ended before the upgrade was over, so its figures do not span it: %v\n%s", waitErr, out.String())
	default:
	}
	<-finished
	if waitErr != nil {
		t.Fatalf("wrk: %v\n%s", waitErr, out.String())
	}

	res, err := parseWrk(out.String())
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Logf("wrk across the upgrade of %s (new pid %d): %d requests, socket errors %d, non-2xx/3xx %d", target.ID, pid, res.requests, res.socketErrors, res.non2xx)
	if res.requests == 0 || res.socketErrors != 0 || res.non2xx != 0 {
		t.Fatalf("requests failed across the upgrade:\n%s", out.String())
	}
	after := clusterView(t, c, c.Leader(10*time.Second))
	if !slices.Equal(before.Members, after.Members) {
		t.Errorf("membership changed: before %q, after %q", before.Members, after.Members)
	}
	if !slices.Equal(before.VIPs, after.VIPs) {
		t.Errorf("VIP assignments changed: before %q, after %q", before.VIPs, after.VIPs)
	}
}

type wrkResult struct{ requests, socketErrors, non2xx int64 }

var (
	wrkRequests = regexp.MustCompile(`(\d+) requests in `)
	wrkSocket   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// parseWrk reads wrk's summary; the socket-error and non-2xx lines are
// printed only when there are some.
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	m := wrkRequests.FindStringSubmatch(out)
	if m == nil {
		return r, errors.New("wrk printed no summary")
	}
	r.requests, _ = strconv.ParseInt(m[1], 10, 64)
	if m := wrkSocket.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.socketErrors += n
		}
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		r.non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	return r, nil
}

func TestParseWrk(t *testing.T) {
	ok := "Running 25s test @ http://127.0.0.2:1/\n  2 threads and 50 connections\n  812345 requests in 25.00s, 100.00MB read\nRequests/sec: 32493.80\n"
	bad := ok + "  Socket errors: connect 0, read 2, write 1, timeout 3\n  Non-2xx or 3xx responses: 7\n"
	for _, tc := range []struct {
		out  string
		want wrkResult
	}{
		{ok, wrkResult{requests: 812345}},
		{bad, wrkResult{requests: 812345, socketErrors: 6, non2xx: 7}},
	} {
		got, err := parseWrk(tc.out)
		if err != nil || got != tc.want {
			t.Errorf("parseWrk = %+v, %v; want %+v", got, err, tc.want)
		}
	}
	if _, err := parseWrk("unable to connect"); err == nil {
		t.Error("parseWrk of no summary: no error")
	}
}
