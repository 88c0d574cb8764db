package systemtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafterlb/rafter/internal/testutil"
)

// zoneBackend is a backend in one zone that counts the proxied requests
// it receives (health checks excluded) and answers its name. While
// failing, /healthz answers 500 and every other request 503.
type zoneBackend struct {
	name, zone string
	srv        *httptest.Server
	hits       atomic.Int64
	failing    atomic.Bool
}

func startZoneBackend(t *testing.T, zone string, i int) *zoneBackend {
	t.Helper()
	b := &zoneBackend{name: fmt.Sprintf("zone-%s-%d", zone, i), zone: zone}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			if b.failing.Load() {
				http.Error(w, "failing on purpose", http.StatusInternalServerError)
				return
			}
			fmt.Fprintln(w, "ok")
			return
		}
		b.hits.Add(1)
		if b.failing.Load() {
			http.Error(w, "failing on purpose", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "%s zone=%s", b.name, b.zone)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *zoneBackend) Addr() string { return b.srv.Listener.Addr().String() }

// zoneRig is a 3-node cluster (n1..n3 in zones a, b, c) proxying pool
// "app" with two backends in each zone.
type zoneRig struct {
	c        *Cluster
	port     int
	client   *http.Client
	backends []*zoneBackend
}

// zoneHits is the number of proxied requests per zone so far.
func (z *zoneRig) zoneHits() map[string]int64 {
	m := map[string]int64{}
	for _, b := range z.backends {
		m[b.zone] += b.hits.Load()
	}
	return m
}

func (z *zoneRig) inZone(zone string) []*zoneBackend {
	var out []*zoneBackend
	for _, b := range z.backends {
		if b.zone == zone {
			out = append(out, b)
		}
	}
	return out
}

func (z *zoneRig) agent(zone string) *Agent {
	for _, a := range z.c.Agents {
		if a.Zone == zone {
			return a
		}
	}
	z.c.t.Fatalf("no agent in zone %s", zone)
	return nil
}

// health waits until every node judges each backend of zones as healthy says.
func (z *zoneRig) waitZonesHealth(t *testing.T, healthy bool, zones ...string) {
	t.Helper()
	want := map[string]bool{}
	for _, zone := range zones {
		for _, b := range z.inZone(zone) {
			want[b.Addr()] = healthy
		}
	}
	z.c.waitHealth(t, "app", want)
}

// burst sends n GETs, round-robin over agents, and fails the test on any
// answer that is not a 200 from a backend; it returns the per-zone hits
// the backends counted during the burst and the zones that answered.
func (z *zoneRig) burst(t *testing.T, n int, agents ...*Agent) (hits map[string]int64, answered map[string]int) {
	t.Helper()
	before := z.zoneHits()
	answered = map[string]int{}
	for i := 0; i < n; i++ {
		a := agents[i%len(agents)]
		code, body, err := get(z.client, proxyURL(a, z.port, "/"))
		if err != nil || code != http.StatusOK || !strings.HasPrefix(body, "zone-") {
			t.Fatalf("request %d of %d via %s: %d %q %v", i, n, a.ID, code, body, err)
		}
		answered[strings.TrimPrefix(body[strings.Index(body, "zone="):], "zone=")]++
	}
	after := z.zoneHits()
	hits = map[string]int64{}
	for zone, v := range after {
		hits[zone] = v - before[zone]
	}
	return hits, answered
}

