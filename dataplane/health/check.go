package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"
)

// checkLoop runs t's active checks until ctx is done. The first check
// comes after a random part of the interval so that many targets added at
// once do not probe in lockstep; later ones after the interval ±10%.
func (m *Monitor) checkLoop(ctx context.Context, t *target, gen uint64, s *checkSpec, rng *rand.Rand) {
	client, scheme, release, cerr := m.checkClient(t.addr, s)
	if cerr == nil {
		defer release()
	}
	rawURL := scheme + "://" + t.addr + s.path
	host := s.host
	if host == "" {
		host = t.addr
	}
	delay := time.Duration(rng.Float64() * float64(s.interval))
	for {
		timer := m.clock.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C():
		}
		ok, reason := false, ""
		if cerr != nil {
			reason = "tls config: " + cerr.Error()
		} else {
			ok, reason = m.probe(ctx, client, rawURL, host, s)
		}
		if ctx.Err() != nil {
			return
		}
		m.recordActive(t, gen, s, ok, reason)
		delay = time.Duration(float64(s.interval) * (0.9 + 0.2*rng.Float64()))
	}
}

// probe performs one check and says why it failed.
func (m *Monitor) probe(ctx context.Context, client *http.Client, rawURL, host string, s *checkSpec) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return false, fmt.Sprintf("bad check request: %v", err)
	}
	req.Host = host
	req.Header.Set("User-Agent", m.userAgent)
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return false, fmt.Sprintf("timeout after %s", s.timeout)
		}
		return false, describeErr(err)
	}
	// The status is the verdict; the body is not read (the connection is not reused).
	_ = resp.Body.Close()
	if s.expect != 0 {
		if resp.StatusCode != s.expect {
			return false, fmt.Sprintf("status %d, want %d", resp.StatusCode, s.expect)
		}
		return true, ""
	}
	if resp.StatusCode < 200 || resp.StatusCode > 399 {
		return false, fmt.Sprintf("status %d", resp.StatusCode)
	}
	return true, ""
}

// describeErr turns a transport error into a short reason an operator reads.
func describeErr(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connect refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "host unreachable"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

// recordActive applies one check result with rise/fall hysteresis.
func (m *Monitor) recordActive(t *target, gen uint64, s *checkSpec, ok bool, reason string) {
	now := m.clock.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.gen != gen || t.removed {
		return
	}
	t.checks++
	t.lastCheck = now
	if ok {
		t.activeFails = 0
		if t.activeUp {
			return
		}
		t.activeOKs++
		if t.activeOKs >= s.rise {
			t.activeUp = true
			t.activeOKs = 0
			t.healthyReason = fmt.Sprintf("active: %d consecutive successes", s.rise)
			m.setVerdictLocked(t, now)
		}
		return
	}
	t.activeOKs = 0
	t.activeFails++
	if t.activeUp && t.activeFails < s.fall {
		return
	}
	t.activeUp = false
	t.activeReason = fmt.Sprintf("active: %d consecutive failures: %s", t.activeFails, reason)
	m.setVerdictLocked(t, now)
}
