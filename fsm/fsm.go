package fsm

import (
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
}

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
