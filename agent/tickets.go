package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/rafterlb/rafter/cluster/leading"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/secrets"
)

// Bounds of --tls-ticket-rotation: often enough that a stolen ticket key
// opens little, rarely enough that a client's ticket (valid while its key
// is one of the fsm.MaxTicketKeys kept) lives for a few rotations.
const (
	DefaultTicketKeyRotation = 12 * time.Hour
	minTicketKeyRotation     = time.Minute
	maxTicketKeyRotation     = 7 * 24 * time.Hour
	// ticketRetry is the pause after a failed rotation.
	ticketRetry = 5 * time.Second
	// ticketConflictRetry is the pause after a rotation another one beat.
	ticketConflictRetry = 100 * time.Millisecond
)

// ticketStore is what the rotator needs of the Raft node.
type ticketStore interface {
	Apply(ctx context.Context, cmd *fsm.Command) (uint64, error)
	Config() *fsm.Config
}

// ticketRotator gives the cluster its TLS session-ticket keys: while this
// node leads, it generates a key when the newest is older than every (or
// there is none), seals it with the secrets key and commits it, so that
// every node resumes every other node's sessions.
type ticketRotator struct {
	store ticketStore
	keys  *secrets.Keyring
	every time.Duration
	now   func() time.Time
	log   *slog.Logger
	rand  io.Reader
}

// Run rotates while this node leads, until ctx ends.
func (r *ticketRotator) Run(ctx context.Context, leads <-chan leading.Leadership) {
	_ = leading.Follow(ctx, leads, func(ctx context.Context, _ uint64) func() {
		ctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { r.lead(ctx) })
		return func() { cancel(); wg.Wait() }
	}, nil)
}

func (r *ticketRotator) lead(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		t.Reset(r.rotateIfDue(ctx))
	}
}

// rotateIfDue commits a new key when one is due and returns how long to
// wait before looking again.
func (r *ticketRotator) rotateIfDue(ctx context.Context) time.Duration {
	now := r.now()
	var prev uint64
	if tk := r.store.Config().TicketKeys; tk != nil {
		prev = tk.ModifyIndex
		if due := tk.RotatedAt.Add(r.every); now.Before(due) {
			// A leader whose clock is behind the last one's waits at most
			// one period.
			return min(due.Sub(now), r.every)
		}
	}
	raw := make([]byte, 32)
	if _, err := io.ReadFull(r.rand, raw); err != nil {
		r.log.Error("TLS session-ticket key not rotated", "err", err, "action", "none: retried shortly")
		return ticketRetry
	}
	sealed, err := r.keys.Seal(raw, secrets.TicketKeyAAD())
	clear(raw)
	if err != nil {
		r.log.Error("TLS session-ticket key not rotated", "err", err, "action", "start this node with the cluster's --secrets-key-file")
		return r.every
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = r.store.Apply(cctx, fsm.NewCommand(&fsm.TicketKeysRotate{Key: sealed, Prev: prev, Time: now.UTC()}))
	switch {
	case err == nil:
		r.log.Info("TLS session-ticket key rotated", "previous_index", prev)
		return r.every
	case errors.Is(err, fsm.ErrConflict):
		// Rotated meanwhile (a previous leader's entry applied after this
		// node read its state): look again once it has.
		return ticketConflictRetry
	case ctx.Err() != nil:
		return r.every
	}
	r.log.Warn("TLS session-ticket key not rotated", "err", err, "action", "none: retried shortly")
	return ticketRetry
}
