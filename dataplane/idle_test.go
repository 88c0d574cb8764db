package dataplane

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// idleFootprint is what a set of idle keep-alive client connections cost
// the process, per connection.
type idleFootprint struct {
	rss, heap, stack float64 // bytes per connection
}

// measureIdle opens 2n client connections to the proxy at addr, each
// doing one request, and returns what the process grew by per connection
// over the second n, once they all sit idle: the first n take whatever
// earlier connections left behind (pooled buffers, idle server goroutines
// and stacks), so that the figure is what a connection holds. The clients
// are raw sockets, so that their side of the connections costs the Go
// heap and stacks nothing; the connections are closed when the test ends.
func measureIdle(tb testing.TB, addr string, n int) idleFootprint {
	tb.Helper()
	fds := make([]int, 0, 2*n)
	tb.Cleanup(func() {
		for _, fd := range fds {
			_ = syscall.Close(fd)
		}
	})
	deadline := time.Now().Add(2 * time.Minute)
	open := func() footprint {
		for i := 0; i < n; i++ {
			if time.Now().After(deadline) {
				tb.Fatalf("opened only %d of %d idle connections within 2m", len(fds), 2*n)
			}
			fds = append(fds, idleConn(tb, addr, "/idle/"+strconv.Itoa(len(fds))))
		}
		// Every connection has a goroutine of its own; a collection then
		// leaves only what the connections hold.
		waitFor(tb, "a goroutine per idle connection", func() bool { return runtime.NumGoroutine() >= len(fds) })
		// Idle reads give their buffers' pages back within two sweeps.
		time.Sleep(3 * idleRelease)
		// Two collections: pooled objects survive the first in the
		// pools' victim caches.
		runtime.GC()
		runtime.GC()
		return readFootprint(tb)
	}
	settle(tb)
	before := open()
	after := open()
	per := func(b, a float64) float64 { return (a - b) / float64(n) }
	return idleFootprint{
		rss:   per(before.rss, after.rss),
		heap:  per(before.heap, after.heap),
		stack: per(before.stack, after.stack),
	}
}

// settle waits (at most 10s) until the goroutines of earlier tests'
// servers have ended, so that their stacks are not freed during a
// measurement.
func settle(tb testing.TB) {
	tb.Helper()
	prev := -1
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		runtime.GC()
		n := runtime.NumGoroutine()
		if n == prev {
			return
		}
		prev = n
		time.Sleep(100 * time.Millisecond)
	}
}

type footprint struct{ rss, heap, stack float64 }

func readFootprint(tb testing.TB) footprint {
	tb.Helper()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return footprint{rss: float64(processRSS(tb)), heap: float64(ms.HeapInuse), stack: float64(ms.StackInuse)}
}

// processRSS is this process's resident memory in bytes.
func processRSS(tb testing.TB) int64 {
	tb.Helper()
	b, err := os.ReadFile("/proc/self/smaps_rollup")
	if err != nil {
		tb.Fatalf("reading RSS: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "Rss:" {
			kib, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				tb.Fatalf("reading RSS from %q: %v", line, err)
			}
			return kib << 10
		}
	}
	tb.Fatalf("no Rss line in smaps_rollup")
	return 0
}

