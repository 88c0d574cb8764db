package dataplane

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// A request to a backend is written by the read of its response.
//
// A read on a Go connection reads first and waits for the poller only when
// that read finds nothing (EAGAIN). The read of a response right after
// its request was written always finds nothing, since the backend has not
// answered yet: one system call per request for nothing, and on a virtual
// machine a system call costs microseconds (an EAGAIN read took 2.5 µs on
// the benchmark machine, as much as a tenth of the proxy's CPU per
// request). HAProxy does not make it: its poller tells it when the answer
// is in.
//
// The runtime's poller cannot be asked whether a socket became readable:
// a read, a RawConn's included, first forgets what the poller recorded,
// and only reading tells. What the poller records after that is kept,
// though. So the request is written inside the RawConn's read, after the
// forgetting: the answer, which cannot come before its request, wakes the
// read, and the socket is read once, when the answer is there.
//
// What the poller recorded before is lost: an end or bytes that the
// backend sent while the connection sat idle in the pool. A backend that
// closed the connection answers the request with a reset, which wakes the
// read. One that only stopped writing (a lingering close) or sent bytes
// unasked would leave the read waiting for what is already there; so a
// watcher (holdWatch) looks at the held reads every holdCheck, and one
// still waiting holdCheck after its request's start has its read deadline
// brought to the past: it wakes, the exchange's own deadline is put back,
// and the socket is read as any other, whatever the poller says. Setting
// a deadline for each request instead, and putting it back, cost two
// runtime timer updates per request, about 0.4 µs.
//
// A request is held only
//   - on a connection back from the pool within holdIdle, far less than
//     any backend's idle timeout;
//   - when it goes out in one write: its head and a body that fits the
//     writer's buffer, nothing streamed, so that the backend cannot have
//     answered a part of it;
//   - on a plain TCP connection (TLS reads and writes records of its own).
const (
	holdIdle     = time.Second
	holdCheck    = 20 * time.Millisecond
	holdShortest = 4 * holdCheck
)

// heldRequest is an upstreamConn's request held for the response read.
// Only the exchange that holds the connection uses it.
type heldRequest struct {
	rc syscall.RawConn
	// hold is set by the round trip just before it flushes a request that
	// may be held: the next Write is that request.
	hold bool
	// writes counts Writes; the round trip reads it to tell whether a
	// request went out in parts.
	writes uint32
	// buf is the held request (a copy: a Write may not keep its argument)
	// and off how much of it is written; pending is set until it is.
	buf     []byte
	off     int
	pending bool
	// check is holdCheck after the request's start.
	check time.Time
	// watch is check as holdClock reads it while the read of a held
	// request waits, 0 otherwise; watchWaking and watchWoken while the
	// watcher ends that wait (holdWatch).
	watch atomic.Int64
	// slot is the connection's index in holdWatcher.conns, -1 once
	// removed; under holdWatcher.mu.
	slot int
	// p, n and err are the read in progress for fn, which is made once so
	// that no read allocates a closure.
	p   []byte
	n   int
	err error
	fn  func(fd uintptr) bool
}

// Events of a held request, for testHookHold.
const (
	holdSent    = iota // the request was written by its response's read
	holdEmpty          // a read found nothing after a wake-up
	holdRecheck        // holdCheck passed: the socket is read as usual
	holdPartial        // the socket took part of the request; the rest is written as usual
)

// testHookHold, when set by a test, is told every event of a held request.
var testHookHold atomic.Pointer[func(event int)]

func heldEvent(e int) {
	if hook := testHookHold.Load(); hook != nil {
		(*hook)(e)
	}
}

// initHold lets c hold requests when it is a plain socket.
func (c *upstreamConn) initHold() {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	c.held.rc = rc
	c.held.fn = c.sendRead
	holdWatcher.add(c)
}

func (c *upstreamConn) Close() error {
	if c.held.rc != nil {
		holdWatcher.remove(c)
	}
	return c.yieldConn.Close()
}

