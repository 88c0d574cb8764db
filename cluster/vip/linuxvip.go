package vip

import (
	"context"
	"fmt"
	"iter"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/rafterlb/rafter/cluster/probe"
	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/conf"
)

// Reports is what the leader knows of each node from its probes
// (*probe.Tracker).
type Reports interface {
	Report(node string) (probe.Report, bool)
}

// Handover decides, on the leader, when the holder of a Linux VIP may add
// its address: only once no other node can still have it. A settled
// assignment (fsm.Assignment.Settled) is known to be past that point, and
// its holder may claim it again at once, after a leader change too.
// Otherwise every other node
// must either have reported that it does not hold the VIP in a probe sent
// after the last answer whose grant of the VIP it could act on
// (probe.Report.Clear), or have been silent for Delay: its lease (measured from the send time of
// its last answered probe, which is before the leader heard it) has run
// out and the kernel has dropped the address by then.
type Handover struct {
	store   interface{ Config() *fsm.Config }
	reports Reports
	delay   time.Duration
	now     func() time.Time
}

// NewHandover returns the probe.Granter for Linux VIPs. delay is the
// holders' lease period plus the address lifetime and the kernel's slack,
// plus a margin; now nil means time.Now.
func NewHandover(store interface{ Config() *fsm.Config }, reports Reports, delay time.Duration, now func() time.Time) *Handover {
	conf.Now(&now)
	return &Handover{store: store, reports: reports, delay: delay, now: now}
}

// Grants returns the Linux VIPs assigned to node that it may claim now,
// name -> assignment token.
func (h *Handover) Grants(node string) map[string]uint64 {
	cfg := h.store.Config()
	var out map[string]uint64
	reports := map[string]probe.Report{}
	for name, a := range cfg.Assignments {
		v, ok := cfg.VIPs[name]
		if !ok || a.Holder != node || v.Spec.Provider != fsm.ProviderLinux {
			continue
		}
		if !a.Settled && !h.clear(cfg, name, node, reports) {
			continue
		}
		if out == nil {
			out = map[string]uint64{}
		}
		out[name] = a.Token
	}
	return out
}

// clear: no node but holder may still hold vip. reports caches one view
// per call.
func (h *Handover) clear(cfg *fsm.Config, vip, holder string, reports map[string]probe.Report) bool {
	blocker, _ := h.blocker(cfg, maps.Keys(cfg.Nodes), vip, holder, reports)
	return blocker == ""
}

// blocker names the first node of ids that may still hold vip, and why;
// "" when none may, and then holder may claim it. Not leading: every
// node counts as unknown.
func (h *Handover) blocker(cfg *fsm.Config, ids iter.Seq[string], vip, holder string, reports map[string]probe.Report) (node, why string) {
	now := h.now()
	for id := range ids {
		if id == holder {
			continue
		}
		r, ok := reports[id]
		if !ok {
			if r, ok = h.reports.Report(id); !ok {
				return id, "this node does not lead" // grant nothing
			}
			reports[id] = r
		}
		// A report of not holding counts only when the node sent it after
		// it could last act on a grant of vip (probe.Report.Clear): the
		// answer to that very probe, or to an earlier one still its newest,
		// may have granted vip, and the node may claim it after it wrote
		// the report.
		if r.Clear(vip) {
			continue
		}
		if silent := now.Sub(r.Arrived); silent < h.delay {
			switch {
			case !r.Reported:
				why = fmt.Sprintf("not heard from in this term; %s of the %s hand-over delay passed", silent.Round(time.Millisecond), h.delay)
			case r.Pending[vip]:
				why = "granted it, and has sent no probe since"
			default:
				why = fmt.Sprintf("reports holding it with token %d", r.Holding[vip])
			}
			return id, why
		}
	}
	return "", ""
}

// Waiting says why holder, assigned vip, may not claim it yet; "" when it
// may (or the assignment is settled).
func (h *Handover) Waiting(vip, holder string) string {
	cfg := h.store.Config()
	if a, ok := cfg.Assignments[vip]; ok && a.Settled {
		return ""
	}
	ids := slices.Values(slices.Sorted(maps.Keys(cfg.Nodes)))
	node, why := h.blocker(cfg, ids, vip, holder, map[string]probe.Report{})
	if node == "" {
		return ""
	}
	return fmt.Sprintf("node %s: %s", node, why)
}

// LinuxMover is the leader's Mover for Linux VIPs. The leader writes no
// address itself: the holder adds it once Handover grants it. Move returns
// when the holder reports it holds the VIP with this token; the Controller
// then records the hand-over as settled.
type LinuxMover struct {
	Fence   *Fence
	Reports Reports
	// Handover, when set, says in the warning of a long wait which node
	// holds the grant up.
	Handover *Handover
	Poll     time.Duration // default 20ms
	// WarnAfter is how long Move waits before it says at WARN what it
	// waits for (default 5s); Logger nil: slog.Default.
	WarnAfter time.Duration
	// ClaimTimeout is how long Move waits, once the leader grants the
	// target the VIP (Handover; nil: from the start), for the target to
	// report the address before it fails with ErrNotClaimed (default 15s:
	// far longer than a hand-over from a silent holder takes).
	ClaimTimeout time.Duration
	Logger       *slog.Logger
}

