package dataplane

import (
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func TestPoolCounts(t *testing.T) {
	d := &Dataplane{}
	d.counts.record("app", "v1", 200, 3*time.Millisecond)
	d.counts.record("app", "v1", 502, 0)
	d.counts.record("app", "v2", 503, 2*time.Hour)
	d.counts.record("other", "v1", 200, time.Millisecond)
	d.counts.record("app", "", 404, time.Millisecond) // no pool: not counted
	got := d.PoolCounts("app")
	if len(got) != 2 || got[0].Pool != "v1" || got[1].Pool != "v2" {
		t.Fatalf("PoolCounts = %+v", got)
	}
	v1, v2 := got[0], got[1]
	if v1.Requests != 2 || v1.Errors != 1 || v2.Requests != 1 || v2.Errors != 1 {
		t.Fatalf("counts v1 %+v v2 %+v", v1, v2)
	}
	if len(v1.Latency) != len(LatencyBounds())+1 || v1.Latency[0] != 1 || v1.Latency[2] != 1 || v2.Latency[len(v2.Latency)-1] != 1 {
		t.Fatalf("latency buckets v1 %v v2 %v", v1.Latency, v2.Latency)
	}
	if all := d.PoolCounts(""); len(all) != 3 {
		t.Fatalf("every route: %+v", all)
	}
	if n := testing.AllocsPerRun(100, func() { d.counts.record("app", "v1", 200, time.Millisecond) }); n != 0 {
		t.Errorf("record allocates %v times per call", n)
	}
}

// TestSplitPointSticky: one key always lands on the same point, and a key
// on the canary (the last leg) stays there as the canary's weight grows.
func TestSplitPointSticky(t *testing.T) {
	var ctx fasthttp.RequestCtx
	at := func(r *route, user string) int {
		ctx.Request.Header.Set("X-User", user)
		return splitPoint(&ctx, r)
	}
	onCanary := func(weight int, user string) bool {
		r := &route{total: 100, stickyHeader: "x-user"}
		return at(r, user) >= 100-weight
	}
	moved := 0
	for i := range 1000 {
		user := "user-" + string(rune('a'+i%26)) + time.Duration(i).String()
		r := &route{total: 100, stickyHeader: "x-user"}
		if at(r, user) != at(r, user) {
			t.Fatalf("user %s got two points", user)
		}
		was := false
		for _, w := range []int{1, 5, 25, 50, 100} {
			now := onCanary(w, user)
			if was && !now {
				t.Fatalf("user %s left the canary as it grew to %d%%", user, w)
			}
			if now && !was {
				moved++
			}
			was = now
		}
	}
	if moved != 1000 {
		t.Fatalf("%d of 1000 users reached the canary at 100%%", moved)
	}
	canary := 0
	for i := range 2000 {
		if onCanary(25, "u"+time.Duration(i).String()) {
			canary++
		}
	}
	if canary < 400 || canary > 600 {
		t.Fatalf("%d of 2000 users on a 25%% canary", canary)
	}
	ctx.Request.Header.Del("X-User")
	r := &route{total: 100, stickyCookie: "sid"}
	ctx.Request.Header.SetCookie("sid", "abc")
	if p := splitPoint(&ctx, r); p != splitPoint(&ctx, r) {
		t.Fatal("cookie key not sticky")
	}
}

// TestSplitPointShares: without a sticky key every run of requests is
// split in the legs' proportions, within a few requests.
func TestSplitPointShares(t *testing.T) {
	var ctx fasthttp.RequestCtx
	for _, w := range []int{1, 5, 10, 25, 50, 90} {
		r := &route{total: 100, split: []splitLeg{{cum: 100 - w}, {cum: 100}}}
		r.splitStride = splitStride(r.total)
		for _, n := range []int{97, 300, 1000} {
			canary := 0
			for range n {
				if splitPoint(&ctx, r) >= 100-w {
					canary++
				}
			}
			if want := n * w / 100; canary < want-3 || canary > want+3 {
				t.Errorf("weight %d%%: %d of %d requests on the canary, want %d±3", w, canary, n, want)
			}
		}
	}
	if s := splitStride(100); gcd(s, 100) != 1 || s < 2 {
		t.Fatalf("stride %d", s)
	}
	if s := splitStride(1); s != 1 {
		t.Fatalf("stride of 1: %d", s)
	}
}
