package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/rafterlb/rafter/client"
	"github.com/rafterlb/rafter/fsm"
)

// scrape reads an agent's /metrics as text, with token when one is
// given (an agent with tokens wants one for /metrics too).
func scrape(admin string, token ...string) (string, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+admin+"/metrics", nil)
	if err != nil {
		return "", err
	}
	if len(token) > 0 {
		req.Header.Set("Authorization", "Bearer "+token[0])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("/metrics: %s: %s", resp.Status, body)
	}
	return string(body), err
}

// sampleValue is the value of the sample line starting with series
// (name and labels exactly as exposed), or an error.
func sampleValue(body, series string) (float64, error) {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return 0, fmt.Errorf("no %s in /metrics", series)
	}
	return strconv.ParseFloat(m[1], 64)
}

func TestAgentExportsRaftMetrics(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, done := startAgent(t, ctx, singleNode(t, t.TempDir()))
	eventually(t, "raft metrics of a one-node leader", func() error {
		body, err := scrape(a.AdminAddr())
		if err != nil {
			return err
		}
		for _, want := range []string{
			"rafter_raft_has_leader 1", "rafter_raft_is_leader 1", `rafter_raft_members{suffrage="Voter"} 1`,
			"rafter_raft_members_healthy 1", "rafter_raft_last_contact_seconds 0",
			`rafter_raft_state{state="Leader"} 1`, `rafter_raft_state{state="Follower"} 0`,
		} {
			if !strings.Contains(body, "\n"+want+"\n") {
				return fmt.Errorf("no %q in /metrics", want)
			}
		}
		return nil
	})
	// A write: its apply latency, raft's commit time (through the
	// go-metrics bridge) and the leader change that made this node leader.
	c := client.New(a.AdminAddr(), "", nil)
	if _, err := c.Put(ctx, fsm.KindListener, "web", fsm.ListenerSpec{Port: freePort(t)}, nil); err != nil {
		t.Fatalf("put listener: %v", err)
	}
	eventually(t, "raft latency, leader change and config lag series", func() error {
		body, err := scrape(a.AdminAddr())
		if err != nil {
			return err
		}
		for _, atLeast1 := range []string{
			"rafter_raft_apply_seconds_count", "rafter_raft_commit_seconds_count", "rafter_raft_fsm_apply_seconds_count",
			"rafter_raft_leader_changes_total", `rafter_raft_state_changes_total{state="leader"}`,
		} {
			v, err := sampleValue(body, atLeast1)
			if err != nil {
				return err
			}
			if v < 1 {
				return fmt.Errorf("%s = %v, want at least 1", atLeast1, v)
			}
		}
		for _, series := range []string{`rafter_raft_snapshot_seconds_count{phase="persist"}`, `rafter_raft_timeouts_total{reason="heartbeat_timeout"}`} {
			if _, err := sampleValue(body, series); err != nil {
				return err
			}
		}
		// The data plane serves the table of the last write: no lag.
		if v, err := sampleValue(body, "rafter_config_lag_entries"); err != nil || v != 0 {
			return fmt.Errorf("rafter_config_lag_entries = %v (%v), want 0", v, err)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

type fakeIndexes struct{ seen, handed uint64 }

func (f fakeIndexes) indexes() (uint64, uint64) { return f.seen, f.handed }

// The lag counts committed entries the data plane does not serve yet;
// entries that changed nothing it reads do not count once its table is
// the newest one handed over.
func TestConfigLag(t *testing.T) {
	for _, tc := range []struct {
		commit, table, seen, handed, want uint64
	}{
		{commit: 10, table: 10, seen: 10, handed: 10, want: 0},
		{commit: 12, table: 10, seen: 12, handed: 10, want: 0}, // 11, 12 changed nothing for the data plane
		{commit: 12, table: 10, seen: 11, handed: 10, want: 1}, // 12 not applied yet
		{commit: 12, table: 9, seen: 12, handed: 10, want: 3},  // table 10 not compiled yet
		{commit: 5, table: 7, seen: 7, handed: 7, want: 0},     // commit read before the table: never negative
	} {
		if got := configLag(tc.commit, tc.table, fakeIndexes{tc.seen, tc.handed}); got != tc.want {
			t.Errorf("configLag(commit %d, table %d, seen %d, handed %d) = %d, want %d",
				tc.commit, tc.table, tc.seen, tc.handed, got, tc.want)
		}
	}
}
