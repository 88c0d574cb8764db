package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Backend is the one fast backend every proxy forwards to: GET /<n> answers
// n bytes, n among the configured body sizes (anything else is 404).
type Backend struct {
	Addr   string
	ln     net.Listener
	srv    *fasthttp.Server
	served chan struct{}
}

// StartBackend listens on 127.0.0.1:0 and serves until Close.
func StartBackend(sizes []int) (*Backend, error) {
	bodies := map[string][]byte{}
	for _, n := range sizes {
		bodies["/"+strconv.Itoa(n)] = bytes.Repeat([]byte("x"), n)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("backend listen: %w", err)
	}
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			body, ok := bodies[string(ctx.Path())]
			if !ok {
				ctx.SetStatusCode(fasthttp.StatusNotFound)
				return
			}
			ctx.Response.Header.SetContentTypeBytes([]byte("application/octet-stream"))
			ctx.SetBody(body)
		},
		NoDefaultServerHeader: true,
		NoDefaultDate:         true,
		IdleTimeout:           2 * time.Minute,
		Concurrency:           64 * 1024,
	}
	b := &Backend{Addr: ln.Addr().String(), ln: ln, srv: srv, served: make(chan struct{})}
	go func() {
		defer close(b.served)
		_ = srv.Serve(ln)
	}()
	return b, nil
}

// Close stops the backend and waits for its server goroutine.
func (b *Backend) Close() {
	_ = b.srv.Shutdown()
	_ = b.ln.Close()
	<-b.served
}

// WrkResult is what wrk's text report says.
type WrkResult struct {
	Requests int64
	Seconds  float64
	RPS      float64
	Errors   int64 // socket errors plus non-2xx/3xx answers
	// P99 is wrk's own 99th percentile (--latency): closed-loop, so it
	// says how long a request waited at saturation, not at a given rate.
	P99 time.Duration
}

// ErrWrkOutput marks wrk output that does not parse.
var ErrWrkOutput = errors.New("unexpected wrk output")

// ParseWrk reads wrk 4's report.
func ParseWrk(out string) (WrkResult, error) {
	var r WrkResult
	var haveReq, haveRPS bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.Contains(line, " requests in "):
			// "123456 requests in 5.00s, 12.34MB read"
			f := strings.Fields(line)
			if len(f) < 4 {
				return r, fmt.Errorf("%w: %q", ErrWrkOutput, line)
			}
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return r, fmt.Errorf("%w: %q", ErrWrkOutput, line)
			}
			d, err := time.ParseDuration(strings.TrimSuffix(f[3], ","))
			if err != nil {
				return r, fmt.Errorf("%w: duration in %q", ErrWrkOutput, line)
			}
			r.Requests, r.Seconds, haveReq = n, d.Seconds(), true
		case strings.HasPrefix(line, "99%") && len(strings.Fields(line)) == 2:
			// "99%    3.21ms" under "Latency Distribution"
			d, err := parseWrkDuration(strings.Fields(line)[1])
			if err != nil {
				return r, fmt.Errorf("%w: %q", ErrWrkOutput, line)
			}
			r.P99 = d
		case strings.HasPrefix(line, "Requests/sec:"):
			v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, "Requests/sec:")), 64)
			if err != nil {
				return r, fmt.Errorf("%w: %q", ErrWrkOutput, line)
			}
			r.RPS, haveRPS = v, true
		case strings.HasPrefix(line, "Socket errors:"):
			// "Socket errors: connect 0, read 0, write 0, timeout 0"
			for _, part := range strings.Split(strings.TrimPrefix(line, "Socket errors:"), ",") {
				f := strings.Fields(part)
				if len(f) == 2 {
					n, err := strconv.ParseInt(f[1], 10, 64)
					if err != nil {
						return r, fmt.Errorf("%w: %q", ErrWrkOutput, line)
					}
					r.Errors += n
				}
			}
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:"):
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(line, "Non-2xx or 3xx responses:")), 10, 64)
			if err != nil {
				return r, fmt.Errorf("%w: %q", ErrWrkOutput, line)
			}
			r.Errors += n
		}
	}
	if !haveReq || !haveRPS {
		return r, fmt.Errorf("%w: no request count or rate in %q", ErrWrkOutput, out)
	}
	return r, nil
}