// startHold reports whether the request started at start on c, whose
// previous exchange ended at lastUse (zero for a new connection), may be
// held for its response's read, timeout being the exchange's (0: none).
// If so it counts the writes from now on.
//
// A timeout shorter than holdShortest is not held: it could end the wait
// before the watcher does, so that an end the backend sent while the
// connection was idle would fail the request as a timeout instead of
// being found, and the request sent again (roundtrip.go).
func (c *upstreamConn) startHold(start, lastUse time.Time, timeout time.Duration) bool {
	if c.held.rc == nil || lastUse.IsZero() || start.Sub(lastUse) >= holdIdle ||
		(timeout > 0 && timeout < holdShortest) {
		return false
	}
	c.held.writes = 0
	c.held.check = start.Add(holdCheck)
	return true
}

// holdFlush is called before the flush of a request for which startHold
// said yes: the flush's write is held unless the request was written in
// part already.
func (c *upstreamConn) holdFlush() {
	c.held.hold = c.held.writes == 0
}

func (c *upstreamConn) Write(p []byte) (int, error) {
	h := &c.held
	if h.hold {
		h.hold = false
		h.buf = append(h.buf[:0], p...)
		h.off = 0
		h.pending = true
		return len(p), nil
	}
	h.writes++
	n, err := c.yieldConn.Write(p)
	c.sent += n
	return n, err
}

func (c *upstreamConn) Read(p []byte) (n int, err error) {
	if c.held.pending {
		n, err = c.sendAndRead(p)
	} else {
		n, err = c.yieldConn.Read(p)
	}
	c.got += n
	return n, err
}

// sendAndRead writes the held request and reads the first bytes of the
// answer into p.
func (c *upstreamConn) sendAndRead(p []byte) (int, error) {
	h := &c.held
	// The exchange's read deadline, to put back after a wake: the one
	// armDeadline set, which keeps its monotonic clock reading, when it is
	// the one applied.
	var until time.Time
	if ns := c.readDL.Load(); ns != 0 {
		if until = c.addr.armed; deadlineNanos(until) != ns {
			until = time.Unix(0, ns)
		}
	}
	// An exchange deadline before the check ends the wait first.
	watched := until.IsZero() || h.check.Before(until)
	var check int64
	if watched {
		check = holdClock(h.check)
		h.watch.Store(check)
		holdWatcher.start()
	}
	h.p = p
	err := h.rc.Read(h.fn)
	n, rerr := h.n, h.err
	h.p, h.n, h.err = nil, 0, nil
	rest := h.buf[h.off:]
	c.sent += h.off
	written := !h.pending
	h.pending = false
	woken := watched && !h.watch.CompareAndSwap(check, 0)
	if woken {
		// The watcher ended the wait with a deadline in the past, or is
		// about to: once it has, the exchange's comes back.
		for h.watch.Load() != watchWoken {
			runtime.Gosched()
		}
		h.watch.Store(0)
		if derr := c.Conn.SetReadDeadline(until); derr != nil && err == nil {
			err = derr
		}
	}
	switch {
	case err != nil && woken && isTimeout(err) && (until.IsZero() || time.Now().Before(until)):
		heldEvent(holdRecheck)
	case err != nil:
		var oe *net.OpError
		if errors.As(err, &oe) {
			oe.Op = "read" // the RawConn's name is "raw-read"
		}
		return 0, err
	case rerr != nil:
		return 0, rerr
	case written:
		return n, nil
	default:
		heldEvent(holdPartial)
	}
	if !written {
		n, err := c.Conn.Write(rest)
		c.sent += n
		if err != nil {
			return 0, err
		}
	}
	return c.Conn.Read(p)
}

