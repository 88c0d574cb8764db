package httpapi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/rafterlb/rafter/cluster"
)

// Request headers a forwarded request keeps; everything else (cookies,
// hop-by-hop headers, proxies' additions) stays behind.
var forwardRequestHeaders = [...]string{"Authorization", "Content-Type", "Accept", "User-Agent"}

// Response headers never relayed: they describe the hop, not the answer.
var hopHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true,
	"Transfer-Encoding": true, "Upgrade": true, "Content-Length": true,
}

// forwarded reports whether r was already relayed by a follower.
func forwarded(r *http.Request) bool { return r.Header.Get(HeaderForwarded) != "" }

// forwardOrFail handles err from a leader-only operation: ErrNotLeader on
// a request that was not forwarded yet is relayed once to the leader
// (same method, path, query, body and Authorization); anything else is
// returned for the error mapping.
func (s *server) forwardOrFail(w http.ResponseWriter, r *http.Request, body []byte, err error) error {
	if !errors.Is(err, cluster.ErrNotLeader) {
		return err
	}
	if forwarded(r) {
		return fmt.Errorf("request forwarded by %s reached a node that is not the leader: %w", r.Header.Get(HeaderForwarded), err)
	}
	return s.forward(w, r, body)
}

func (s *server) forward(w http.ResponseWriter, r *http.Request, body []byte) error {
	id, addr := s.store.Leader()
	if addr == "" {
		return fmt.Errorf("forward %s %s: %w", r.Method, r.URL.Path, cluster.ErrNoLeader)
	}
	target := url.URL{
		Scheme:   s.cfg.ForwardScheme,
		Host:     addr,
		Path:     r.URL.Path,
		RawPath:  r.URL.RawPath,
		RawQuery: r.URL.RawQuery,
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, target.String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("forward to leader %s: %w", id, err)
	}
	for _, h := range forwardRequestHeaders {
		if v := r.Header.Values(h); len(v) > 0 {
			req.Header[h] = append([]string(nil), v...)
		}
	}
	from := s.cfg.NodeID
	if from == "" {
		from = "unknown"
	}
	req.Header.Set(HeaderForwarded, from)
	resp, err := s.client.Do(req)
	if err != nil {
		if r.Context().Err() != nil {
			return r.Context().Err()
		}
		return fmt.Errorf("forward to leader %s at %s: %w: %w", id, addr, errLeaderUnreachable, err)
	}
	defer resp.Body.Close()
	h := w.Header()
	for k, vs := range resp.Header {
		if hopHeaders[k] {
			continue
		}
		h[k] = append([]string(nil), vs...)
	}
	w.WriteHeader(resp.StatusCode)
	if _, err := io.Copy(w, resp.Body); err != nil {
		// The status is already sent; all that is left is to say so in the log.
		s.log.Warn("relaying the leader's answer failed", "leader", id, "path", r.URL.Path, "err", err, "action", "none: the client went away or the leader stopped mid-answer; the client may retry")
	}
	return nil
}
