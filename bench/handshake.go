package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Handshaker opens TLS connections from Workers goroutines, one after
// another: each a full handshake, then closed without a request. The client
// keeps no session cache, so nothing is resumed, and it offers only X25519,
// so every server does the same key exchange whatever its library prefers.
//
// The client closes first, so every connection leaves a TIME_WAIT socket
// on its side for a minute; at thousands of handshakes a second one source
// address would run out of ports. Dials rotate over SourceIPs loopback
// source addresses (127.0.1.1, 127.0.1.2, …) instead.
type Handshaker struct {
	Addr       string // host:port
	ServerName string
	Roots      *x509.CertPool
	Workers    int
	Timeout    time.Duration // per handshake
	SourceIPs  int           // 1..250; 0 means 1
}

// sourceIP is the n-th loopback source address of a handshaker with k of them.
func sourceIP(n int64, k int) net.IP {
	k = min(max(k, 1), 250)
	return net.IPv4(127, 0, 1, byte(1+n%int64(k)))
}

// HandshakeResult counts what Run did.
type HandshakeResult struct {
	Done     int64
	Errors   int64
	Seconds  float64
	FirstErr string
}

// Run handshakes for d and at most maxCount times, whichever ends first.
func (h Handshaker) Run(ctx context.Context, d time.Duration, maxCount int64) (HandshakeResult, error) {
	if h.Workers < 1 || maxCount < 1 || h.Timeout <= 0 {
		return HandshakeResult{}, fmt.Errorf("handshaker: workers %d, count %d, timeout %v", h.Workers, maxCount, h.Timeout)
	}
	conf := &tls.Config{
		ServerName:         h.ServerName,
		RootCAs:            h.Roots,
		ClientSessionCache: nil,
		CurvePreferences:   []tls.CurveID{tls.X25519},
		MinVersion:         tls.VersionTLS13,
	}
	// The loop watches the clock itself, not only ctx: on a loaded machine
	// ctx's timer may fire late, and every dial in between would fail at
	// once on the passed deadline and count as an error.
	end := time.Now().Add(d)
	ctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	var budget, done, errs atomic.Int64
	budget.Store(maxCount)
	var first atomic.Pointer[string]
	var dials atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < h.Workers; w++ {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(end) && budget.Add(-1) >= 0 {
				dialer := &net.Dialer{Timeout: h.Timeout, LocalAddr: &net.TCPAddr{IP: sourceIP(dials.Add(1), h.SourceIPs)}}
				err := handshakeOnce(ctx, dialer, h.Addr, conf, h.Timeout)
				switch {
				case err == nil:
					done.Add(1)
				case ctx.Err() != nil || !time.Now().Before(end):
					return // cut off by the deadline: neither success nor failure
				default:
					errs.Add(1)
					msg := err.Error()
					first.CompareAndSwap(nil, &msg)
				}
			}
		})
	}
	wg.Wait()
	r := HandshakeResult{Done: done.Load(), Errors: errs.Load(), Seconds: time.Since(start).Seconds()}
	if p := first.Load(); p != nil {
		r.FirstErr = *p
	}
	if r.Done == 0 {
		return r, fmt.Errorf("%w: no handshake with %s completed (%d errors: %s)", ErrHandshake, h.Addr, r.Errors, r.FirstErr)
	}
	return r, nil
}

// ErrHandshake marks a handshake run that completed nothing.
var ErrHandshake = errors.New("TLS handshakes failed")

func handshakeOnce(ctx context.Context, d *net.Dialer, addr string, conf *tls.Config, timeout time.Duration) error {
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(timeout))
	c := tls.Client(raw, conf)
	if err := c.HandshakeContext(ctx); err != nil {
		return err
	}
	return nil
}
