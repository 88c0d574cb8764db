//go:build linux

package linux

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/rafterlb/rafter/fsm"
)

// Holder adds and removes this node's Linux VIP addresses. It is safe for
// concurrent use.
type Holder struct {
	opts Options
	log  *slog.Logger
	ns   netns.NsHandle // None: the process's namespace
	nl   *netlink.Handle

	mu          sync.Mutex
	held        map[string]*held  // VIP name -> address on an interface
	tokens      map[string]uint64 // VIP name -> highest token seen, kept after release
	closed      bool
	lastRelease time.Time // when an address was last removed
}

type held struct {
	token  uint64
	prefix netip.Prefix
	iface  string
	// renewed: this process's clock just before the address was last
	// added or renewed; the kernel drops it no earlier than a lifetime
	// (less its 20ms fuzz) after that.
	renewed time.Time
}

// expiryGuard is how long before its lifetime runs out an address counts
// as possibly gone: the kernel may drop it up to 20ms early, and a renewal
// must never re-add an address the kernel has already dropped (the leader
// may have given it away meanwhile, see Lease).
const expiryGuard = 100 * time.Millisecond

// mayBeGone: the kernel may already have dropped e's address; h.mu is held.
func (h *Holder) mayBeGone(e *held) bool {
	return h.opts.Now().Sub(e.renewed) >= h.opts.lifetimeSeconds()-expiryGuard
}

// LastRelease is when the Holder last removed an address (zero: never).
func (h *Holder) LastRelease() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lastRelease
}

// Held describes one address a Holder holds.
type Held struct {
	VIP       string
	Address   netip.Prefix
	Interface string
	Token     uint64
}

// NewHolder opens the netlink handle (in Options.NetNS when set).
func NewHolder(opts Options) (*Holder, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("vip/linux: %w", err)
	}
	opts = opts.withDefaults()
	h := &Holder{
		opts:   opts,
		log:    opts.Logger,
		ns:     netns.None(),
		held:   map[string]*held{},
		tokens: map[string]uint64{},
	}
	var err error
	if opts.NetNS != "" {
		if h.ns, err = netns.GetFromPath(opts.NetNS); err != nil {
			return nil, fmt.Errorf("vip/linux: opening network namespace %s: %w", opts.NetNS, err)
		}
		h.nl, err = netlink.NewHandleAt(h.ns, unix.NETLINK_ROUTE)
	} else {
		h.nl, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	if err != nil {
		h.ns.Close()
		return nil, fmt.Errorf("vip/linux: %w", withCap(err, capNetAdmin, "opening netlink"))
	}
	return h, nil
}

// Close releases every held address and closes the handles. Use it on a
// graceful stop: the addresses go at once instead of at their expiry.
func (h *Holder) Close() error {
	err := h.ReleaseAll()
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		h.nl.Close()
		h.ns.Close()
	}
	return err
}

// Claim adds v's address (spec.Address, a CIDR) to spec.Interface (or
// Options.Interface) with a kernel lifetime of Options.Lifetime and
// announces it with gratuitous ARP. It is idempotent for the same token; a
// token below the highest seen for v fails with ErrStaleToken. Call it
// only while this node's lease holds. When the announcement fails after
// the address was added, the address stays held and the error says so.
func (h *Holder) Claim(ctx context.Context, v fsm.VIP, token uint64) error {
	return h.claimIf(ctx, v, token, nil)
}

// claimIf is Claim, except that the address is added only if valid (when
// set) still returns nil under the lock that Held takes: a list of the
// held addresses taken after valid turned false never misses a claim.
func (h *Holder) claimIf(ctx context.Context, v fsm.VIP, token uint64, valid func() error) error {
	if err := h.addIf(v, token, valid); err != nil {
		return err
	}
	return h.announceHeld(ctx, v.Name, token)
}

// addIf is claimIf without the gratuitous ARP (announceHeld sends it).
func (h *Holder) addIf(v fsm.VIP, token uint64, valid func() error) error {
	prefix, iface, err := h.target(v)
	if err != nil {
		return err
	}
	if _, err := h.claim(v.Name, prefix, iface, token, valid); err != nil {
		return err
	}
	h.log.Info("vip address claimed", "vip", v.Name, "address", prefix, "interface", iface,
		"token", token, "lifetime", h.opts.lifetimeSeconds())
	return nil
}