func newZoneRig(t *testing.T) *zoneRig {
	t.Helper()
	c := StartCluster(t, bin, 3)
	leader := c.Leader(30 * time.Second)
	z := &zoneRig{c: c, port: dataPort(t, c.Agents), client: newProxyClient(nil)}
	var bs []map[string]any
	for _, zone := range []string{"a", "b", "c"} {
		for i := 1; i <= 2; i++ {
			b := startZoneBackend(t, zone, i)
			z.backends = append(z.backends, b)
			bs = append(bs, map[string]any{"addr": b.Addr(), "zone": zone})
		}
	}
	c.putJSON(t, leader, "listeners", "web", map[string]any{"port": z.port})
	c.putJSON(t, leader, "pools", "app", map[string]any{
		"zone_aware": true,
		// One healthy backend of two keeps a node's traffic in its zone,
		// so a single slow health check does not move it.
		"zone_min_healthy_percent": 50,
		"health_check":             map[string]any{"path": "/healthz", "interval": "200ms", "timeout": "200ms", "rise": 2, "fall": 2},
		"backends":                 bs,
	})
	route := routeSpec("/", "main", 1, leg{"app", 100})
	// A request that meets a failing backend before the checks judge it
	// is retried on another one, so clients see no failure.
	route["retries"] = map[string]any{"attempts": 2, "on": []string{"connect-failure", "503"}}
	c.putJSON(t, leader, "routes", "main", route)
	z.waitZonesHealth(t, true, "a", "b", "c")
	for _, a := range c.Agents {
		waitServes(t, z.client, a, z.port, "/", func(b string) bool { return strings.Contains(b, "zone="+a.Zone) }, "its own zone")
	}
	return z
}

// zoneCLI runs the rafter binary's zone command against agent a.
func (z *zoneRig) zoneCLI(t *testing.T, a *Agent, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append([]string{"zone"}, args...)
	full = append(full, "--addr", a.URL(), "--token", z.c.Token)
	var out []byte
	var err error
	// The CLI answers 503 while there is no leader; the cluster has one,
	// but a retry keeps a leadership blip from failing the test.
	for attempt := 0; attempt < 20; attempt++ {
		out, err = exec.CommandContext(ctx, z.c.Bin, full...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "503") {
			break
		}
		time.Sleep(250 * time.Millisecond) // back-off between retries, not ordering
	}
	if err != nil {
		t.Fatalf("rafter %s: %v\n%s", strings.Join(full, " "), err, out)
	}
	return string(out)
}

// waitEvacuated polls every agent's admin API until zone's state is evacuated.
func (z *zoneRig) waitEvacuated(t *testing.T, zone string, evacuated bool) {
	t.Helper()
	for _, a := range z.c.Agents {
		testutil.Eventually(t, 20*time.Second, fmt.Sprintf("%s to see zone %s evacuated=%v", a.ID, zone, evacuated), func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			r, err := z.c.Do(ctx, a, "GET", "/v1/zones", nil)
			if err != nil {
				return err
			}
			var list struct {
				Items []struct {
					Zone      string `json:"zone"`
					Evacuated bool   `json:"evacuated"`
				} `json:"items"`
			}
			if err := json.Unmarshal(r.Body, &list); err != nil {
				return fmt.Errorf("%d %s: %w", r.Status, r.Body, err)
			}
			for _, it := range list.Items {
				if it.Zone == zone {
					if it.Evacuated != evacuated {
						return fmt.Errorf("evacuated=%v", it.Evacuated)
					}
					return nil
				}
			}
			return errors.New("zone not listed")
		})
	}
}

// waitSettled polls a's listener until `streak` answers in a row satisfy
// ok: the data plane compiles a new state shortly after the node applied it.
func (z *zoneRig) waitSettled(t *testing.T, a *Agent, what string, ok func(body string) bool) {
	t.Helper()
	const streak = 12
	n := 0
	testutil.Eventually(t, 20*time.Second, fmt.Sprintf("%s to %s", a.ID, what), func() error {
		for i := 0; i < streak*2; i++ {
			code, body, err := get(z.client, proxyURL(a, z.port, "/"))
			if err != nil || code != http.StatusOK {
				return fmt.Errorf("%d %q %v", code, body, err)
			}
			if !ok(body) {
				n = 0
				return fmt.Errorf("answered %q", body)
			}
			if n++; n >= streak {
				return nil
			}
		}
		return nil
	})
}

