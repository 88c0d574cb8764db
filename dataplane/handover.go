package dataplane

import (
	"net"
	"sync/atomic"
	"time"
)

// A listener whose spec changes but whose address does not (a new limit,
// TLS policy or PROXY setting) keeps its sockets: the changed listener's
// new server takes them over from the old one. Binding new sockets and
// closing the old ones would reset every connection waiting in the old
// sockets' accept queues, a few per change under steady traffic; handed
// over, those connections are accepted by the new server. The old server
// goes on serving the connections it has until they end or its drain
// timeout, as a removed listener's does.
//
// socketLease is one server's hold on a listening socket.
type socketLease struct {
	net.Listener
	// released is set once the socket went to the next server: Accept
	// ends as on a closed socket, and Close leaves the socket open.
	released atomic.Bool
}

// deadliner is a listening socket whose Accept can be interrupted.
type deadliner interface {
	SetDeadline(time.Time) error
}

func (l *socketLease) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil && l.released.Load() {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: net.ErrClosed}
	}
	return c, err
}

func (l *socketLease) Close() error {
	if l.released.Load() {
		return nil
	}
	return l.Listener.Close()
}

// release ends the lease: an Accept in progress or to come returns as on
// a closed socket, which ends the server's accept loop. A connection the
// kernel hands to an Accept at that moment is still returned and served.
func (l *socketLease) release() {
	l.released.Store(true)
	// A deadline in the past: Accept returns at once, and the next
	// server clears it before it accepts.
	_ = l.Listener.(deadliner).SetDeadline(time.Unix(1, 0))
}

// handOver stops ls accepting and returns its sockets, for the server of
// the listener's changed spec; nil when a socket cannot be interrupted
// (the caller binds new ones then). Dataplane.mu must be held.
func (ls *listenerServer) handOver() []net.Listener {
	for _, l := range ls.leases {
		if d, ok := l.Listener.(deadliner); !ok || d.SetDeadline(time.Time{}) != nil {
			return nil
		}
	}
	for _, l := range ls.leases {
		l.release()
	}
	if ls.started {
		// Accept loops return at once; one sleeping out an accept error
		// returns after its backoff (at most a second).
		<-ls.done
	}
	raw := make([]net.Listener, len(ls.leases))
	for i, l := range ls.leases {
		_ = l.Listener.(deadliner).SetDeadline(time.Time{})
		raw[i] = l.Listener
	}
	return raw
}
