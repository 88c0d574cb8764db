//go:build linux

package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rafterlb/rafter/internal/testutil"
)

// NetemConfig is the impairment Netem puts on what a namespace sends out of
// its eth0.
type NetemConfig struct {
	// Delay is added to every packet, 0..10s.
	Delay time.Duration
	// Loss is the percentage of packets dropped, 0..100.
	Loss float64
	// Seed seeds the emulation's drops (tc netem has its own randomness).
	Seed uint64
	// Emulate uses the NFQUEUE emulation even where sch_netem exists.
	Emulate bool
}

// Validate names the first invalid field.
func (c NetemConfig) Validate() error {
	switch {
	case c.Delay < 0 || c.Delay > maxDelay:
		return fmt.Errorf("netem delay: %s, want 0..%s", c.Delay, maxDelay)
	case !(c.Loss >= 0 && c.Loss <= 100): // also refuses NaN
		return fmt.Errorf("netem loss: %v%%, want 0..100", c.Loss)
	}
	return nil
}

// Netem modes.
const (
	NetemTC       = "tc netem"
	NetemEmulated = "nfqueue emulation"
)

// nfqNum is the queue the emulation uses; queues are per namespace, so
// every namespace may use the same number.
const nfqNum = 117

// Netem is an impairment in effect on one namespace's egress.
type Netem struct {
	r    *Rig
	role string
	mode string
	ipt  string   // the iptables command (emulation)
	rule []string // the rule's spec after -A/-D (emulation)
	q    *nfqueue // (emulation)

	once      sync.Once
	removeErr error
}

// Netem delays and drops what namespace role sends out of its eth0, as
// `tc qdisc add dev eth0 root netem delay D loss L%` does: the round trip
// between role and any other namespace grows by D, and L% of role's
// packets are lost. It uses tc netem where the kernel has sch_netem;
// otherwise (or with c.Emulate) iptables sends role's egress through an
// NFQUEUE and a consumer in this process holds each packet for D before
// accepting it, dropping L% at random. The rule has --queue-bypass and the
// queue fails open when full, so a consumer that is gone or behind never
// blackholes traffic. Remove undoes it; so does the test's cleanup.
func (r *Rig) Netem(role string, c NetemConfig) (*Netem, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	x := &Netem{r: r, role: role}
	var tcErr error
	if !c.Emulate {
		if tcErr = x.tc(c); tcErr == nil {
			x.mode = NetemTC
			r.t.Cleanup(func() { x.Remove() })
			return x, nil
		}
	}
	if err := x.emulate(c); err != nil {
		if tcErr != nil {
			return nil, fmt.Errorf("netem on %s: neither tc netem (%v) nor its emulation (%w) can be set up", role, tcErr, err)
		}
		return nil, fmt.Errorf("netem on %s: %w", role, err)
	}
	x.mode = NetemEmulated
	r.t.Cleanup(func() { x.Remove() })
	return x, nil
}

// Mode is NetemTC or NetemEmulated.
func (x *Netem) Mode() string { return x.mode }

func (x *Netem) tc(c NetemConfig) error {
	if _, err := exec.LookPath("tc"); err != nil {
		return fmt.Errorf("`tc` (iproute2) not found: %w", err)
	}
	args := []string{"qdisc", "add", "dev", "eth0", "root", "netem",
		"delay", strconv.FormatInt(c.Delay.Microseconds(), 10) + "us",
		"loss", strconv.FormatFloat(c.Loss, 'f', -1, 64) + "%"}
	out, err := x.r.Command(context.Background(), x.role, "tc", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("tc %s (needs the sch_netem module; kernel %s): %w: %s",
			strings.Join(args, " "), kernelRelease(), err, bytes.TrimSpace(out))
	}
	return nil
}

// iptablesCommands are tried in order until one installs the rule: the
// distribution's default (the nf_tables backend, whose NFQUEUE goes
// through nft's xt compatibility layer) and the legacy x_tables one.
var iptablesCommands = []string{"iptables", "iptables-legacy"}

