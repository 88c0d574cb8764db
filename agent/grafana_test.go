package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rafterlb/rafter/client"
	"github.com/rafterlb/rafter/fsm"
)

// dashboardQueries returns every PromQL expression of the Grafana
// dashboard (panel targets, rows included, and templating queries), each
// with where it is.
func dashboardQueries(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		Expr string `json:"expr"`
	}
	type panel struct {
		Title   string   `json:"title"`
		Type    string   `json:"type"`
		Targets []target `json:"targets"`
		Panels  []panel  `json:"panels"`
	}
	var dash struct {
		Title      string  `json:"title"`
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	out := map[string]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for i, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q: target %d has an empty expression", p.Title, i)
				}
				out[fmt.Sprintf("panel %q target %d", p.Title, i)] = tg.Expr
			}
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	for _, v := range dash.Templating.List {
		if v.Type == "query" {
			out["variable "+v.Name] = v.Definition
		}
	}
	if len(out) < 20 {
		t.Fatalf("%s: only %d queries", path, len(out))
	}
	return out
}

// exposedNames are the sample names (histograms as _bucket, _sum and
// _count) of a text-format scrape.
func exposedNames(body string) map[string]bool {
	out := map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			out[line[:i]] = true
		}
	}
	return out
}

// TestGrafanaDashboardUsesExportedMetrics checks that every metric the
// dashboard's queries name is one a running node exports: a three-node
// cluster serves traffic (successes, a backend that refuses connections,
// a malformed request), then the leader's /metrics must hold every name.
func TestGrafanaDashboardUsesExportedMetrics(t *testing.T) {
	queries := dashboardQueries(t, "../deploy/grafana/rafter.json")
	metric := regexp.MustCompile(`\brafter_[a-z0-9_]+\b`)
	want := map[string][]string{} // name -> where
	for where, q := range queries {
		names := metric.FindAllString(q, -1)
		if len(names) == 0 {
			t.Errorf("%s names no rafter metric: %s", where, q)
		}
		for _, n := range names {
			want[n] = append(want[n], where)
		}
	}

	_, admins := testCluster(t, "tok")
	var clients []*client.Client
	for _, a := range admins {
		clients = append(clients, client.New(a, "tok", nil))
	}
	leader := waitLeader(t, clients)
	li, err := strconv.Atoi(strings.TrimPrefix(leader, "n"))
	if err != nil {
		t.Fatalf("leader %q", leader)
	}
	lc, leaderAdmin, leaderIP := clients[li-1], admins[li-1], DevIP(li-1)

	backends, err := StartDemoBackends(1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(backends.Close)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	port := freePort(t)
	for _, o := range []struct {
		kind fsm.Kind
		name string
		spec any
	}{
		{fsm.KindListener, "web", fsm.ListenerSpec{Port: port}},
		{fsm.KindPool, "app", fsm.PoolSpec{Backends: []fsm.Backend{{Addr: backends.Addrs[0]}, {Addr: deadAddr}}}},
		{fsm.KindRoute, "app", fsm.RouteSpec{Listener: "web", Action: fsm.RouteAction{Split: []fsm.WeightedPool{{Pool: "app", Weight: 1}}}}},
	} {
		if _, err := lc.Put(ctx, o.kind, o.name, o.spec, nil); err != nil {
			t.Fatalf("put %s %s: %v", o.kind, o.name, err)
		}
	}
	proxy := net.JoinHostPort(leaderIP, strconv.Itoa(port))
	eventually(t, "traffic through the leader's proxy", func() error {
		ok := 0
		for i := 0; i < 20; i++ {
			resp, err := http.Get("http://" + proxy + "/")
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				ok++
			}
		}
		if ok == 0 {
			return fmt.Errorf("no request answered 200")
		}
		return nil
	})
	// A request fasthttp refuses while parsing (two Host fields).
	if c, err := net.DialTimeout("tcp", proxy, 5*time.Second); err == nil {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
		_, _ = io.Copy(io.Discard, c)
		c.Close()
	}

	var missing []string
	eventually(t, "every metric of the dashboard exported by the leader", func() error {
		body, err := scrape(leaderAdmin, "tok")
		if err != nil {
			return err
		}
		got := exposedNames(body)
		missing = missing[:0]
		for n, where := range want {
			if !got[n] {
				missing = append(missing, n+" (in "+strings.Join(where, "; ")+")")
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 {
			return fmt.Errorf("not exported:\n%s", strings.Join(missing, "\n"))
		}
		return nil
	})
	t.Logf("%d queries name %d metrics, all exported", len(queries), len(want))
}