// sendRead is sendAndRead's step inside the RawConn's read: first the
// request's write, after which there is nothing to read yet, so the read
// waits; then, woken, the read.
func (c *upstreamConn) sendRead(fd uintptr) bool {
	h := &c.held
	if h.pending {
		for h.off < len(h.buf) {
			n, err := syscall.Write(int(fd), h.buf[h.off:])
			switch err {
			case nil:
				h.off += n
			case syscall.EINTR:
			case syscall.EAGAIN:
				return true // the rest waits for room outside
			default:
				h.err = c.opError("write", err)
				h.pending = false
				return true
			}
		}
		h.pending = false
		heldEvent(holdSent)
		return false
	}
	if len(h.p) == 0 {
		return true
	}
	n, err := syscall.Read(int(fd), h.p)
	for err == syscall.EINTR {
		n, err = syscall.Read(int(fd), h.p)
	}
	switch {
	case err == syscall.EAGAIN:
		heldEvent(holdEmpty)
		return false
	case err != nil:
		h.err = c.opError("read", err)
	case n == 0:
		h.err = io.EOF
	default:
		h.n = n
	}
	return true
}

func (c *upstreamConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.Conn.LocalAddr(), Addr: c.addr.Addr, Err: os.NewSyscallError(op, err)}
}

// holdEpoch and holdClock give the watch values: monotonic nanoseconds
// since the package started, which a step of the wall clock does not move,
// and which are positive for any time after that.
var holdEpoch = time.Now()

func holdClock(t time.Time) int64 { return int64(t.Sub(holdEpoch)) }

// Values of heldRequest.watch besides a check time and 0.
const (
	watchWaking = -1 // the watcher is ending the wait
	watchWoken  = -2 // it has: the read deadline is in the past
)

// holdWatch is the watcher of held reads: while any is waiting it looks
// at them every holdCheck, and ends the wait of those that have waited
// past their check. After holdWatchQuiet looks that found none it stops,
// and the next held read starts it again: an idle proxy is not woken.
type holdWatch struct {
	mu    sync.Mutex
	conns []*upstreamConn
	timer *time.Timer
	// running is set from start until the watcher stops; quiet counts the
	// looks in a row that found no held read, under mu.
	running atomic.Bool
	quiet   int
}

const holdWatchQuiet = 50

var holdWatcher holdWatch

func (w *holdWatch) add(c *upstreamConn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c.held.slot = len(w.conns)
	w.conns = append(w.conns, c)
}

func (w *holdWatch) remove(c *upstreamConn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	i := c.held.slot
	if i < 0 {
		return
	}
	last := len(w.conns) - 1
	w.conns[i] = w.conns[last]
	w.conns[i].held.slot = i
	w.conns[last] = nil
	w.conns = w.conns[:last]
	c.held.slot = -1
}

// start makes the watcher look within holdCheck, unless it runs. It is
// called after a held read's watch is stored.
func (w *holdWatch) start() {
	if w.running.Load() || !w.running.CompareAndSwap(false, true) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.quiet = 0
	if w.timer == nil {
		w.timer = time.AfterFunc(holdCheck, w.look)
	} else {
		w.timer.Reset(holdCheck)
	}
}

// look ends the waits past their check and schedules the next look, or
// stops after holdWatchQuiet that found no held read.
func (w *holdWatch) look() {
	now := holdClock(time.Now())
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.wake(now) {
		w.quiet = 0
	} else if w.quiet++; w.quiet >= holdWatchQuiet {
		w.running.Store(false)
		// A read that stored its watch before running was cleared saw
		// the watcher running and did not start it: look for one.
		if !w.wake(now) || !w.running.CompareAndSwap(false, true) {
			return
		}
		w.quiet = 0
	}
	w.timer.Reset(holdCheck)
}

// wake ends the waits whose check is at or before now, and reports
// whether any held read is waiting; under mu.
func (w *holdWatch) wake(now int64) (waiting bool) {
	for _, c := range w.conns {
		h := &c.held
		v := h.watch.Load()
		if v <= 0 {
			continue
		}
		waiting = true
		if now >= v && h.watch.CompareAndSwap(v, watchWaking) {
			_ = c.Conn.SetReadDeadline(longAgo)
			h.watch.Store(watchWoken)
		}
	}
	return waiting
}
