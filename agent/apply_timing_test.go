package agent

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/rafterlb/rafter/client"
	"github.com/rafterlb/rafter/internal/testutil"
)

// manifest10k is a manifest of one listener and routes routes, each
// answering itself (respond) or, with pools, splitting to one of 100
// pools of one backend each.
func manifest10k(port, routes int, pools bool) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "kind: listener\nname: web\nspec: {port: %d}\n", port)
	if pools {
		for p := range 100 {
			fmt.Fprintf(&b, "---\nkind: pool\nname: pool-%03d\nspec:\n  balancer: round_robin\n  backends:\n  - {addr: 127.0.0.1:%d}\n", p, 20000+p)
		}
	}
	for r := range routes {
		action := fmt.Sprintf("respond: {status: 200, body: r%d}", r)
		if pools {
			action = fmt.Sprintf("split: [{pool: pool-%03d, weight: 100}]", r%100)
		}
		fmt.Fprintf(&b, "---\nkind: route\nname: route-%05d\nspec:\n  listener: web\n  match: {hosts: [svc%d.example.com], path: {prefix: /api/%d}}\n  action: {%s}\n", r, r, r, action)
	}
	return b.Bytes()
}

// BenchmarkApplyUnchanged10k is `rafter apply -f` of a 10,000-route
// manifest that the three-node cluster already holds, sent as the CLI
// sends it (client.Apply) to the leader or to a follower (which forwards
// it): the time from the request to the answer "unchanged".
func BenchmarkApplyUnchanged10k(b *testing.B) {
	for _, variant := range []struct {
		name  string
		pools bool
	}{{"respond", false}, {"pools", true}} {
		for _, via := range []string{"leader", "follower"} {
			b.Run(variant.name+"/"+via, func(b *testing.B) { benchApplyUnchanged(b, variant.pools, via) })
		}
	}
}

func benchApplyUnchanged(b *testing.B, pools bool, via string) {
	_, admins := testCluster(b, "")
	var clients []*client.Client
	for _, a := range admins {
		clients = append(clients, client.New(a, "", nil))
	}
	leader := waitLeader(b, clients)
	var c *client.Client
	for i := range clients {
		if ("n"+strconv.Itoa(i+1) == leader) == (via == "leader") {
			c = clients[i]
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	port := freePort(b)
	m := manifest10k(port, 10000, pools)
	start := time.Now()
	// A busy machine may move the leadership while the first, large
	// entry is written: try again a few times.
	for attempt := 1; ; attempt++ {
		_, err := c.Apply(ctx, m, false)
		if err == nil {
			break
		}
		if attempt == 5 {
			b.Fatalf("first apply: %v", err)
		}
		b.Logf("first apply, attempt %d: %v", attempt, err)
	}
	// Measured once every data plane serves the last route, so that
	// no table build runs beside the loop.
	for i := range admins {
		waitServed(b, fmt.Sprintf("%s:%d", DevIP(i), port), "svc9999.example.com", "/api/9999")
	}
	b.ReportMetric(float64(time.Since(start).Milliseconds()), "first-apply-ms")
	b.ResetTimer()
	for b.Loop() {
		res, err := c.Apply(ctx, m, false)
		for attempt := 1; err != nil && attempt < 3; attempt++ {
			// An election on a starved machine: the next leader answers.
			b.Logf("apply, attempt %d: %v", attempt, err)
			waitLeader(b, clients)
			res, err = c.Apply(ctx, m, false)
		}
		if err != nil {
			b.Fatalf("apply: %v", err)
		}
		if len(res.Changes) != 0 {
			b.Fatalf("re-apply changed %d objects", len(res.Changes))
		}
	}
}

// waitServed polls until the data plane at addr routes host and path
// (anything but its 404 for an unknown route).
func waitServed(tb testing.TB, addr, host, path string) {
	tb.Helper()
	hc := &http.Client{Timeout: 2 * time.Second}
	testutil.Eventually(tb, 2*time.Minute, "route served at "+addr, func() error {
		req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			return err
		}
		req.Host = host
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
}
