package fsm

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
)

// FSM holds the current document and applies committed entries to it. One
// goroutine applies; any number read Config() without locking.
type FSM struct {
	cur atomic.Pointer[Config]

	mu      sync.Mutex // guards changed
	changed chan struct{}

	memo *Memo

	expMu sync.Mutex
	exp   []expected // see Expect
}

// expected is a command's outcome computed before it was committed: next
// is Next(base, index, the command encoded as data).
type expected struct {
	base  *Config
	index uint64
	data  []byte
	next  *Config
}

// maxExpected bounds the outcomes kept by Expect: one per write in flight
// on the leader, beyond which the oldest is dropped (and computed again at
// apply).
const maxExpected = 8

// New returns an FSM holding Empty().
func New() *FSM {
	f := &FSM{changed: make(chan struct{}), memo: NewMemo()}
	f.cur.Store(Empty())
	return f
}

// Apply decodes and applies one committed entry. On error the document is
// unchanged, but Config().Index still advances to index, because the entry
// was consumed. Safe for one writer and many concurrent readers.
func (f *FSM) Apply(index uint64, data []byte) error {
	cur := f.cur.Load()
	if next := f.expected(cur, index, data); next != nil {
		f.publish(next)
		return nil
	}
	cmd, err := DecodeCommand(data)
	if err == nil {
		var next *Config
		if next, err = NextMemo(cur, index, cmd, f.memo); err == nil {
			f.publish(next)
			return nil
		}
	}
	same := *cur
	same.Index = index
	f.publish(&same)
	return err
}

// Next is Next(c, index, cmd) sharing this FSM's memo, so that checking a
// command before proposing it makes its apply cheaper too.
func (f *FSM) Next(c *Config, index uint64, cmd *Command) (*Config, error) {
	return NextMemo(c, index, cmd, f.memo)
}

// Check computes what applying the log entry data at index to c gives,
// as Apply would, without applying it: the leader's check of a command
// before it proposes it. The entry is decoded first, so what is checked is
// exactly what every node will apply.
func (f *FSM) Check(c *Config, index uint64, data []byte) (*Config, error) {
	cmd, err := DecodeCommand(data)
	if err != nil {
		return nil, err
	}
	return NextMemo(c, index, cmd, f.memo)
}

// Expect records next, returned by Check(base, index, data), so that
// applying the same entry at the same index to the same document publishes
// next instead of computing it again: the leader then builds each
// document once, not twice. Next is deterministic, which is what lets
// every node apply the log on its own, so the outcome is the one Apply
// would compute. An expectation whose base is no longer current (another
// entry was applied first) is dropped at the next Apply.
func (f *FSM) Expect(base *Config, index uint64, data []byte, next *Config) {
	f.expMu.Lock()
	defer f.expMu.Unlock()
	if len(f.exp) == maxExpected {
		f.exp = append(f.exp[:0], f.exp[1:]...)
	}
	f.exp = append(f.exp, expected{base: base, index: index, data: data, next: next})
}

// expected returns the recorded outcome of data at index on cur, or nil,
// and forgets every expectation on another document than cur.
func (f *FSM) expected(cur *Config, index uint64, data []byte) *Config {
	f.expMu.Lock()
	defer f.expMu.Unlock()
	var next *Config
	kept := f.exp[:0]
	for _, e := range f.exp {
		switch {
		case e.base != cur:
		case next == nil && e.index == index && bytes.Equal(e.data, data):
			next = e.next
		default:
			kept = append(kept, e)
		}
	}
	clear(f.exp[len(kept):])
	f.exp = kept
	return next
}

// Config returns the current document. It is immutable: never modify it.
func (f *FSM) Config() *Config { return f.cur.Load() }

// Restore replaces the whole state, as when installing a Raft snapshot. A
// nil c restores the empty document.
func (f *FSM) Restore(c *Config) {
	if c == nil {
		c = Empty()
	} else {
		cc := *c
		fillMaps(&cc)
		c = &cc
	}
	f.publish(c)
}

// Changed returns a channel closed at the next change of Config() after the
// call. Callers re-read Config() when it closes and call Changed again.
func (f *FSM) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

func (f *FSM) publish(c *Config) {
	f.cur.Store(c)
	f.mu.Lock()
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

// Source is what publishes configurations: an FSM, or a node around one.
type Source interface {
	Config() *Config
	Changed() <-chan struct{}
}

// WaitIndex blocks until src's configuration has reached index, and
// returns it; when ctx ends first it returns the configuration it has and
// ctx's error.
func WaitIndex(ctx context.Context, src Source, index uint64) (*Config, error) {
	for {
		// Taking the channel before reading the index means a change in
		// between still wakes us.
		ch := src.Changed()
		c := src.Config()
		if c != nil && c.Index >= index {
			return c, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return c, ctx.Err()
		}
	}
}