// TestZoneAwareFailoverAndEvacuation: node a keeps its traffic in zone a;
// when zone a's backends fail, its requests spill to b and c without one
// failed request; an evacuated zone b gets no request from any node, and
// gets traffic again once restored.
func TestZoneAwareFailoverAndEvacuation(t *testing.T) {
	z := newZoneRig(t)
	nodeA, nodeB := z.agent("a"), z.agent("b")

	// Each node prefers its own zone.
	const n = 60
	for _, a := range z.c.Agents {
		hits, _ := z.burst(t, n, a)
		if hits[a.Zone] != n {
			t.Fatalf("%s (zone %s): backend hits per zone %v, want all %d in %s", a.ID, a.Zone, hits, n, a.Zone)
		}
	}

	// Zone a's backends fail. Requests to node a keep flowing while its
	// checks notice; every one must succeed, retried on another backend.
	failedFrom := z.zoneHits()["a"]
	for _, b := range z.inZone("a") {
		b.failing.Store(true)
	}
	sent, answered := 0, map[string]int{}
	testutil.Eventually(t, 30*time.Second, "node a to judge zone a's backends unhealthy", func() error {
		for i := 0; i < 20; i++ {
			_, got := z.burst(t, 1, nodeA)
			sent++
			for k, v := range got {
				answered[k] += v
			}
		}
		got, err := z.c.health(nodeA, "app")
		if err != nil {
			return err
		}
		for _, b := range z.inZone("a") {
			if got[b.Addr()].Healthy {
				return fmt.Errorf("%s still healthy after %d requests", b.name, sent)
			}
		}
		return nil
	})
	t.Logf("zone a failing: %d requests to node a before its checks judged zone a, %d tries reached zone a's failing backends and were retried",
		sent, z.zoneHits()["a"]-failedFrom)
	if answered["a"] != 0 || answered["b"]+answered["c"] != sent {
		t.Fatalf("while zone a failed, answers came from %v of %d requests", answered, sent)
	}
	hits, _ := z.burst(t, n, nodeA)
	if hits["a"] != 0 || hits["b"] == 0 || hits["c"] == 0 {
		t.Fatalf("zone a failed: node a's backend hits per zone %v, want none in a, some in b and c", hits)
	}

	// Zone a recovers and takes node a's traffic back.
	for _, b := range z.inZone("a") {
		b.failing.Store(false)
	}
	z.waitZonesHealth(t, true, "a")
	z.waitSettled(t, nodeA, "serve from zone a again", func(b string) bool { return strings.Contains(b, "zone=a") })

	// Evacuate zone b (through the CLI): no node sends it anything.
	out := z.zoneCLI(t, nodeA, "evacuate", "b")
	if !strings.Contains(out, "zone b evacuated at index") {
		t.Fatalf("rafter zone evacuate b: %q", out)
	}
	z.waitEvacuated(t, "b", true)
	for _, a := range z.c.Agents {
		z.waitSettled(t, a, "stop serving from zone b", func(b string) bool { return !strings.Contains(b, "zone=b") })
	}
	hits, _ = z.burst(t, 3*n, z.c.Agents...)
	if hits["b"] != 0 {
		t.Fatalf("evacuated zone b received %d of %d requests (hits per zone %v)", hits["b"], 3*n, hits)
	}
	if hits["a"] == 0 || hits["c"] == 0 {
		t.Fatalf("with b evacuated, hits per zone %v: want a and c served", hits)
	}
	if list := z.zoneCLI(t, nodeB, "list"); !strings.Contains(list, "ZONE") || !zoneRowEvacuated(list, "b") {
		t.Fatalf("rafter zone list does not show b evacuated:\n%s", list)
	}

	// Restore zone b (through the API, via a follower or the leader alike):
	// node b serves from its own zone again.
	z.c.write(t, nodeB, "DELETE", "/v1/zones/b/evacuate", nil)
	z.waitEvacuated(t, "b", false)
	z.waitSettled(t, nodeB, "serve from zone b again", func(b string) bool { return strings.Contains(b, "zone=b") })
	hits, _ = z.burst(t, n, nodeB)
	if hits["b"] != n {
		t.Fatalf("zone b restored: node b's backend hits per zone %v, want all %d in b", hits, n)
	}
}

// zoneRowEvacuated reports whether the `rafter zone list` table has zone
// marked evacuated.
func zoneRowEvacuated(table, zone string) bool {
	for _, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == zone {
			return f[1] == "yes"
		}
	}
	return false
}
