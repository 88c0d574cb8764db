package agent

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/secrets"
)

// memStore applies commands with fsm.Next, as the leader would.
type memStore struct {
	mu  sync.Mutex
	cfg *fsm.Config
}

func (m *memStore) Apply(_ context.Context, cmd *fsm.Command) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	next, err := fsm.Next(m.cfg, m.cfg.Index+1, cmd)
	if err != nil {
		return 0, err
	}
	m.cfg = next
	return next.Index, nil
}

func (m *memStore) Config() *fsm.Config {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfg
}

func TestTicketRotator(t *testing.T) {
	text, _ := secrets.Generate()
	kr, err := secrets.Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	st := &memStore{cfg: fsm.Empty()}
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	r := &ticketRotator{store: st, keys: kr, every: 12 * time.Hour, now: func() time.Time { return now },
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), rand: rand.Reader}
	ctx := context.Background()

	// No keys yet: one at once.
	if wait := r.rotateIfDue(ctx); wait != 12*time.Hour {
		t.Fatalf("wait after the first rotation %v", wait)
	}
	tk := st.Config().TicketKeys
	if tk == nil || len(tk.Keys) != 1 || !tk.RotatedAt.Equal(now) {
		t.Fatalf("ticket keys %+v", tk)
	}
	raw, err := kr.Open(tk.Keys[0], secrets.TicketKeyAAD())
	if err != nil || len(raw) != 32 {
		t.Fatalf("the committed key does not open to 32 bytes: %v", err)
	}
	// Not due: nothing, and the wait is what is left.
	now = now.Add(5 * time.Hour)
	if wait := r.rotateIfDue(ctx); wait != 7*time.Hour || st.Config().TicketKeys != tk {
		t.Fatalf("early: wait %v, keys changed %v", wait, st.Config().TicketKeys != tk)
	}
	// Due: a new key first, the old one kept.
	now = now.Add(7 * time.Hour)
	r.rotateIfDue(ctx)
	tk2 := st.Config().TicketKeys
	if len(tk2.Keys) != 2 || tk2.Keys[1] != tk.Keys[0] || tk2.Keys[0] == tk.Keys[0] {
		t.Fatalf("after the second rotation %+v", tk2)
	}
	// A leader whose clock is far behind waits at most one period.
	now = now.Add(-48 * time.Hour)
	if wait := r.rotateIfDue(ctx); wait != 12*time.Hour {
		t.Fatalf("behind: wait %v", wait)
	}
	// A rotation decided on a state another rotation changed meanwhile
	// is refused and looked at again shortly.
	stale := &staleStore{memStore: st, cfg: st.Config()}
	r.store = stale
	now = now.Add(100 * time.Hour)
	st.Apply(ctx, fsm.NewCommand(&fsm.TicketKeysRotate{Key: tk.Keys[0], Prev: st.Config().TicketKeys.ModifyIndex, Time: now}))
	if wait := r.rotateIfDue(ctx); wait != ticketConflictRetry {
		t.Fatalf("after a conflict: wait %v", wait)
	}
	r.store = st
	tk2 = st.Config().TicketKeys
	// Without a secrets key nothing is committed.
	r.keys = nil
	now = now.Add(100 * time.Hour)
	if wait := r.rotateIfDue(ctx); wait != 12*time.Hour || st.Config().TicketKeys != tk2 {
		t.Fatal("a rotation without a secrets key")
	}
}

// staleStore answers an old state but applies to the current one, like a
// leader that has not applied its predecessor's last entry yet.
type staleStore struct {
	*memStore
	cfg *fsm.Config
}

func (s *staleStore) Config() *fsm.Config { return s.cfg }
