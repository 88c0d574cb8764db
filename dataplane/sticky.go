package dataplane

import (
	"github.com/valyala/fasthttp"
)

// splitPoint picks where in 0..r.total a request falls among the route's
// split legs. With a sticky header or cookie that the request carries, a
// hash of it decides, so one user stays on one leg; legs are laid out in
// split order, so as a later leg grows it takes points only from the legs
// before it and keeps the users it had. Otherwise the node walks the
// points in a fixed scattered order (splitStride), so every run of
// requests is shared out in the split's proportions, not just on average:
// a canary at 10 % gets 10 % of each window.
func splitPoint(ctx *fasthttp.RequestCtx, r *route) int {
	var key []byte
	switch {
	case r.stickyHeader != "":
		key, _ = peekHeader(&ctx.Request.Header, r.stickyHeader)
	case r.stickyCookie != "":
		key = ctx.Request.Header.Cookie(r.stickyCookie)
	}
	if len(key) == 0 {
		return int(r.splitSeq.Add(1) * uint64(r.splitStride) % uint64(r.total))
	}
	return int(hashBytes(key) % uint64(r.total))
}

// splitStride is a step coprime with total near total/φ: n*stride mod
// total then visits every point once per total requests, well scattered.
func splitStride(total int) int {
	for s := max(total*618/1000, 1); s > 1; s-- {
		if gcd(s, total) == 1 {
			return s
		}
	}
	return 1
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
