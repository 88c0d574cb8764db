package systemtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/rafterlb/rafter/internal/testutil"
)

// BenchmarkPropagation measures, on three agents, the time from sending
// a PUT of one route (to the leader) until every node's data plane
// answers with the new version, polled every 0.5 ms from the send. The
// "normal" configuration holds 10 routes, "10k" holds 10,000 more.
func BenchmarkPropagation(b *testing.B) {
	for _, tc := range []struct {
		name   string
		routes int
	}{{"normal", 10}, {"10k", 10000}} {
		b.Run(tc.name, func(b *testing.B) { benchPropagation(b, tc.routes) })
	}
}

func benchPropagation(b *testing.B, routes int) {
	c, leader, _ := benchCluster(b)
	ports, err := freeDataPort(c)
	if err != nil {
		b.Fatal(err)
	}
	var m bytes.Buffer
	fmt.Fprintf(&m, "kind: listener\nname: web\nspec: {port: %d}\n", ports)
	for r := range routes {
		fmt.Fprintf(&m, "---\nkind: route\nname: route-%05d\nspec:\n  listener: web\n  match: {hosts: [svc%d.example.com], path: {prefix: /api/%d}}\n  action: {respond: {status: 200, body: r%d}}\n", r, r, r, r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if r, err := c.Do(ctx, leader, "POST", "/v1/apply", m.Bytes()); err != nil || r.Status != http.StatusOK {
		b.Fatalf("apply: %v %+v", err, r)
	}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2}}
	version := func(a *Agent) string {
		resp, err := hc.Get("http://" + net.JoinHostPort(a.IP, strconv.Itoa(ports)) + "/probe")
		if err != nil {
			return ""
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(body)
	}
	put := func(v string) {
		spec := fmt.Sprintf(`{"listener":"web","match":{"path":{"prefix":"/probe"}},"action":{"respond":{"status":200,"body":%q}}}`, v)
		r, err := c.Do(ctx, leader, "PUT", "/v1/routes/probe", []byte(spec))
		if err != nil || r.Status != http.StatusOK {
			b.Fatalf("put %s: %v %+v", v, err, r)
		}
	}
	// Every node serves the probe route before the measurement starts.
	put("v0")
	waitVersion(b, c, version, "v0", time.Minute)
	lat := make([]time.Duration, 0, b.N)
	i := 0
	for b.Loop() {
		i++
		v := "v" + strconv.Itoa(i)
		start := time.Now()
		done := make(chan struct{})
		go func() { defer close(done); put(v) }()
		waitVersion(b, c, version, v, 10*time.Second)
		lat = append(lat, time.Since(start))
		<-done
	}
	reportPercentiles(b, lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "max-µs")
	}
}

// waitVersion polls every node every 0.5 ms until each answered want once.
func waitVersion(b *testing.B, c *Cluster, version func(*Agent) string, want string, within time.Duration) {
	pending := map[*Agent]bool{}
	for _, a := range c.Agents {
		pending[a] = true
	}
	deadline := time.Now().Add(within)
	for len(pending) > 0 {
		for a := range pending {
			if version(a) == want {
				delete(pending, a)
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d nodes did not serve %s within %s", len(pending), want, within)
		}
		if len(pending) > 0 {
			time.Sleep(500 * time.Microsecond)
		}
	}
}

// freeDataPort is a port free on every agent's address.
func freeDataPort(c *Cluster) (int, error) {
	var ips []string
	for _, a := range c.Agents {
		ips = append(ips, a.IP)
	}
	ports, err := testutil.FreePorts(ips, 1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}
