//go:build linux

package netns

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rafterlb/rafter/internal/testutil"
)

// TestVIPHolderThatCannotClaim: a live node that cannot add a linux VIP's
// address (here its interface is missing on that node alone) says why in
// its log, and the leader gives the VIP to another node within the claim
// timeout (15s) instead of waiting on it, and keeps it from that node
// rather than failing back.
func TestVIPHolderThatCannotClaim(t *testing.T) {
	o := DefaultOptions()
	o.Bin = bin
	o.ExtraArgs = []string{"--vip-linux", "--vip-hold-down", holdDown.String()}
	r := New(t, o)
	// The VIP's interface exists on n2 and n3 only (a veth pair: kernels
	// without the dummy driver have it).
	for _, n := range []string{"n2", "n3"} {
		for _, args := range [][]string{
			{"link", "add", "vipif", "type", "veth", "peer", "name", "vipif-peer"},
			{"link", "set", "vipif", "up"}, {"link", "set", "vipif-peer", "up"},
		} {
			if out, err := r.Command(context.Background(), n, "ip", args...).CombinedOutput(); err != nil {
				t.Fatalf("ip %s in %s: %v: %s", strings.Join(args, " "), n, err, out)
			}
		}
	}
	r.StartAgents()
	r.Leader(60 * time.Second)
	addr := vipIP(0)
	start := time.Now()
	putSpec(t, r, "vips", "vip0", fmt.Sprintf(
		`{"provider": "linux", "address": "%s/24", "interface": "vipif", "home_node": "n1", "candidates": ["n1", "n2", "n3"]}`, addr))

	var holder string
	testutil.Eventually(t, 45*time.Second, addr+" on n2 or n3", func() error {
		h := holdersNow(r, addr)
		if len(h) != 1 || h[0] == "n1" {
			return fmt.Errorf("holders %v", h)
		}
		holder = h[0]
		return nil
	})
	took := time.Since(start)
	t.Logf("held by %s %s after the vip was written", holder, took.Round(time.Millisecond))
	a := assignmentOf(t, r, "vip0")
	if a.Holder != holder || a.Reason != "holder_not_claiming" {
		t.Fatalf("assignment %+v; want holder %s, reason holder_not_claiming", a, holder)
	}
	log, err := os.ReadFile(r.Node("n1").LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), `"msg":"linux vip assigned to this node is still not claimed"`) ||
		!strings.Contains(string(log), "vipif") {
		t.Fatalf("n1's log does not say why it does not claim:\n%s", r.Node("n1").LogTail())
	}

	// n1 is live and settled past the hold-down: it would get the VIP back
	// by failback if it were not kept away (at least 30s).
	time.Sleep(2 * holdDown)
	if h := holdersNow(r, addr); !slices.Equal(h, []string{holder}) {
		t.Fatalf("after %s: holders %v, want %s alone", 2*holdDown, h, holder)
	}
	if a := assignmentOf(t, r, "vip0"); a.Holder != holder {
		t.Fatalf("failed back while n1 is kept away: %+v", a)
	}
}

// assignmentOf reads a VIP's assignment from the leader.
func assignmentOf(t *testing.T, r *Rig, name string) vipAssignment {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := listVIPs(ctx, r, r.Leader(30*time.Second), "?consistent")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range list {
		if v.Name == name && v.Assignment != nil {
			return *v.Assignment
		}
	}
	t.Fatalf("vip %s has no assignment: %+v", name, list)
	return vipAssignment{}
}

// vipAssignment is a VIP's assignment as GET /v1/vips shows it.
type vipAssignment struct {
	Holder  string `json:"holder"`
	Token   uint64 `json:"token"`
	Reason  string `json:"reason"`
	Settled bool   `json:"settled"`
}

type listedVIP struct {
	Name       string         `json:"name"`
	Assignment *vipAssignment `json:"assignment"` // nil: unassigned
}

// listVIPs reads GET /v1/vips from n (query: "" for n's own state,
// "?consistent" for the leader's).
func listVIPs(ctx context.Context, r *Rig, n *Node, query string) ([]listedVIP, error) {
	resp, err := r.API(ctx, n, http.MethodGet, "/v1/vips"+query, nil)
	if err != nil {
		return nil, err
	}
	if resp.Status != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/vips on %s: %d %s", n.Name, resp.Status, resp.Body)
	}
	var list struct {
		Items []listedVIP `json:"items"`
	}
	if err := json.Unmarshal(resp.Body, &list); err != nil {
		return nil, fmt.Errorf("GET /v1/vips on %s: %w", n.Name, err)
	}
	return list.Items, nil
}
