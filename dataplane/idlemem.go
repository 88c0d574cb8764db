package dataplane

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// Idle client connections give the pages of their read buffers back.
//
// A keep-alive client connection waiting for its next request holds the
// server's read buffer (the listener's max_header_bytes, 16 KiB by
// default): fasthttp keeps the reader of a connection whose request
// bodies stream. The buffer's pages that earlier requests wrote stay
// resident for as long as the connection is open. HAProxy and nginx give
// such buffers back while a connection waits; rafter gives back their
// pages, without costing a busy connection anything:
//
//   - A client connection reads through its socket's RawConn. A read that
//     finds nothing (EAGAIN) offers the buffer it was given and parks.
//   - A sweeper, which runs only while the listener has connections,
//     looks every idleRelease. A read still waiting from an earlier look
//     has its buffer's whole pages returned to the kernel (madvise
//     MADV_DONTNEED). They come back zeroed, a page fault each, when the
//     next bytes are read into them.
//
// An io.Reader may use all of p as scratch during a call, so the bytes
// dropped are never ones a caller can see: they are p's, of a Read still
// in progress. Bytes the caller holds before p (a request's first part,
// buffered while the rest is awaited) are not in p and are kept.
//
// The read and the sweeper agree through idleReader.state: the read
// offers its buffer (readWaiting), the sweeper takes it (readSweeping,
// then readReleased), and the read takes it back (readBusy) before it
// reads into it again, waiting out a sweep in progress, and always before
// Read returns.

// idleRelease is how often the sweeper looks. A read waits between one
// and two of these before its pages go: a release costs a madvise and a
// page fault per page used again, a few microseconds, which once per
// quarter second of idleness is nothing, while a busy connection's reads
// seldom wait that long.
const idleRelease = 250 * time.Millisecond

// States of an idleReader.
const (
	readBusy     uint32 = iota // reading, or not in Read: p is the caller's
	readWaiting                // parked, p on offer
	readSweeping               // the sweeper is releasing p's pages
	readReleased               // p's pages were released
)

// idleReader reads one client connection through its RawConn.
type idleReader struct {
	rc  syscall.RawConn
	reg *idleRegistry
	// slot is the reader's index in reg.readers, -1 once removed; under
	// reg.mu.
	slot int
	// inRead is set while read runs: a concurrent Read on the same
	// connection reads directly and offers nothing.
	inRead atomic.Bool
	state  atomic.Uint32
	// waits counts the reads that found nothing; seen is its value at the
	// sweeper's last look, under reg.mu. A reader waiting with waits ==
	// seen has waited since before that look.
	waits atomic.Uint64
	seen  uint64
	// p, n and err are the read in progress: read's argument and results,
	// for readFn, which is made once so that no read allocates a closure.
	p      []byte
	n      int
	err    error
	readFn func(fd uintptr) bool
	// park is the connection as the server serves it, which a release
	// may park (park.go); nil when it cannot be parked.
	park atomic.Pointer[parkConn]
}

// newIdleReader returns a reader for c registered with reg, or nil when c
// has no RawConn.
func newIdleReader(c net.Conn, reg *idleRegistry) *idleReader {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	r := &idleReader{rc: rc, reg: reg, slot: -1}
	r.readFn = r.readFd
	reg.add(r)
	return r
}

// read is c.Read(p) for the connection c that r reads.
func (r *idleReader) read(c net.Conn, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if !r.inRead.CompareAndSwap(false, true) {
		return c.Read(p)
	}
	r.p = p
	err := r.rc.Read(r.readFn)
	r.claim()
	n, rerr := r.n, r.err
	r.p, r.n, r.err = nil, 0, nil
	r.inRead.Store(false)
	if err != nil {
		// The RawConn names the operation "raw-read"; a caller checks the
		// cause (a deadline, a closed connection), which is kept.
		var oe *net.OpError
		if errors.As(err, &oe) {
			oe.Op = "read"
		}
		return 0, err
	}
	if rerr != nil && rerr != io.EOF {
		rerr = &net.OpError{Op: "read", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: rerr}
	}
	return n, rerr
}

// readFd is one attempt of read; it returns false to wait until the
// socket is readable.
func (r *idleReader) readFd(fd uintptr) bool {
	r.claim()
	n, err := syscall.Read(int(fd), r.p)
	for err == syscall.EINTR {
		n, err = syscall.Read(int(fd), r.p)
	}
	switch {
	case err == syscall.EAGAIN:
		r.waits.Add(1)
		r.state.Store(readWaiting)
		return false
	case err != nil:
		r.n, r.err = 0, os.NewSyscallError("read", err)
	case n == 0:
		r.n, r.err = 0, io.EOF
	default:
		r.n, r.err = n, nil
	}
	return true
}

// claim takes the buffer back from the sweeper.
func (r *idleReader) claim() {
	for {
		switch s := r.state.Load(); s {
		case readBusy:
			return
		case readSweeping:
			runtime.Gosched()
		default:
			if r.state.CompareAndSwap(s, readBusy) {
				return
			}
		}
	}
}

// due reports whether r's buffer has been on offer since the sweeper's
// previous look. Under reg.mu.
func (r *idleReader) due() bool {
	w := r.waits.Load()
	since := r.seen
	r.seen = w
	return w == since && r.state.Load() == readWaiting
}

// release returns the pages of r's buffer if it is still on offer, and
// reports whether it did and whether it ended the wait for a park.
func (r *idleReader) release() (released, parks bool) {
	if !r.state.CompareAndSwap(readWaiting, readSweeping) {
		return false, false
	}
	if hook := testHookRelease.Load(); hook != nil {
		(*hook)(r)
	}
	dropPages(r.p)
	if pc := r.park.Load(); pc != nil {
		parks = pc.endWait()
	}
	r.state.Store(readReleased)
	return true, parks
}

