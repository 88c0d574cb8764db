package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rafterlb/rafter/client"
	"github.com/rafterlb/rafter/cluster/tlsutil"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/testutil"
)

// testCluster runs three agents in this process on 127.0.0.1 with admin
// listeners opened here (so every address is known before the start) and
// Raft on free ports.
func testCluster(t testing.TB, token string) (*DevCluster, []string) {
	t.Helper()
	dir := t.TempDir()
	var lns []net.Listener
	var admins []string
	for i := range 3 {
		ln, err := net.Listen("tcp", DevIP(i)+":0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		lns = append(lns, ln)
		admins = append(admins, ln.Addr().String())
	}
	cfgs := DevConfigs(dir, 0, 0, admins)
	for i := range cfgs {
		cfgs[i].Token = token
		cfgs[i].AccessLog = "off"
		cfgs[i].AdminListener = lns[i]
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	for i := range cfgs {
		cfgs[i].Logger = log
	}
	dc := NewDevCluster(cfgs)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		if err := dc.StopAll(); err != nil {
			t.Errorf("stopping: %v", err)
		}
	})
	if err := dc.StartAll(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	return dc, admins
}

// startAgent runs an agent until ctx is done and waits until it serves;
// done receives what Run returned.
func startAgent(t *testing.T, ctx context.Context, c Config) (*Agent, <-chan error) {
	t.Helper()
	a, err := New(c)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case <-a.Ready():
	case err := <-done:
		t.Fatalf("agent exited early: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("agent not ready within 60s")
	}
	return a, done
}

// freePort is a port free a moment ago on every dev node's address
// (127.0.0.1-3, and 127.0.0.4 for a proxy node), where the data plane
// binds it. Free on 127.0.0.1 alone is not enough: a socket the kernel
// gave another node on 127.0.0.2 or .3 (its Raft or admin listener on
// port 0) may hold the same number, and that node's listener would then
// never bind.
func freePort(t testing.TB) int {
	t.Helper()
	for range 100 {
		ln, err := net.Listen("tcp", DevIP(0)+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		held := []net.Listener{ln}
		// One address past the dev nodes' too: the proxy node of
		// TestProxyAgentJoinsAndServes serves on DevIP(len(DevZones)).
		for i := 1; i <= len(DevZones); i++ {
			l, err := net.Listen("tcp", net.JoinHostPort(DevIP(i), strconv.Itoa(port)))
			if err != nil {
				break
			}
			held = append(held, l)
		}
		for _, l := range held {
			l.Close()
		}
		if len(held) == len(DevZones)+1 {
			return port
		}
	}
	t.Fatal("no port free on every dev node address (and the next) in 100 tries")
	return 0
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// waitLeader polls until every node reports the same leader.
func waitLeader(t testing.TB, clients []*client.Client) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		leader := ""
		agree := true
		for _, c := range clients {
			st, _, err := c.Status(ctx)
			if err != nil || st.Leader == "" || (leader != "" && st.Leader != leader) {
				agree = false
				break
			}
			leader = st.Leader
		}
		if agree {
			return leader
		}
		select {
		case <-ctx.Done():
			t.Fatal("no leader agreed on within 60s")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, what, cond)
}

func TestThreeAgentsApplyGetDelete(t *testing.T) {
	const token = "t0ken"
	_, admins := testCluster(t, token)
	var clients []*client.Client
	for _, a := range admins {
		clients = append(clients, client.New(a, token, nil))
	}
	leader := waitLeader(t, clients)
	// Write through a follower: the node forwards to the leader.
	var follower *client.Client
	for i, c := range clients {
		if "n"+strconv.Itoa(i+1) != leader {
			follower = c
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	backends, err := StartDemoBackends(3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(backends.Close)
	port := freePort(t)
	manifest := DemoManifest(port, backends.Addrs)
	res, err := follower.Apply(ctx, manifest, false)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if len(res.Changes) != 3 || res.Index == 0 {
		t.Fatalf("apply result %+v, want 3 changes and an index", res)
	}

	// Every node sees the route once it applied the entry.
	for i, c := range clients {
		eventually(t, "route on n"+strconv.Itoa(i+1), func() error {
			obj, _, err := c.Get(ctx, fsm.KindRoute, "demo")
			if err != nil {
				return err
			}
			if obj.ModifyIndex != res.Index {
				return errors.New("old index")
			}
			return nil
		})
	}
	// Every node proxies the listener on its own address to the demo pool.
	for i := range 3 {
		url := "http://" + net.JoinHostPort(DevIP(i), strconv.Itoa(port)) + "/"
		eventually(t, "proxy on n"+strconv.Itoa(i+1), func() error {
			resp, err := http.Get(url)
			if err != nil {
				return err
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.HasPrefix(string(body), "hello from demo-") {
				return errors.New("answer " + resp.Status + " " + string(body))
			}
			return nil
		})
	}

	// Applying the same manifest again changes nothing (a dry run is
	// answered from the follower's state, which now has the entry).
	again, err := follower.Apply(ctx, manifest, true)
	if err != nil || len(again.Changes) != 0 {
		t.Fatalf("dry run of the same manifest = %+v, %v; want no change", again, err)
	}
	items, meta, err := clients[0].List(ctx, fsm.KindPool)
	if err != nil || len(items) != 1 || items[0].Name != "demo" || meta.Index < res.Index {
		t.Fatalf("list pools = %+v %+v %v", items, meta, err)
	}

	// Validation errors come back as 400 with a field.
	_, err = clients[1].Put(ctx, fsm.KindListener, "bad", map[string]any{"port": 70000}, nil)
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
		t.Fatalf("bad put: %v, want a 400", err)
	}
	// A pool in use cannot go; the route first.
	if _, err := clients[2].Delete(ctx, fsm.KindPool, "demo", nil); !client.IsStatus(err, http.StatusConflict) {
		t.Fatalf("delete of a referenced pool: %v, want 409", err)
	}
	if _, err := clients[2].Delete(ctx, fsm.KindRoute, "demo", nil); err != nil {
		t.Fatalf("delete route: %v", err)
	}
	for _, c := range clients {
		eventually(t, "route gone", func() error {
			_, _, err := c.Get(ctx, fsm.KindRoute, "demo")
			if client.IsStatus(err, http.StatusNotFound) {
				return nil
			}
			return errors.New("still there")
		})
	}

	// Without the token the API refuses; the extra endpoints are mounted.
	if _, _, err := client.New(admins[0], "", nil).Status(ctx); !client.IsStatus(err, http.StatusUnauthorized) {
		t.Fatalf("status without token: %v, want 401", err)
	}
	for _, path := range []string{"/metrics", "/v1/health"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admins[0]+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(body) == 0 {
			t.Fatalf("%s: %d %q", path, resp.StatusCode, body)
		}
		if path == "/metrics" && !strings.Contains(string(body), "go_goroutines") {
			t.Fatalf("/metrics lacks go_goroutines")
		}
	}
}

func TestRunRefusesInvalidConfig(t *testing.T) {
	c := DefaultConfig()
	_, err := New(c)
	if err == nil || !strings.Contains(err.Error(), "--node-id") {
		t.Fatalf("New with no node id: %v", err)
	}
}

func TestAgentStopsOnCancel(t *testing.T) {
	c := DefaultConfig()
	c.NodeID, c.Zone, c.DataDir = "solo", "a", t.TempDir()
	c.AdminPort, c.RaftPort = 0, 0
	c.BootstrapExpect = 1
	c.AccessLog = filepath.Join(t.TempDir(), "access.log")
	ctx, cancel := context.WithCancel(context.Background())
	a, done := startAgent(t, ctx, c)
	cl := client.New(a.AdminAddr(), "", nil)
	eventually(t, "single node leader", func() error {
		st, _, err := cl.Status(ctx)
		if err != nil {
			return err
		}
		if st.Leader != "solo" {
			return errors.New("no leader yet")
		}
		return nil
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("agent returned %v after cancel", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("agent did not stop within 60s of cancel")
	}
	// The admin API is gone.
	if _, _, err := cl.Status(context.Background()); err == nil {
		t.Fatal("admin API still answers after stop")
	}
}

func TestAgentWithTLS(t *testing.T) {
	certs := t.TempDir()
	specs, err := tlsutil.ParseNodes("solo=127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := tlsutil.Init(certs, specs, false); err != nil {
		t.Fatal(err)
	}
	ca, cert, key := filepath.Join(certs, "ca.pem"), filepath.Join(certs, "solo.pem"), filepath.Join(certs, "solo-key.pem")
	c := DefaultConfig()
	c.NodeID, c.Zone, c.DataDir = "solo", "a", t.TempDir()
	c.AdminPort, c.RaftPort = 0, 0
	c.BootstrapExpect = 1
	c.AccessLog = "off"
	c.Token = "tls-token"
	c.TLSCA, c.TLSCert, c.TLSKey = ca, cert, key
	ctx, cancel := context.WithCancel(context.Background())
	a, done := startAgent(t, ctx, c)
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	})

	caOnly, err := tlsutil.ClientConfig(ca, "", "")
	if err != nil {
		t.Fatal(err)
	}
	withCert, err := tlsutil.ClientConfig(ca, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	cliCert, err := tlsutil.ClientConfig(ca, filepath.Join(certs, tlsutil.CLIFile), filepath.Join(certs, tlsutil.CLIKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	// A token is not enough: every caller presents a certificate.
	if _, _, err := client.New("https://"+a.AdminAddr(), "tls-token", caOnly).Status(ctx); err == nil {
		t.Fatal("admin API answered a client without a certificate")
	}
	for name, tc := range map[string]*tls.Config{"node cert": withCert, "cli cert": cliCert} {
		cl := client.New("https://"+a.AdminAddr(), "tls-token", tc)
		eventually(t, name+": leader over https", func() error {
			st, _, err := cl.Status(ctx)
			if err != nil {
				return err
			}
			if st.Leader != "solo" {
				return errors.New("no leader yet")
			}
			return nil
		})
	}
	// Plain HTTP is not served.
	if _, _, err := client.New("http://"+a.AdminAddr(), "tls-token", nil).Status(ctx); err == nil {
		t.Fatal("plain http accepted")
	}
}