// parseWrkDuration reads wrk's latency units: us, ms, s, m.
func parseWrkDuration(v string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(v, "m"); ok && !strings.HasSuffix(n, "u") {
		v = n + "min"
	}
	unit := strings.TrimLeft(v, "0123456789.")
	num, err := strconv.ParseFloat(strings.TrimSuffix(v, unit), 64)
	if err != nil {
		return 0, err
	}
	scale := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "min": time.Minute}[unit]
	if scale == 0 {
		return 0, fmt.Errorf("unit %q", unit)
	}
	return time.Duration(num * float64(scale)), nil
}

// Wrk runs the wrk binary.
type Wrk struct {
	Bin  string
	Core int // -1: not pinned
	// CPUList, when set, pins to these cores instead ("0,1").
	CPUList     string
	Connections int
	// Threads is wrk's -t (default 1).
	Threads int
}

// Run drives url for d with one thread and parses the report.
func (w Wrk) Run(ctx context.Context, url string, d time.Duration) (WrkResult, error) {
	secsArg := max(1, int(d.Round(time.Second)/time.Second))
	args := []string{"-t" + strconv.Itoa(max(1, w.Threads)), "-c" + strconv.Itoa(w.Connections), "-d" + strconv.Itoa(secsArg) + "s",
		"--timeout", "5s", "--latency", url}
	path := w.Bin
	cpus := w.CPUList
	if cpus == "" && w.Core >= 0 {
		cpus = strconv.Itoa(w.Core)
	}
	if cpus != "" {
		args = append([]string{"-c", cpus, w.Bin}, args...)
		path = "taskset"
	}
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err != nil {
		return WrkResult{}, fmt.Errorf("wrk: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return ParseWrk(string(out))
}

// PacedResult is the open-loop client's figures.
type PacedResult struct {
	Sent      int64
	Errors    int64
	Seconds   float64
	Latencies []time.Duration // sorted
}

// Paced is an open-loop client: request i is due at start + i/rate and its
// latency is measured from that due time, not from when a connection was
// free to send it, so a stalled proxy is charged for every request it
// delayed (no coordinated omission).
type Paced struct {
	Addr    string // host:port
	Path    string
	Rate    float64
	Workers int
	Timeout time.Duration
}

// Run sends rate*d requests (bounded by maxCount) and stops at d plus the
// timeout at the latest. Requests not sent when the deadline hits count as errors.
func (p Paced) Run(ctx context.Context, d time.Duration, maxCount int) (PacedResult, error) {
	if p.Rate <= 0 || p.Workers < 1 {
		return PacedResult{}, fmt.Errorf("paced client: rate %v workers %d", p.Rate, p.Workers)
	}
	count := min(maxCount, int(p.Rate*d.Seconds()))
	if count < 1 {
		return PacedResult{}, fmt.Errorf("paced client: %v at %v/s is no request", d, p.Rate)
	}
	client := &fasthttp.HostClient{
		Addr:                          p.Addr,
		MaxConns:                      p.Workers,
		ReadTimeout:                   p.Timeout,
		WriteTimeout:                  p.Timeout,
		MaxIdleConnDuration:           time.Minute,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
	}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, d+p.Timeout+time.Second)
	defer cancel()

	interval := time.Duration(float64(time.Second) / p.Rate)
	lat := make([]time.Duration, count)
	okv := make([]bool, count)
	var next atomic.Int64
	start := time.Now().Add(20 * time.Millisecond)
	uri := "http://" + p.Addr + p.Path
	var wg sync.WaitGroup
	for w := 0; w < p.Workers; w++ {
		wg.Go(func() {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI(uri)
			for {
				i := next.Add(1) - 1
				if i >= int64(count) || ctx.Err() != nil {
					return
				}
				due := start.Add(time.Duration(i) * interval)
				if wait := time.Until(due); wait > 0 {
					t := time.NewTimer(wait)
					select {
					case <-ctx.Done():
						t.Stop()
						return
					case <-t.C:
					}
				}
				err := client.DoTimeout(req, resp, p.Timeout)
				lat[i] = time.Since(due)
				okv[i] = err == nil && resp.StatusCode() == fasthttp.StatusOK
			}
		})
	}
	wg.Wait()
	res := PacedResult{Sent: int64(count), Seconds: time.Since(start).Seconds()}
	res.Latencies = make([]time.Duration, 0, count)
	for i := range lat {
		if okv[i] {
			res.Latencies = append(res.Latencies, lat[i])
		}
	}
	res.Errors = int64(count - len(res.Latencies))
	slices.Sort(res.Latencies)
	return res, nil
}
