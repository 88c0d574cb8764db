package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/rafterlb/rafter/client"
	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/fsm"
)

// TestRecoverAfterQuorumLoss loses two of three nodes for good (their data
// is deleted), recovers the survivor into a one-node cluster, grows it
// back to three with fresh nodes and checks every resource survived.
func TestRecoverAfterQuorumLoss(t *testing.T) {
	dir := t.TempDir()
	adminPort, raftPort := freePort(t), freePort(t)
	addr := func(i int) string { return net.JoinHostPort(DevIP(i), strconv.Itoa(adminPort)) }
	join := []string{addr(0), addr(1), addr(2)}
	cfgs := DevConfigs(dir, adminPort, raftPort, join)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	for i := range cfgs {
		cfgs[i].AccessLog = "off"
		cfgs[i].Logger = log
	}
	dc := NewDevCluster(cfgs)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		dc.StopAll()
	})
	if err := dc.StartAll(ctx); err != nil {
		t.Fatal(err)
	}
	n1 := client.New(addr(0), "", nil)
	clients := []*client.Client{n1, client.New(addr(1), "", nil), client.New(addr(2), "", nil)}
	waitLeader(t, clients)

	// Resources of every kind, in several entries.
	backends, err := StartDemoBackends(3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(backends.Close)
	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	defer wcancel()
	if err := ApplyWhenLeader(wctx, n1, DemoManifest(freePort(t), backends.Addrs), 30*time.Second); err != nil {
		t.Fatalf("apply: %v", err)
	}
	for i := range 5 {
		spec := map[string]any{"listener": "web", "match": map[string]any{"path": map[string]any{"exact": fmt.Sprintf("/r%d", i)}},
			"action": map[string]any{"respond": map[string]any{"status": 200, "body": fmt.Sprintf("r%d\n", i)}}}
		// Puts are retried: under load a leader election may come between.
		eventually(t, fmt.Sprintf("route r%d stored", i), func() error {
			_, err := n1.Put(wctx, fsm.KindRoute, fmt.Sprintf("r%d", i), spec, nil)
			return err
		})
	}
	vip := map[string]any{"provider": "none", "home_node": "n1"}
	eventually(t, "vip stored", func() error {
		_, err := n1.Put(wctx, fsm.KindVIP, "edge", vip, nil)
		return err
	})
	before, beforeCount := exportConfig(t, wctx, n1)

	// n2 and n3 are lost for good; n1 alone has no quorum.
	for _, id := range []string{"n2", "n3"} {
		if err := dc.Stop(id); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(cfgs[slices.IndexFunc(cfgs, func(c Config) bool { return c.NodeID == id })].DataDir); err != nil {
			t.Fatal(err)
		}
	}
	opts := cluster.RecoverOptions{DataDir: cfgs[0].DataDir, NodeID: "n1", LockTimeout: 200 * time.Millisecond}
	if _, err := cluster.Recover(opts); !errors.Is(err, cluster.ErrAgentRunning) {
		t.Fatalf("Recover while the agent runs: %v, want ErrAgentRunning", err)
	}
	if err := dc.Stop("n1"); err != nil {
		t.Fatal(err)
	}
	res, err := cluster.Recover(opts)
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if res.Objects != beforeCount || len(res.Voters) != 1 || string(res.Voters[0].ID) != "n1" {
		t.Fatalf("Recover = %+v; want %d objects and the voter n1", res, beforeCount)
	}

	// n1 starts as a one-node cluster with everything it had.
	if err := dc.Start(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	waitLeader(t, clients[:1])
	for _, id := range []string{"n2", "n3"} {
		eventually(t, "removing "+id, func() error { return n1.Remove(wctx, id) })
	}
	// Two fresh nodes join it.
	for i := 3; i < 5; i++ {
		c := DefaultConfig()
		c.NodeID = "n" + strconv.Itoa(i+1)
		c.Zone = DevZones[i-2]
		c.DataDir = t.TempDir()
		c.Bind = DevIP(i)
		c.AdminPort, c.RaftPort = adminPort, raftPort
		c.Join = []string{addr(0)}
		c.AccessLog = "off"
		c.Logger = log
		startAgent(t, ctx, c)
	}
	fresh := []*client.Client{n1, client.New(addr(3), "", nil), client.New(addr(4), "", nil)}
	eventually(t, "three voters", func() error {
		st, _, err := n1.Status(wctx)
		if err != nil {
			return err
		}
		var ids []string
		for _, m := range st.Members {
			if m.Suffrage == "Voter" {
				ids = append(ids, m.ID)
			}
		}
		slices.Sort(ids)
		if !slices.Equal(ids, []string{"n1", "n4", "n5"}) {
			return fmt.Errorf("voters %v", ids)
		}
		return nil
	})
	for i, c := range fresh {
		eventually(t, "config on node "+strconv.Itoa(i), func() error {
			after, n := exportConfig(t, wctx, c)
			if !bytes.Equal(after, before) {
				return fmt.Errorf("%d objects differ from the %d before", n, beforeCount)
			}
			return nil
		})
	}
	t.Logf("resources before the loss: %d; after recovery on n1, n4, n5: %d each (state index %d)", beforeCount, beforeCount, res.Index)
}

// exportConfig is a node's whole configuration as a manifest (no indexes,
// so that it compares across clusters) and how many objects it holds.
func exportConfig(t *testing.T, ctx context.Context, c *client.Client) ([]byte, int) {
	t.Helper()
	data, _, err := c.Config(ctx, "json")
	if err != nil {
		return nil, -1
	}
	n := 0
	for _, k := range fsm.Kinds {
		objs, _, err := c.List(ctx, k)
		if err != nil {
			return nil, -1
		}
		n += len(objs)
	}
	return data, n
}
