package clustertest

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"
)

// ErrPartitioned is what an RPC across a partition fails with.
var ErrPartitioned = errors.New("clustertest: partitioned")

// FaultTransport wraps a raft.InmemTransport and drops every RPC to the
// addresses it is told to block. It forwards every RPC type, including
// pre-vote: Raft only uses pre-vote when the transport implements
// raft.WithPreVote, and a wrapper that hid it would make elections behave
// differently from production.
type FaultTransport struct {
	inner *raft.InmemTransport

	mu      sync.RWMutex
	blocked map[raft.ServerAddress]bool
}

var (
	_ raft.Transport   = (*FaultTransport)(nil)
	_ raft.WithPreVote = (*FaultTransport)(nil)
	_ raft.WithClose   = (*FaultTransport)(nil)
	_ raft.WithPeers   = (*FaultTransport)(nil)
)

// NewFaultTransport wraps inner.
func NewFaultTransport(inner *raft.InmemTransport) *FaultTransport {
	return &FaultTransport{inner: inner, blocked: make(map[raft.ServerAddress]bool)}
}

// Inner returns the wrapped transport.
func (t *FaultTransport) Inner() *raft.InmemTransport { return t.inner }

// Block makes RPCs to addr fail until Unblock.
func (t *FaultTransport) Block(addr raft.ServerAddress) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.blocked[addr] = true
}

// Unblock lets RPCs to addr through again.
func (t *FaultTransport) Unblock(addr raft.ServerAddress) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.blocked, addr)
}

// UnblockAll removes every block.
func (t *FaultTransport) UnblockAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.blocked)
}

func (t *FaultTransport) check(target raft.ServerAddress) error {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.blocked[target] {
		return fmt.Errorf("%w: %s -> %s", ErrPartitioned, t.inner.LocalAddr(), target)
	}
	return nil
}

func (t *FaultTransport) Consumer() <-chan raft.RPC             { return t.inner.Consumer() }
func (t *FaultTransport) LocalAddr() raft.ServerAddress         { return t.inner.LocalAddr() }
func (t *FaultTransport) SetHeartbeatHandler(cb func(raft.RPC)) { t.inner.SetHeartbeatHandler(cb) }

func (t *FaultTransport) EncodePeer(id raft.ServerID, addr raft.ServerAddress) []byte {
	return t.inner.EncodePeer(id, addr)
}

func (t *FaultTransport) DecodePeer(b []byte) raft.ServerAddress { return t.inner.DecodePeer(b) }

func (t *FaultTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	if err := t.check(target); err != nil {
		return nil, err
	}
	p, err := t.inner.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	return &faultPipeline{AppendPipeline: p, t: t, target: target}, nil
}

func (t *FaultTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if err := t.check(target); err != nil {
		return err
	}
	return t.inner.AppendEntries(id, target, args, resp)
}

func (t *FaultTransport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	if err := t.check(target); err != nil {
		return err
	}
	return t.inner.RequestVote(id, target, args, resp)
}

func (t *FaultTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if err := t.check(target); err != nil {
		return err
	}
	return t.inner.RequestPreVote(id, target, args, resp)
}

func (t *FaultTransport) InstallSnapshot(id raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	if err := t.check(target); err != nil {
		return err
	}
	return t.inner.InstallSnapshot(id, target, args, resp, data)
}

func (t *FaultTransport) TimeoutNow(id raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	if err := t.check(target); err != nil {
		return err
	}
	return t.inner.TimeoutNow(id, target, args, resp)
}

// Connect, Disconnect and DisconnectAll act on the wrapped transport; a
// peer given as a FaultTransport is unwrapped, since InmemTransport only
// connects to its own kind.
func (t *FaultTransport) Connect(peer raft.ServerAddress, other raft.Transport) {
	if ft, ok := other.(*FaultTransport); ok {
		other = ft.inner
	}
	t.inner.Connect(peer, other)
}

func (t *FaultTransport) Disconnect(peer raft.ServerAddress) { t.inner.Disconnect(peer) }
func (t *FaultTransport) DisconnectAll()                     { t.inner.DisconnectAll() }
func (t *FaultTransport) Close() error                       { return t.inner.Close() }

// faultPipeline checks the partition on every pipelined AppendEntries, so a
// pipeline opened before a partition does not tunnel through it.
type faultPipeline struct {
	raft.AppendPipeline
	t      *FaultTransport
	target raft.ServerAddress
}

func (p *faultPipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	if err := p.t.check(p.target); err != nil {
		return nil, err
	}
	return p.AppendPipeline.AppendEntries(args, resp)
}
