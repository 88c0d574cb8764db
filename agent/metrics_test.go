package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestAgentExportsRaftMetrics(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, done := startAgent(t, ctx, singleNode(t, t.TempDir()))
	eventually(t, "raft metrics of a one-node leader", func() error {
		resp, err := http.Get("http://" + a.AdminAddr() + "/metrics")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{
			"rafter_raft_has_leader 1", "rafter_raft_is_leader 1", `rafter_raft_members{suffrage="Voter"} 1`,
			"rafter_raft_members_healthy 1", "rafter_raft_last_contact_seconds 0",
		} {
			if !strings.Contains(string(body), "\n"+want+"\n") {
				return fmt.Errorf("no %q in /metrics", want)
			}
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