// idleConn opens a raw loopback socket to addr, sends one GET of path and
// reads a 200 answer (Content-Length framed, as the fixture's backend
// sends), then leaves the connection open. Reads and writes time out
// after 10s.
func idleConn(tb testing.TB, addr, path string) int {
	tb.Helper()
	ap, err := netipAddrPort(addr)
	if err != nil {
		tb.Fatal(err)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatalf("socket: %v", err)
	}
	tv := syscall.Timeval{Sec: 10}
	for _, opt := range []int{syscall.SO_RCVTIMEO, syscall.SO_SNDTIMEO} {
		if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, opt, &tv); err != nil {
			_ = syscall.Close(fd)
			tb.Fatalf("setsockopt: %v", err)
		}
	}
	if err := retryEINTR(func() error { return syscall.Connect(fd, ap) }); err != nil {
		_ = syscall.Close(fd)
		tb.Fatalf("connect %s: %v", addr, err)
	}
	req := "GET " + path + " HTTP/1.1\r\nHost: idle.test\r\n\r\n"
	if err := retryEINTR(func() error { _, err := syscall.Write(fd, []byte(req)); return err }); err != nil {
		_ = syscall.Close(fd)
		tb.Fatalf("write: %v", err)
	}
	var buf [4096]byte
	n := 0
	for {
		var m int
		err := retryEINTR(func() (err error) { m, err = syscall.Read(fd, buf[n:]); return err })
		if err != nil || m <= 0 {
			_ = syscall.Close(fd)
			tb.Fatalf("reading the answer to %s after %q: %v", path, buf[:n], err)
		}
		n += m
		if complete, ok := httpAnswerComplete(buf[:n]); ok {
			if !bytes.HasPrefix(buf[:n], []byte("HTTP/1.1 200 ")) {
				_ = syscall.Close(fd)
				tb.Fatalf("answer to %s: %q", path, buf[:n])
			}
			if complete {
				return fd
			}
		}
		if n == len(buf) {
			_ = syscall.Close(fd)
			tb.Fatalf("answer to %s longer than %d bytes", path, len(buf))
		}
	}
}

// retryEINTR calls f again while it fails with EINTR (the runtime's
// preemption signals interrupt blocking system calls).
func retryEINTR(f func() error) error {
	for {
		if err := f(); err != syscall.EINTR {
			return err
		}
	}
}

// httpAnswerComplete reports whether b holds a whole answer framed by
// Content-Length; ok is false while the head is incomplete.
func httpAnswerComplete(b []byte) (complete, ok bool) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return false, false
	}
	head := strings.ToLower(string(b[:end]))
	i := strings.Index(head, "\r\ncontent-length:")
	if i < 0 {
		return true, true
	}
	v := head[i+len("\r\ncontent-length:"):]
	if j := strings.Index(v, "\r\n"); j >= 0 {
		v = v[:j]
	}
	cl, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return true, true
	}
	return len(b) >= end+4+cl, true
}

func netipAddrPort(addr string) (*syscall.SockaddrInet4, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ip := net.ParseIP(host).To4()
	if ip == nil {
		return nil, fmt.Errorf("%s: not an IPv4 address", addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, err
	}
	sa := &syscall.SockaddrInet4{Port: p}
	copy(sa.Addr[:], ip)
	return sa, nil
}

// BenchmarkIdleConns reports the memory each idle keep-alive client
// connection costs the proxy: 2000 connections, each after one proxied
// request, measured once they are idle (RSS, Go heap and stacks grown, per
// connection; see measureIdle). Run with -benchtime=1x -count=1: every
// iteration opens its own 4000, and RSS only grows by what a process has
// not had resident before, so later runs in one process read low RSS
// figures; the heap and stack figures hold on every run.
func BenchmarkIdleConns(b *testing.B) {
	const conns = 2000
	be := loopbackBackend(b, []byte("ok"))
	d := startDataplane(b, newFakeSource(simpleConfig(be).build()), nil)
	addr := d.ListenerAddr("web")
	for i := 0; i < 20; i++ {
		_ = syscall.Close(idleConn(b, addr, "/warm"))
	}
	var sum idleFootprint
	for i := 0; i < b.N; i++ {
		fp := measureIdle(b, addr, conns)
		sum.rss += fp.rss
		sum.heap += fp.heap
		sum.stack += fp.stack
	}
	n := float64(b.N)
	b.ReportMetric(sum.rss/n, "rss-B/conn")
	b.ReportMetric(sum.heap/n, "heap-B/conn")
	b.ReportMetric(sum.stack/n, "stack-B/conn")
}
