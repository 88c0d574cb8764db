package testutil

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"
)

// LoadConfig is a bounded HTTP GET load: Workers goroutines, half of them
// on keep-alive connections and half opening a new connection for every
// request, until Stop, MaxRequests in all or MaxDuration, whichever comes
// first.
type LoadConfig struct {
	URL         string
	Workers     int           // default 4
	MaxRequests int64         // default 1,000,000
	MaxDuration time.Duration // default 2 minutes
	// Dial opens connections; nil means a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Timeout bounds one request (default 10s).
	Timeout time.Duration
}

// LoadResult counts what a load saw. Every request ends as exactly one of
// OK (a 2xx with its whole body), Non2xx or Errors (no answer: refused,
// reset, timed out, cut short). Retried counts requests that Go's client
// sent again on a new connection after the server had closed an idle
// keep-alive connection before the request reached it (RFC 9112 §9.3.1);
// they still end as one of the three.
type LoadResult struct {
	Requests, OK, Non2xx, Errors, Retried int64
	// FirstFailures describes up to ten failures.
	FirstFailures []string
}

func (r LoadResult) String() string {
	return fmt.Sprintf("%d requests: %d ok, %d non-2xx, %d errors (%d retried on a new connection by the client)",
		r.Requests, r.OK, r.Non2xx, r.Errors, r.Retried)
}

// Load is a running load; Stop ends it.
type Load struct {
	cfg    LoadConfig
	stop   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	count  atomic.Int64
	ok     atomic.Int64
	non2xx atomic.Int64
	errs   atomic.Int64
	retry  atomic.Int64

	mu       sync.Mutex
	failures []string
}

// StartLoad starts cfg's workers.
func StartLoad(cfg LoadConfig) *Load {
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.MaxRequests <= 0 {
		cfg.MaxRequests = 1_000_000
	}
	if cfg.MaxDuration <= 0 {
		cfg.MaxDuration = 2 * time.Minute
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Dial == nil {
		cfg.Dial = (&net.Dialer{Timeout: cfg.Timeout}).DialContext
	}
	l := &Load{cfg: cfg, stop: make(chan struct{})}
	deadline := time.Now().Add(cfg.MaxDuration)
	for i := range cfg.Workers {
		keepAlive := i%2 == 0
		client := &http.Client{
			Timeout: cfg.Timeout,
			Transport: &http.Transport{
				DialContext:       cfg.Dial,
				DisableKeepAlives: !keepAlive,
				MaxIdleConns:      1,
				Proxy:             nil,
			},
		}
		l.wg.Go(func() {
			defer client.CloseIdleConnections()
			for time.Now().Before(deadline) && l.count.Add(1) <= cfg.MaxRequests {
				select {
				case <-l.stop:
					l.count.Add(-1)
					return
				default:
				}
				l.one(client)
			}
			l.count.Add(-1)
		})
	}
	return l
}

func (l *Load) one(client *http.Client) {
	conns := 0
	trace := &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { conns++ }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, l.cfg.URL, nil)
	if err != nil {
		l.fail(&l.errs, err.Error())
		return
	}
	resp, err := client.Do(req)
	if conns > 1 {
		l.retry.Add(1)
	}
	if err != nil {
		l.fail(&l.errs, err.Error())
		return
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		l.fail(&l.errs, "reading the body: "+err.Error())
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		l.fail(&l.non2xx, resp.Status)
	default:
		l.ok.Add(1)
	}
}

func (l *Load) fail(counter *atomic.Int64, what string) {
	counter.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failures) < 10 {
		l.failures = append(l.failures, time.Now().Format("15:04:05.000")+" "+what)
	}
}

// Done counts the requests that have ended so far.
func (l *Load) Done() int64 { return l.ok.Load() + l.non2xx.Load() + l.errs.Load() }

// Stop ends the load, waits for the requests in flight and returns the counts.
func (l *Load) Stop() LoadResult {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	ok, non, errs := l.ok.Load(), l.non2xx.Load(), l.errs.Load()
	return LoadResult{Requests: ok + non + errs, OK: ok, Non2xx: non, Errors: errs, Retried: l.retry.Load(),
		FirstFailures: append([]string(nil), l.failures...)}
}