// DefaultClaimTimeout is LinuxMover.ClaimTimeout's default.
const DefaultClaimTimeout = 15 * time.Second

var (
	_ Mover   = (*LinuxMover)(nil)
	_ Checker = (*LinuxMover)(nil)
)

// Move waits until target reports holding v with token; the fence is
// checked first and every half second, so a deposed leader stops waiting.
// It fails with ErrNotClaimed once the target has had the grant for
// ClaimTimeout.
func (m *LinuxMover) Move(ctx context.Context, v fsm.VIP, target fsm.Node, token uint64) error {
	poll := m.Poll
	if poll <= 0 {
		poll = 20 * time.Millisecond
	}
	warnAfter, claimTimeout := m.WarnAfter, m.ClaimTimeout
	if warnAfter <= 0 {
		warnAfter = 5 * time.Second
	}
	if claimTimeout <= 0 {
		claimTimeout = DefaultClaimTimeout
	}
	// grantedAt: since when the leader has granted target the VIP; zero
	// while another node may still hold it. Only a target that had the
	// grant for claimTimeout has failed to claim: until then the wait is
	// for the previous holder to let go.
	var fenced, grantedAt time.Time
	start, warned := time.Now(), false
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		now := time.Now()
		if now.Sub(fenced) >= 500*time.Millisecond {
			if err := m.Fence.Check(ctx, v.Name, token); err != nil {
				return err
			}
			fenced = now
			switch granted := m.Handover == nil || m.Handover.Waiting(v.Name, target.ID) == ""; {
			case !granted:
				grantedAt = time.Time{}
			case grantedAt.IsZero():
				grantedAt = now
			}
		}
		if m.holds(v.Name, target.ID, token) {
			if warned {
				m.logger().Info("linux vip claimed after a long wait", "vip", v.Name, "node", target.ID, "token", token,
					"waited", now.Sub(start).Round(time.Millisecond))
			}
			return nil
		}
		if !warned && now.Sub(start) >= warnAfter {
			warned = true
			m.warnWaiting(v.Name, target.ID, token, now.Sub(start))
		}
		if !grantedAt.IsZero() && now.Sub(grantedAt) >= claimTimeout {
			return fmt.Errorf("vip: %s: %w: node %s has not reported holding it with token %d within %s of its grant",
				v.Name, ErrNotClaimed, target.ID, token, claimTimeout)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("vip: %s: node %s has not reported holding it with token %d: %w", v.Name, target.ID, token, ctx.Err())
		case <-tick.C:
		}
	}
}

// InPlace reports whether holder says it holds v with its current token
// and that hand-over is settled.
func (m *LinuxMover) InPlace(_ context.Context, v fsm.VIP, holder fsm.Node) (bool, error) {
	r, ok := m.Reports.Report(holder.ID)
	if !ok {
		return false, fmt.Errorf("vip: %w", ErrNotLeader)
	}
	tok, holds := r.Holding[v.Name]
	cfg := m.Fence.store.Config()
	a, assigned := cfg.Assignments[v.Name]
	// Unsettled, the hand-over must still be recorded: Move does that.
	return holds && assigned && tok == a.Token && a.Settled, nil
}

func (m *LinuxMover) logger() *slog.Logger {
	if m.Logger != nil {
		return m.Logger
	}
	return slog.Default()
}

// warnWaiting says what the leader knows of a hand-over that takes long:
// what the target last reported, and who holds the grant up.
func (m *LinuxMover) warnWaiting(vip, node string, token uint64, waited time.Duration) {
	attrs := []any{"vip", vip, "node", node, "token", token, "waiting", waited.Round(time.Millisecond)}
	if r, ok := m.Reports.Report(node); ok && r.Reported {
		attrs = append(attrs, "node_last_probe_ago", time.Since(r.Arrived).Round(time.Millisecond), "node_holding", r.Holding)
	} else {
		attrs = append(attrs, "node_last_probe", "none in this term")
	}
	granted := "yes: the node's replicated state, lease and probes decide now (its log says why it does not claim)"
	if m.Handover != nil {
		if why := m.Handover.Waiting(vip, node); why != "" {
			granted = "no, waiting for " + why
		}
	}
	attrs = append(attrs, "granted", granted,
		"action", "check the node's log for why it does not claim; if it has not claimed within the claim timeout, the vip goes to another node")
	m.logger().Warn("linux vip not yet claimed by its new holder", attrs...)
}

func (m *LinuxMover) holds(vip, node string, token uint64) bool {
	r, ok := m.Reports.Report(node)
	return ok && r.Holding[vip] == token
}
