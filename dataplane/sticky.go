package dataplane

import (
	"math/rand/v2"

	"github.com/valyala/fasthttp"
)

// splitPoint picks where in 0..r.total a request falls among the route's
// split legs: by a hash of the sticky header or cookie when the route has
// one and the request carries it, so one user stays on one leg, else at
// random. Legs are laid out in split order, so as a later leg grows it
// takes points only from the legs before it and keeps the users it had.
func splitPoint(ctx *fasthttp.RequestCtx, r *route) int {
	var key []byte
	switch {
	case r.stickyHeader != "":
		key, _ = peekHeader(&ctx.Request.Header, r.stickyHeader)
	case r.stickyCookie != "":
		key = ctx.Request.Header.Cookie(r.stickyCookie)
	}
	if len(key) == 0 {
		return rand.IntN(r.total)
	}
	return int(hashBytes(key) % uint64(r.total))
}
