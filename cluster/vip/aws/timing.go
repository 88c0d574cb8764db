package aws

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/rafterlb/rafter/cluster/awsec2"
	"github.com/rafterlb/rafter/cluster/vip"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/conf"
)

// Timing is how the private-address movers retry and verify, the same
// rules as the Elastic IP Mover's Config: each cloud write is tried up to
// Attempts times on errors that may pass (throttling or 5xx beyond the
// SDK's own retries, network), with jittered backoff between RetryBase
// and RetryMax, every try behind the Fence; then describes, PollInterval
// apart and doubling up to PollMax, wait up to VerifyTimeout for EC2 to
// show the change (it is eventually consistent).
type Timing struct {
	Attempts      int
	RetryBase     time.Duration
	RetryMax      time.Duration
	VerifyTimeout time.Duration
	PollInterval  time.Duration
	PollMax       time.Duration
}

// DefaultTiming is the production timing, that of DefaultConfig.
func DefaultTiming() Timing {
	d := DefaultConfig()
	return Timing{Attempts: d.Attempts, RetryBase: d.RetryBase, RetryMax: d.RetryMax,
		VerifyTimeout: d.VerifyTimeout, PollInterval: d.PollInterval, PollMax: d.PollMax}
}

func (t Timing) validate(prefix string) error {
	if t.Attempts < 0 || t.Attempts > 20 {
		return fmt.Errorf("%s.attempts: %d out of range 1..20", prefix, t.Attempts)
	}
	return conf.NotNegative(
		conf.Field(prefix+".retry_base", t.RetryBase),
		conf.Field(prefix+".retry_max", t.RetryMax),
		conf.Field(prefix+".verify_timeout", t.VerifyTimeout),
		conf.Field(prefix+".poll_interval", t.PollInterval),
		conf.Field(prefix+".poll_max", t.PollMax),
	)
}

func (t Timing) withDefaults() Timing {
	d := DefaultTiming()
	conf.Default(&t.Attempts, d.Attempts)
	conf.Default(&t.RetryBase, d.RetryBase)
	conf.Default(&t.RetryMax, max(d.RetryMax, t.RetryBase))
	conf.Default(&t.VerifyTimeout, d.VerifyTimeout)
	conf.Default(&t.PollInterval, d.PollInterval)
	conf.Default(&t.PollMax, max(d.PollMax, t.PollInterval))
	return t
}

// fencedWrite runs write behind the fence, retrying what may pass. Each
// try asks the fence first, so a stale token or a lost leadership stops
// the move before EC2 is called again.
func (t Timing) fencedWrite(ctx context.Context, log *slog.Logger, fence Fencer, vipName string, token uint64,
	what string, write func(ctx context.Context) error) error {
	for attempt := 1; ; attempt++ {
		if err := fence.Check(ctx, vipName, token); err != nil {
			return fmt.Errorf("token %d: %w", token, err)
		}
		err := write(ctx)
		if err == nil {
			return nil
		}
		if !retriable(ctx, err) || attempt >= t.Attempts {
			return fmt.Errorf("%s (attempt %d): %w", what, attempt, err)
		}
		wait := vip.Backoff(t.RetryBase, t.RetryMax, attempt)
		log.Warn(what+" failed; retrying", "vip", vipName, "attempt", attempt, "retry_in", wait.Round(time.Millisecond), "err", err)
		if err := sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// verify calls shows until it reports the change visible or VerifyTimeout
// passes; shows returns what it saw when it is not.
func (t Timing) verify(ctx context.Context, shows func(ctx context.Context) (ok bool, saw string, err error)) error {
	ctx, cancel := context.WithTimeout(ctx, t.VerifyTimeout)
	defer cancel()
	poll := t.PollInterval
	var last error
	for {
		ok, saw, err := shows(ctx)
		switch {
		case err == nil && ok:
			return nil
		case err == nil:
			last = errors.New(saw)
		case errors.Is(err, awsec2.ErrUnauthorized):
			return err
		default:
			last = err
		}
		if err := sleep(ctx, poll); err != nil {
			return fmt.Errorf("%w within %s: %w (last: %w)", ErrNotVerified, t.VerifyTimeout, err, last)
		}
		poll = min(poll*2, t.PollMax)
	}
}

// interfaceFor is the network interface node uses for v: the spec's enis
// entry for it, else what targets know of the node.
func interfaceFor(targets Targets, v fsm.VIP, node fsm.Node) (string, bool) {
	if eni, ok := v.Spec.ENIs[node.ID]; ok {
		return eni, true
	}
	t, ok := targets.Target(node)
	return t.ENI, ok && t.ENI != ""
}