func (x *Netem) emulate(c NetemConfig) error {
	err := x.r.Do(x.role, func() error {
		q, err := openNFQueue(nfqNum, c.Delay, c.Loss/100, c.Seed)
		x.q = q
		return err
	})
	if err != nil {
		return fmt.Errorf("the emulation needs nfnetlink_queue (CONFIG_NETFILTER_NETLINK_QUEUE): %w", err)
	}
	x.q.start()
	x.rule = []string{"POSTROUTING", "-t", "mangle", "-o", "eth0", "-j", "NFQUEUE",
		"--queue-num", strconv.Itoa(nfqNum), "--queue-bypass"}
	var errs []error
	for _, name := range iptablesCommands {
		if _, err := exec.LookPath(name); err != nil {
			continue
		}
		x.ipt = name
		err := x.iptables("-A")
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	x.q.stop()
	if len(errs) == 0 {
		return errors.New("the emulation needs iptables (apt-get install -y iptables)")
	}
	return fmt.Errorf("the emulation needs the NFQUEUE target (CONFIG_NETFILTER_XT_TARGET_NFQUEUE): %w", errors.Join(errs...))
}

func (x *Netem) iptables(op string) error {
	args := append([]string{op}, x.rule...)
	out, err := x.r.Command(context.Background(), x.role, x.ipt, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s in %s: %w: %s", x.ipt, strings.Join(args, " "), x.role, err, bytes.TrimSpace(out))
	}
	return nil
}

// Remove undoes the impairment and restores the path completely: the
// qdisc, or the rule, then (once every queued packet got its verdict) the
// consumer. Calling it again returns the first call's result.
func (x *Netem) Remove() error {
	x.once.Do(func() { x.removeErr = x.remove() })
	return x.removeErr
}

func (x *Netem) remove() error {
	if x.mode == NetemTC {
		out, err := x.r.Command(context.Background(), x.role, "tc", "qdisc", "del", "dev", "eth0", "root").CombinedOutput()
		if err != nil {
			return fmt.Errorf("removing tc netem from %s: %w: %s", x.role, err, bytes.TrimSpace(out))
		}
		return nil
	}
	errs := []error{x.iptables("-D")}
	// No packet enters the queue any more; the ones in it are released
	// when their delay is over. Closing the socket earlier would make the
	// kernel drop them.
	drained := testutil.Poll(x.q.delay+5*time.Second, func() error {
		n, err := x.queued()
		if err == nil && n > 0 {
			err = fmt.Errorf("%d packets still queued", n)
		}
		return err
	})
	if drained != nil {
		errs = append(errs, fmt.Errorf("draining the queue in %s: %w", x.role, drained))
	}
	if err := x.q.stop(); err != nil {
		errs = append(errs, fmt.Errorf("netem emulation in %s: %w", x.role, err))
	}
	return errors.Join(errs...)
}

// queued is the number of packets in the emulation's kernel queue that
// have no verdict yet, from the namespace's /proc/net.
func (x *Netem) queued() (int, error) {
	var b []byte
	err := x.r.Do(x.role, func() error {
		var err error
		// thread-self: /proc/self/net would show the main thread's namespace.
		b, err = os.ReadFile("/proc/thread-self/net/netfilter/nfnetlink_queue")
		return err
	})
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		// queue_number peer_portid queue_total copy_mode copy_range ...
		if len(f) >= 3 && f[0] == strconv.Itoa(nfqNum) {
			return strconv.Atoi(f[2])
		}
	}
	return 0, nil
}

// Stats are the emulation's counts: packets it saw, dropped on purpose,
// and accepted at once because too many were held. Zero under tc netem.
func (x *Netem) Stats() (seen, dropped, overflow int64) {
	if x.q == nil {
		return 0, 0, 0
	}
	return x.q.seen.Load(), x.q.dropped.Load(), x.q.overflow.Load()
}

func kernelRelease() string {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return "unknown"
	}
	var b strings.Builder
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b.WriteByte(byte(c))
	}
	return b.String()
}