// announceHeld sends the gratuitous ARP of VIP name if it is still held
// under token. When it fails the address stays held and the error says so.
func (h *Holder) announceHeld(ctx context.Context, name string, token uint64) error {
	h.mu.Lock()
	e, ok := h.held[name]
	if !ok || e.token != token || h.closed {
		h.mu.Unlock()
		return nil
	}
	prefix, iface := e.prefix, e.iface
	link, err := h.nl.LinkByName(iface)
	h.mu.Unlock()
	if err != nil {
		return fmt.Errorf("vip/linux: %s: %w", name, withCap(err, capNetAdmin, "looking up interface "+iface))
	}
	if !prefix.Addr().Is4() {
		return nil // IPv6 neighbours learn through NDP; no ARP to send
	}
	if err := h.announce(ctx, name, token, prefix.Addr(), link); err != nil {
		return fmt.Errorf("vip/linux: %s: address %s added on %s but gratuitous ARP failed: %w",
			name, prefix, iface, err)
	}
	return nil
}

func (h *Holder) target(v fsm.VIP) (netip.Prefix, string, error) {
	prefix, err := netip.ParsePrefix(v.Spec.Address)
	if err != nil {
		return netip.Prefix{}, "", fmt.Errorf("vip/linux: %s: spec.address %q: want CIDR form (10.0.0.100/24): %w",
			v.Name, v.Spec.Address, err)
	}
	iface := v.Spec.Interface
	if iface == "" {
		iface = h.opts.Interface
	}
	if iface == "" {
		return netip.Prefix{}, "", fmt.Errorf("vip/linux: %s: no spec.interface and no default interface", v.Name)
	}
	return prefix, iface, nil
}

func (h *Holder) claim(name string, prefix netip.Prefix, iface string, token uint64, valid func() error) (netlink.Link, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, fmt.Errorf("vip/linux: %s: holder closed", name)
	}
	if valid != nil {
		if err := valid(); err != nil {
			return nil, err
		}
	}
	if seen := h.tokens[name]; token < seen {
		return nil, fmt.Errorf("vip/linux: %w: vip %q token %d is older than %d already seen",
			ErrStaleToken, name, token, seen)
	}
	link, err := h.nl.LinkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("vip/linux: %s: %w", name, withCap(err, capNetAdmin, "looking up interface "+iface))
	}
	if old, ok := h.held[name]; ok && (old.prefix != prefix || old.iface != iface) {
		// The spec changed under the same VIP: the old address must not
		// outlive the new one's claim.
		if err := h.remove(name, old, true); err != nil {
			return nil, err
		}
	}
	at := h.opts.Now()
	if err := h.nl.AddrReplace(link, h.addr(prefix)); err != nil {
		return nil, fmt.Errorf("vip/linux: %s: %w", name,
			withCap(err, capNetAdmin, fmt.Sprintf("adding %s on %s", prefix, iface)))
	}
	h.tokens[name] = token
	h.held[name] = &held{token: token, prefix: prefix, iface: iface, renewed: at}
	return link, nil
}

func (h *Holder) addr(prefix netip.Prefix) *netlink.Addr {
	lft := h.opts.lft()
	a := &netlink.Addr{
		IPNet:       &net.IPNet{IP: net.IP(prefix.Addr().AsSlice()), Mask: net.CIDRMask(prefix.Bits(), prefix.Addr().BitLen())},
		ValidLft:    lft,
		PreferedLft: lft,
	}
	if prefix.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD // usable at once; the leader guarantees one holder
	}
	return a
}

// Renew gives every held address a fresh Options.Lifetime. An address
// whose lifetime has (nearly) run out is not renewed but let go: the
// kernel may have dropped it already, and re-adding it could take back an
// address the leader has since given to another node. Call it only while
// the lease holds (Lease does). It tries every address and joins the
// errors.
func (h *Holder) Renew() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(h.held)) {
		e := h.held[name]
		if h.mayBeGone(e) {
			h.log.Warn("vip address not renewed in time; letting it go", "vip", name, "address", e.prefix,
				"last_renewed_ago", h.opts.Now().Sub(e.renewed).Round(time.Millisecond))
			errs = append(errs, h.remove(name, e, true))
			continue
		}
		at := h.opts.Now()
		link, err := h.nl.LinkByName(e.iface)
		if err == nil {
			err = h.nl.AddrReplace(link, h.addr(e.prefix))
		}
		if err == nil {
			e.renewed = at
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("vip/linux: %s: %w", name,
				withCap(err, capNetAdmin, fmt.Sprintf("renewing %s on %s", e.prefix, e.iface))))
		}
	}
	return errors.Join(errs...)
}