// waitReadable waits until the socket has bytes to read or has ended,
// without reading them, or until the read deadline; only the deadline
// and a closed connection are errors.
func (r *idleReader) waitReadable() error {
	return r.rc.Read(func(fd uintptr) bool {
		var b [1]byte
		for {
			_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK)
			switch err {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false
			}
			// Bytes, the end, or an error the next read reports.
			return true
		}
	})
}

// testHookRelease, when set by a test, runs as the release of a reader's
// buffer begins.
var testHookRelease atomic.Pointer[func(*idleReader)]

// pageSize is the kernel's page size.
var pageSize = uintptr(os.Getpagesize())

// dropPages gives the whole pages inside b back to the kernel; they read
// as zeros afterwards.
func dropPages(b []byte) {
	if len(b) == 0 {
		return
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	lo := (start + pageSize - 1) &^ (pageSize - 1)
	hi := (start + uintptr(len(b))) &^ (pageSize - 1)
	if hi <= lo {
		return
	}
	_ = syscall.Madvise(b[lo-start:hi-start], syscall.MADV_DONTNEED)
}

// idleRegistry holds the idleReaders of a data plane's open client
// connections and runs the sweeper while it has any.
type idleRegistry struct {
	// sweepMu makes sweeps one at a time: the timer's and a test's.
	sweepMu sync.Mutex
	mu      sync.Mutex
	readers []*idleReader
	// timer runs the next sweep; nil while no sweep is scheduled.
	timer *time.Timer
	// due is the sweeper's list of readers to release, kept between
	// sweeps for its capacity.
	due []*idleReader
	// released counts the buffers released, parked the connections
	// parked, for tests.
	released, parked atomic.Int64
	// manual is set by tests that sweep by hand: no timer sweeps.
	manual bool

	// The memory parked connections leave (park.go), under sweepMu:
	// parks counts the parks since it was last given back; returnDue
	// gives it back at the next sweep, once their serving goroutines
	// have ended.
	parks      int
	returnDue  bool
	lastReturn time.Time
	// returnMem replaces returnMemory in tests.
	returnMem func()
}

// The goroutine stacks, request contexts and read buffers of parked
// connections go back to the runtime's free memory and pools at once,
// and to the kernel only after collections: the runtime would collect
// within two minutes (its forced collection) and return the memory
// slowly after. A wave of idle connections is what an operator expects
// to see give its memory back, as HAProxy's and nginx's do. So the
// sweeper has the runtime collect twice (a pool keeps what it held
// through one collection) and return its free memory, a few milliseconds
// of collection for some MiB, the sweep after returnAfterParks parks (at
// most every returnEvery), and at the first sweep that parks none after
// returnAfterWave did. A return starts the count of parks again, so the
// next one is two sweeps later at the soonest: at most two a second
// (twice 2 collections), and only with connections parking as fast.
const (
	returnAfterParks = 256
	returnAfterWave  = 32
	returnEvery      = time.Second
)

// returnWhen decides, after a sweep that parked parked connections,
// parks since memory was last returned (these included) and since that
// return, whether to return it now, and whether at the next sweep: the
// goroutines of a sweep's parks are still ending during it.
func returnWhen(parked, parks int, due bool, since time.Duration) (now, next bool) {
	switch {
	case due, parked == 0 && parks >= returnAfterWave:
		return true, false
	case parks >= returnAfterParks && since >= returnEvery:
		return false, true
	}
	return false, false
}

// returnMemory collects twice and returns free memory to the kernel.
func returnMemory() {
	runtime.GC()
	debug.FreeOSMemory()
}

func (g *idleRegistry) add(r *idleReader) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r.slot = len(g.readers)
	g.readers = append(g.readers, r)
	if g.timer == nil && !g.manual {
		g.timer = time.AfterFunc(idleRelease, g.sweep)
	}
}

func (g *idleRegistry) remove(r *idleReader) {
	g.mu.Lock()
	defer g.mu.Unlock()
	i := r.slot
	if i < 0 {
		return
	}
	last := len(g.readers) - 1
	g.readers[i] = g.readers[last]
	g.readers[i].slot = i
	g.readers[last] = nil
	g.readers = g.readers[:last]
	r.slot = -1
}

// sweep releases the buffers of the readers due and schedules the next
// sweep, unless no connection is left. The pages are released outside
// the lock, so that connections opening and closing do not wait for them.
func (g *idleRegistry) sweep() {
	g.sweepMu.Lock()
	defer g.sweepMu.Unlock()
	g.mu.Lock()
	due := g.due[:0]
	for _, r := range g.readers {
		if r.due() {
			due = append(due, r)
		}
	}
	g.mu.Unlock()
	parked := 0
	for i, r := range due {
		released, parks := r.release()
		if released {
			g.released.Add(1)
		}
		if parks {
			parked++
		}
		due[i] = nil
	}
	g.parks += parked
	g.parked.Add(int64(parked))
	var now bool
	now, g.returnDue = returnWhen(parked, g.parks, g.returnDue, time.Since(g.lastReturn))
	if now {
		// On the sweeper's goroutine, outside g.mu: the next sweep comes
		// an interval after the collections.
		g.parks, g.lastReturn = 0, time.Now()
		if g.returnMem != nil {
			g.returnMem()
		} else {
			returnMemory()
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.due = due[:0]
	switch {
	case g.timer == nil:
	case len(g.readers) == 0:
		g.timer = nil
	default:
		g.timer.Reset(idleRelease)
	}
}

// open reports how many connections are registered.
func (g *idleRegistry) open() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.readers)
}
