package dataplane

import (
	"crypto/tls"
	"log/slog"
	"net"
	"sync/atomic"
	"time"
)

// connLimit caps the open connections of one listener over all of its
// sockets. A connection counts from its accept until it closes, parked
// ones included (park.go), and an Upgrade's until its tunnel ends.
type connLimit struct {
	max int64
	// open counts the listener's open connections. It is the listener's
	// (Dataplane.openConns), not the server's: connections of a server
	// the listener had before a change, still open while it drains,
	// count against the new server's max too.
	open *atomic.Int64
}

// release gives back a connection's place.
func (l *connLimit) release() { l.open.Add(-1) }

// rejectWriteTimeout bounds the 503 written to a connection over the
// limit, so that a client that does not read cannot hold up the accept loop.
const rejectWriteTimeout = 100 * time.Millisecond

// limitListener refuses, the way fasthttp does past its Concurrency, the
// connections that would take its listener past lim.
type limitListener struct {
	net.Listener
	lim  *connLimit
	log  *slog.Logger
	name string
}

func (l limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.lim.open.Add(1) <= l.lim.max {
			return c, nil
		}
		l.lim.open.Add(-1)
		// A TLS connection has not done its handshake: an answer would wait
		// for the client's hello. It is closed without one, as fasthttp does.
		if _, isTLS := c.(*tls.Conn); !isTLS {
			_ = c.SetWriteDeadline(time.Now().Add(rejectWriteTimeout))
			_, _ = c.Write([]byte(overLimitResponse))
		}
		_ = c.Close()
		l.log.Debug("connection refused: listener at max_conns", "listener", l.name, "max_conns", l.lim.max)
	}
}

const overLimitResponse = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 31\r\n\r\nlistener connection limit hit\r\n"