// DropExpired lets go of the addresses whose lifetime has (nearly) run
// out, without renewing the others: while the lease has lapsed, what is
// held runs out by itself.
func (h *Holder) DropExpired() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(h.held)) {
		if e := h.held[name]; h.mayBeGone(e) {
			errs = append(errs, h.remove(name, e, true))
		}
	}
	return errors.Join(errs...)
}

// Release removes the address of VIP name (nothing when not held). The
// highest token seen is kept, so an older claim stays refused.
func (h *Holder) Release(name string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.held[name]
	if !ok {
		return nil
	}
	return h.remove(name, e, true)
}

// ReleaseAll removes every held address; it tries them all and joins the
// errors.
func (h *Holder) ReleaseAll() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(h.held)) {
		errs = append(errs, h.remove(name, h.held[name], false))
	}
	return errors.Join(errs...)
}

// remove deletes one address; h.mu is held. An address already gone
// (expired, or its interface deleted) counts as removed. restore: put back
// the other held addresses the deletion took with it.
func (h *Holder) remove(name string, e *held, restore bool) error {
	link, err := h.nl.LinkByName(e.iface)
	if err == nil {
		err = h.nl.AddrDel(link, h.addr(e.prefix))
	}
	var notFound netlink.LinkNotFoundError
	if err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) && !errors.As(err, &notFound) {
		return fmt.Errorf("vip/linux: %s: %w", name,
			withCap(err, capNetAdmin, fmt.Sprintf("removing %s from %s", e.prefix, e.iface)))
	}
	delete(h.held, name)
	h.lastRelease = h.opts.Now()
	h.log.Info("vip address released", "vip", name, "address", e.prefix, "interface", e.iface, "token", e.token)
	if restore && link != nil {
		return h.restoreSecondaries(link, e.iface)
	}
	return nil
}

// restoreSecondaries re-adds held addresses on iface that vanished: when the
// deleted address was the primary of its subnet, the kernel deletes the
// secondaries with it unless promote_secondaries is set on the interface.
func (h *Holder) restoreSecondaries(link netlink.Link, iface string) error {
	present, err := h.nl.AddrList(link, unix.AF_UNSPEC)
	if err != nil {
		return fmt.Errorf("vip/linux: %w", withCap(err, capNetAdmin, "listing addresses on "+iface))
	}
	on := make(map[netip.Prefix]bool, len(present))
	for _, a := range present {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			ones, _ := a.Mask.Size()
			on[netip.PrefixFrom(ip.Unmap(), ones)] = true
		}
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(h.held)) {
		e := h.held[name]
		if e.iface != iface || on[e.prefix] {
			continue
		}
		if h.mayBeGone(e) {
			// Its lifetime is (nearly) over: gone it stays.
			delete(h.held, name)
			h.lastRelease = h.opts.Now()
			continue
		}
		h.log.Warn("kernel removed a vip address with the primary of its subnet; re-adding it (set net.ipv4.conf.<interface>.promote_secondaries=1 to avoid the gap)",
			"vip", name, "address", e.prefix, "interface", iface)
		at := h.opts.Now()
		if err := h.nl.AddrReplace(link, h.addr(e.prefix)); err != nil {
			errs = append(errs, fmt.Errorf("vip/linux: %s: %w", name,
				withCap(err, capNetAdmin, fmt.Sprintf("re-adding %s on %s", e.prefix, iface))))
			continue
		}
		e.renewed = at
	}
	return errors.Join(errs...)
}

// Held lists the held addresses by VIP name.
func (h *Holder) Held() []Held {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Held, 0, len(h.held))
	for _, name := range slices.Sorted(maps.Keys(h.held)) {
		e := h.held[name]
		out = append(out, Held{VIP: name, Address: e.prefix, Interface: e.iface, Token: e.token})
	}
	return out
}

// holds reports whether VIP name is still held under token.
func (h *Holder) holds(name string, token uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.held[name]
	return ok && e.token == token
}
