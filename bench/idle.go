package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// IdleConns is a proxy's memory per idle keep-alive client connection.
type IdleConns struct {
	Proxy          string  `json:"proxy"`
	Conns          int     `json:"conns"`
	RSSBeforeBytes int64   `json:"rss_before_bytes"`
	RSSAfterBytes  int64   `json:"rss_after_bytes"`
	BytesPerConn   float64 `json:"bytes_per_conn"`
	Err            string  `json:"error,omitempty"`
}

// PerConn is the RSS grown per connection; negative growth (the proxy
// returned memory meanwhile) counts as none.
func PerConn(before, after int64, conns int) float64 {
	if conns <= 0 || after <= before {
		return 0
	}
	return float64(after-before) / float64(conns)
}

// IdleSet is a set of open client connections, each of which has done one
// request and now sits idle.
type IdleSet struct{ conns []net.Conn }

// Close closes every connection.
func (s *IdleSet) Close() {
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

// OpenIdle opens n connections to addr from workers goroutines; on each it
// sends GET path and reads the answer, then leaves the connection open.
// Bounded by n and by within; on error every connection is closed.
func OpenIdle(ctx context.Context, addr, path string, n, workers int, within time.Duration) (*IdleSet, error) {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	conns := make([]net.Conn, n)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	d := &net.Dialer{}
	req := "GET " + path + " HTTP/1.1\r\nHost: bench.test\r\n\r\n"
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			for i := w; i < n && errs[w] == nil; i += workers {
				c, err := d.DialContext(ctx, "tcp", addr)
				if err != nil {
					errs[w] = err
					return
				}
				conns[i] = c
				errs[w] = roundTrip(ctx, c, req)
			}
		})
	}
	wg.Wait()
	s := &IdleSet{}
	for _, c := range conns {
		if c != nil {
			s.conns = append(s.conns, c)
		}
	}
	for _, err := range errs {
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("idle connections to %s: %w", addr, err)
		}
	}
	return s, nil
}

func roundTrip(ctx context.Context, c net.Conn, req string) error {
	dl, _ := ctx.Deadline()
	_ = c.SetDeadline(dl)
	if _, err := io.WriteString(c, req); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	_ = c.SetDeadline(time.Time{})
	return err
}

// raiseNoFile lifts this process's open-file limit (and so its children's)
// to at least n.
func raiseNoFile(n uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= n {
		return nil
	}
	lim.Cur = n
	lim.Max = max(lim.Max, n)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raising RLIMIT_NOFILE to %d: %w", n, err)
	}
	return nil
}

// idleWarmConns is how many connections serve one request each, and
// close, before the baseline of measureIdle is read.
const idleWarmConns = 50

// measureIdle records lp's RSS, opens n idle connections to it, lets it
// settle and records its RSS again. The baseline is read after a few
// requests were served on connections since closed, so that the code and
// pools serving touches are in it and the growth is the connections'.
func measureIdle(ctx context.Context, fs ProcFS, lp *liveProxy, path string, n int) IdleConns {
	out := IdleConns{Proxy: lp.name, Conns: n}
	warm, err := OpenIdle(ctx, lp.listen, path, idleWarmConns, idleWarmConns, 30*time.Second)
	if err != nil {
		out.Err = "warming up: " + err.Error()
		return out
	}
	warm.Close()
	select {
	case <-ctx.Done():
	case <-time.After(time.Second):
	}
	before, err := fs.RSS(lp.proc.PID())
	if err != nil {
		out.Err = err.Error()
		return out
	}
	set, err := OpenIdle(ctx, lp.listen, path, n, 50, 60*time.Second)
	if err != nil {
		out.Err = err.Error()
		return out
	}
	defer set.Close()
	// Let the proxy finish whatever it does after an answer (buffers
	// released, goroutines parked) before reading its memory.
	select {
	case <-ctx.Done():
	case <-time.After(time.Second):
	}
	after, err := fs.RSS(lp.proc.PID())
	if err != nil {
		out.Err = err.Error()
		return out
	}
	out.RSSBeforeBytes, out.RSSAfterBytes, out.BytesPerConn = before, after, PerConn(before, after, n)
	return out
}
