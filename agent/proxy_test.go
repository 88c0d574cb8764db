package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/rafterlb/rafter/client"
	"github.com/rafterlb/rafter/fsm"
)

// TestProxyAgentJoinsAndServes: an agent started with role proxy and the
// voters' admin addresses joins the running cluster as a non-voter, takes
// writes (forwarded to the leader) and serves them on its data plane.
func TestProxyAgentJoinsAndServes(t *testing.T) {
	const token = "t0ken"
	_, admins := testCluster(t, token)
	var voters []*client.Client
	for _, a := range admins {
		voters = append(voters, client.New(a, token, nil))
	}
	waitLeader(t, voters)

	ln, err := net.Listen("tcp", DevIP(3)+":0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	c := DefaultConfig()
	c.NodeID, c.Zone, c.DataDir = "p1", "d", filepath.Join(t.TempDir(), "p1")
	c.Bind = DevIP(3)
	c.AdminPort, c.RaftPort = 0, 0
	c.Role = fsm.RoleProxy
	c.BootstrapExpect = 0
	c.Join = admins
	c.Token = token
	c.AccessLog = "off"
	c.AdminListener = ln
	c.Logger = slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	a, done := startAgent(t, ctx, c)
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("proxy agent: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("proxy agent did not stop within 60s")
		}
	})
	proxy := client.New(a.AdminAddr(), token, nil)
	rctx, rcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer rcancel()
	for _, cl := range append([]*client.Client{proxy}, voters...) {
		eventually(t, "p1 a non-voter in status", func() error {
			st, _, err := cl.Status(rctx)
			if err != nil {
				return err
			}
			voters, proxies := 0, 0
			for _, m := range st.Members {
				switch {
				case m.ID == "p1" && m.Suffrage == "Nonvoter":
					proxies++
				case m.Suffrage == "Voter":
					voters++
				}
			}
			if voters != 3 || proxies != 1 {
				return fmt.Errorf("%s sees %d voters and %d proxies: %+v", st.NodeID, voters, proxies, st.Members)
			}
			return nil
		})
	}
	if r := a.Node().Config().Nodes["p1"]; r == nil || r.Role != fsm.RoleProxy {
		t.Fatalf("p1's node record %+v, want role proxy", r)
	}

	port := freePort(t)
	// Writes are retried: under load a leader election may come between
	// (503 no_leader), and a put of the same spec again changes nothing.
	eventually(t, "put listener through the proxy", func() error {
		_, err := proxy.Put(rctx, fsm.KindListener, "web", fsm.ListenerSpec{Port: port}, nil)
		return err
	})
	route := `{"listener":"web","match":{"path":{"exact":"/p"}},"action":{"respond":{"status":200,"body":"from the proxy"}}}`
	eventually(t, "put route through the proxy", func() error {
		_, err := proxy.Put(rctx, fsm.KindRoute, "p", []byte(route), nil)
		return err
	})
	url := "http://" + net.JoinHostPort(DevIP(3), strconv.Itoa(port)) + "/p"
	eventually(t, "the proxy's data plane serving the route", func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "from the proxy" {
			return fmt.Errorf("%s %q", resp.Status, body)
		}
		return nil
	})
}
