package dataplane

import (
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// The private backend connections of pools with send_proxy_protocol (see
// sendproxy.go) count against max_conns_per_backend, as HAProxy counts
// send-proxy connections against a server's maxconn. A HostClient bounds
// only its own connections, and a private client holds one client
// connection's, so the count lives outside them: one privateLimit per
// backend, taken before a private connection is dialed and given back
// when that connection closes. The shared client's connections are not
// in it: they keep their own bound (HostClient.MaxConns).
//
// At the limit a new private connection first closes the idle private
// connections of other client connections (a client connection has one
// request in flight, so a connection its client is not using is idle),
// then waits in line, as long as the shared client would wait (the pool's
// max_conn_wait, or the request's timeout when shorter), for one to close.
// While a dial waits, a private connection that goes idle closes instead,
// handing its slot over.

// privateLimit counts the open private connections to one backend. The
// registry keeps one per (pool, backend) across table swaps, so that a
// connection opened under an earlier table still holds, and gives back,
// its slot.
type privateLimit struct {
	waiting atomic.Int32 // len(queue), for a connection going idle

	mu   sync.Mutex
	open int // connections open or being dialed (slots taken)
	// max is the limit the latest dial asked for: a release above it
	// retires the slot instead of handing it on.
	max   int
	queue []*slotWaiter // dials waiting for a slot, first come first served
	// holders counts open connections per private client: the clients
	// whose idle connections a dial at the limit may close.
	holders map[*fasthttp.HostClient]int
}

// slotWaiter is a dial waiting for a slot; ready is closed (under the
// limit's mu) when it is given one.
type slotWaiter struct{ ready chan struct{} }

// acquire takes a slot for a new private connection, limit being the
// pool's max_conns_per_backend. Beyond the limit it closes idle private
// connections and then waits up to wait (or reqTimeout, the request's
// timeout, when that is set and shorter). It fails as the shared client
// does: fasthttp.ErrNoFreeConns, or fasthttp.ErrTimeout when the
// request's timeout ended the wait.
func (l *privateLimit) acquire(limit int, wait, reqTimeout time.Duration) error {
	l.mu.Lock()
	l.max = limit
	l.serveLocked()
	if l.open < l.max && len(l.queue) == 0 {
		l.open++
		l.mu.Unlock()
		return nil
	}
	w := &slotWaiter{ready: make(chan struct{})}
	l.queue = append(l.queue, w)
	l.waiting.Store(int32(len(l.queue)))
	idle := make([]*fasthttp.HostClient, 0, len(l.holders))
	for hc := range l.holders {
		idle = append(idle, hc)
	}
	l.mu.Unlock()

	// Queued first, so that a connection going idle from here on closes
	// for this dial (or one ahead of it) rather than stay idle.
	for _, hc := range idle {
		if w.given() {
			return nil
		}
		hc.CloseIdleConnections()
	}
	timeout, err := wait, fasthttp.ErrNoFreeConns
	if reqTimeout > 0 && reqTimeout < wait {
		timeout, err = reqTimeout, fasthttp.ErrTimeout
	}
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-w.ready:
			return nil
		case <-t.C:
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if w.given() {
		return nil // handed a slot as the wait ended
	}
	if i := slices.Index(l.queue, w); i >= 0 {
		l.queue = slices.Delete(l.queue, i, i+1)
		l.waiting.Store(int32(len(l.queue)))
	}
	return err
}

func (w *slotWaiter) given() bool {
	select {
	case <-w.ready:
		return true
	default:
		return false
	}
}

// serveLocked hands free slots to the waiting dials in order.
func (l *privateLimit) serveLocked() {
	for len(l.queue) > 0 && l.open < l.max {
		w := l.queue[0]
		l.queue = slices.Delete(l.queue, 0, 1)
		l.open++
		close(w.ready)
	}
	l.waiting.Store(int32(len(l.queue)))
}

// release gives back a slot: that of a connection of hc that closed, or
// (hc nil) that of a dial that failed.
func (l *privateLimit) release(hc *fasthttp.HostClient) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if hc != nil {
		if l.holders[hc]--; l.holders[hc] <= 0 {
			delete(l.holders, hc)
		}
	}
	l.open--
	l.serveLocked()
}

// adopt makes c, just dialed with a slot taken by acquire, a connection of
// hc whose Close gives the slot back.
func (l *privateLimit) adopt(c net.Conn, hc *fasthttp.HostClient) net.Conn {
	l.mu.Lock()
	if l.holders == nil {
		l.holders = map[*fasthttp.HostClient]int{}
	}
	l.holders[hc]++
	l.mu.Unlock()
	return &privateConn{Conn: c, l: l, hc: hc}
}

// conns is the number of private connections open (or being dialed).
func (l *privateLimit) conns() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// closeIdle closes the idle connections of every private client holding
// connections to the backend.
func (l *privateLimit) closeIdle() {
	l.mu.Lock()
	hcs := make([]*fasthttp.HostClient, 0, len(l.holders))
	for hc := range l.holders {
		hcs = append(hcs, hc)
	}
	l.mu.Unlock()
	for _, hc := range hcs {
		hc.CloseIdleConnections()
	}
}

// privateConn is a private backend connection holding a slot of its
// backend's privateLimit until it closes. It sits under the PROXY header
// write and the TLS handshake (backendState.prepare), so a connection
// that fails either, closed there, gives its slot back too.
type privateConn struct {
	net.Conn
	l      *privateLimit
	hc     *fasthttp.HostClient
	closed atomic.Bool
}

// Close closes the connection and gives back its slot, once.
func (c *privateConn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.l.release(c.hc)
	}
	return err
}

// releaseUnlessWanted is the release function of a private client's
// transport: a connection going idle while a dial waits for a slot to the
// same backend closes instead of going back to its client's pool.
func releaseUnlessWanted[C any](l *privateLimit, release, discard func(C)) func(C) {
	return func(cc C) {
		if l.waiting.Load() > 0 {
			discard(cc)
			return
		}
		release(cc)
	}
}
