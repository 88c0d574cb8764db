package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rafterlb/rafter/client"
)

// DevZones are the zones of `rafter dev`'s nodes, n1 in the first.
var DevZones = [...]string{"a", "b", "c"}

// ApplyWhenLeader applies manifest once a leader is elected, retrying
// while the cluster forms.
func ApplyWhenLeader(ctx context.Context, c *client.Client, manifest []byte, budget time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		st, _, err := c.Status(ctx)
		if err == nil && st.Leader != "" {
			if _, err = c.Apply(ctx, manifest, false); err == nil {
				return nil
			}
			// A validation error will not go away by retrying.
			if client.IsStatus(err, http.StatusBadRequest) {
				return err
			}
		} else if err == nil {
			err = errors.New("no leader elected yet")
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// DemoBackends are small HTTP servers that say who they are.
type DemoBackends struct {
	Addrs   []string
	servers []*http.Server
	wg      sync.WaitGroup
}

// StartDemoBackends starts n backends on 127.0.0.1 that say who they are.
func StartDemoBackends(n int) (*DemoBackends, error) {
	b := &DemoBackends{}
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("demo backend: %w", err)
		}
		msg := fmt.Sprintf("hello from demo-%d (zone %s)\n", i+1, DevZones[i%len(DevZones)])
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
		mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			io.WriteString(w, msg)
		})
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		b.Addrs = append(b.Addrs, ln.Addr().String())
		b.servers = append(b.servers, srv)
		b.wg.Go(func() { _ = srv.Serve(ln) })
	}
	return b, nil
}

// Close stops the backends and waits for them.
func (b *DemoBackends) Close() {
	for _, s := range b.servers {
		s.Close()
	}
	b.wg.Wait()
}

// DemoManifest is the manifest `rafter dev` applies: listener web on port,
// pool demo over backends (zones a, b, c in turn), route demo to it.
func DemoManifest(port int, backends []string) []byte {
	var sb strings.Builder
	fmt.Fprintf(&sb, "kind: listener\nname: web\nspec: {port: %d}\n---\n", port)
	sb.WriteString("kind: pool\nname: demo\nspec:\n  balancer: round_robin\n  zone_aware: true\n")
	sb.WriteString("  health_check: {path: /healthz, interval: 2s, timeout: 1s, rise: 2, fall: 3}\n  backends:\n")
	for i, a := range backends {
		fmt.Fprintf(&sb, "    - {addr: %q, zone: %s, weight: 1}\n", a, DevZones[i%len(DevZones)])
	}
	sb.WriteString("---\nkind: route\nname: demo\nspec:\n  listener: web\n  match: {path: {prefix: /}}\n  action:\n    split: [{pool: demo, weight: 100}]\n")
	return []byte(sb.String())
}

// DevIP is the loopback address of `rafter dev`'s node i (from 0).
func DevIP(i int) string { return "127.0.0." + strconv.Itoa(i+1) }

// DevConfigs are the configurations of `rafter dev`'s nodes: n1, n2, n3 in
// zones a, b, c on DevIP(0..2), state under dir, forming one cluster
// through the admin addresses in join.
func DevConfigs(dir string, adminPort, raftPort int, join []string) []Config {
	cfgs := make([]Config, len(DevZones))
	for i, zone := range DevZones {
		c := DefaultConfig()
		c.NodeID = "n" + strconv.Itoa(i+1)
		c.Zone = zone
		c.DataDir = filepath.Join(dir, c.NodeID)
		c.Bind = DevIP(i)
		c.AdminPort, c.RaftPort = adminPort, raftPort
		c.BootstrapExpect = len(DevZones)
		c.Join = join
		cfgs[i] = c
	}
	return cfgs
}
