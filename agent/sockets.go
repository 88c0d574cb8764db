package agent

import (
	"errors"
	"net"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// sockets opens the agent's listening sockets: the admin API, Raft and
// every data-plane listener. With an Upgrader they are registered with it
// (or taken over from the process that started this one), so that an
// upgrade hands them to the next process.
//
// The Upgrader keeps a duplicate of every socket it was given, so closing
// a listener would leave the socket listening, with connections waiting
// in its backlog for nobody and its port taken. A listener the agent
// retires (a removed listener, or the whole agent stopping) is therefore
// shut down as well, which stops the socket itself listening whoever
// holds it. While another process serves the same sockets, closing just
// closes this process's descriptor: in a new process until it has taken
// over (if it fails before, the old one keeps serving on them), and in an
// old one once it has handed them over.
type sockets struct {
	upg    Upgrader // nil: plain listeners
	shared atomic.Bool
}

// listen returns the socket registered as key (inherited from the previous
// process if it passed one on), or opens one on addr with open (nil:
// net.Listen). key names the socket's role, so that two listeners with
// port 0 still differ.
func (s *sockets) listen(key, addr string, open func(addr string) (net.Listener, error)) (net.Listener, error) {
	if open == nil {
		open = func(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
	}
	if s.upg == nil {
		return open(addr)
	}
	ln, err := s.upg.ListenWithCallback("tcp", key+" "+addr, func(string, string) (net.Listener, error) {
		return open(addr)
	})
	if err != nil {
		return nil, err
	}
	return &retiringListener{Listener: ln, s: s}, nil
}

// shardKey is the key of socket number shard of the listener whose first
// socket is key. The first keeps the bare key, so that a process with one
// socket per listener and one with several hand the first over to each other.
func shardKey(key string, shard int) string {
	if shard == 0 {
		return key
	}
	return key + " #" + strconv.Itoa(shard)
}

// share makes closing a listener leave its socket to the other process.
func (s *sockets) share() { s.shared.Store(true) }

// own makes closing a listener stop its socket: no other process serves it.
func (s *sockets) own() { s.shared.Store(false) }

type retiringListener struct {
	net.Listener
	s *sockets
}

// Close stops the socket listening (unless another process serves it
// too) and closes this process's descriptor.
func (l *retiringListener) Close() error {
	if !l.s.shared.Load() {
		_ = shutdownListener(l.Listener)
	}
	return l.Listener.Close()
}

// SetDeadline bounds Accept, so that the data plane can stop an accept
// loop and hand the socket to the next server of a changed listener.
func (l *retiringListener) SetDeadline(t time.Time) error {
	d, ok := l.Listener.(interface{ SetDeadline(time.Time) error })
	if !ok {
		return errors.New("listener has no deadline")
	}
	return d.SetDeadline(t)
}

// shutdownListener stops a listening socket for every descriptor of it:
// on Linux shutdown(SHUT_RD) takes it out of the listening state, so its
// port can be bound anew and connections are refused, not queued.
func shutdownListener(ln net.Listener) error {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return errors.New("listener has no descriptor")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = syscall.Shutdown(int(fd), syscall.SHUT_RD) }); err != nil {
		return err
	}
	return serr
}
