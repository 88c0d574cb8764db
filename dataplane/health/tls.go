package health

import (
	"context"
	"net"
	"net/http"

	"github.com/rafterlb/rafter/dataplane/upstreamtls"
	"github.com/rafterlb/rafter/fsm"
)

// PROXY protocol headers a check sends first to a pool with
// send_proxy_protocol: the check is the proxy's own connection, not a
// client's, which the protocol says with v2 LOCAL and v1 UNKNOWN.
const (
	proxyV1Local = "PROXY UNKNOWN\r\n"
	proxyV2Local = "\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"
)

// checkClient returns the client that checks addr under s, the URL scheme
// to use and a function that releases it. A pool with neither tls nor
// send_proxy_protocol shares the monitor's client. A tls block that cannot
// be loaded fails every check with the reason.
func (m *Monitor) checkClient(addr string, s *checkSpec) (client *http.Client, scheme string, release func(), err error) {
	if !s.useTLS && s.sendProxy == "" {
		return m.client, "http", func() {}, nil
	}
	tr := m.transport.Clone()
	if s.sendProxy != "" {
		hdr := proxyV1Local
		if s.sendProxy == fsm.ProxyProtocolV2 {
			hdr = proxyV2Local
		}
		dial := tr.DialContext
		tr.DialContext = func(ctx context.Context, network, a string) (net.Conn, error) {
			c, err := dial(ctx, network, a)
			if err != nil {
				return nil, err
			}
			if dl, ok := ctx.Deadline(); ok {
				_ = c.SetWriteDeadline(dl)
			}
			if _, err := c.Write([]byte(hdr)); err != nil {
				_ = c.Close()
				return nil, err
			}
			return c, nil
		}
	}
	scheme = "http"
	if s.useTLS {
		cfg, err := upstreamtls.Load(&s.tls)
		if err != nil {
			return nil, "", nil, err
		}
		tr.TLSClientConfig = upstreamtls.ForBackend(cfg, addr)
		scheme = "https"
	}
	c := *m.client
	c.Transport = tr
	return &c, scheme, tr.CloseIdleConnections, nil
}
