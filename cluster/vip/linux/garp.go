//go:build linux

package linux

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/arp"
	"github.com/vishvananda/netlink"

	"github.com/rafterlb/rafter/internal/nsthread"
)

var broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// announce sends Options.GARPCount rounds of gratuitous ARP for ip from
// link's MAC, both as a request (RFC 5227 announcement) and as a reply,
// because switches and hosts differ in which one updates their tables. It
// stops early once the VIP is no longer held under token.
func (h *Holder) announce(ctx context.Context, name string, token uint64, ip netip.Addr, link netlink.Link) error {
	attrs := link.Attrs()
	if len(attrs.HardwareAddr) != 6 || h.opts.GARPCount == 0 {
		h.log.Debug("no gratuitous ARP: interface has no Ethernet address", "vip", name, "interface", attrs.Name)
		return nil
	}
	ifi := &net.Interface{
		Index:        attrs.Index,
		MTU:          attrs.MTU,
		Name:         attrs.Name,
		HardwareAddr: attrs.HardwareAddr,
		Flags:        attrs.Flags,
	}
	var c *arp.Client
	err := nsthread.Run(h.ns, func() error {
		var err error
		c, err = arp.Dial(ifi)
		return err
	})
	if err != nil {
		if c != nil { // opened, but the thread could not leave the namespace
			c.Close()
		}
		return withCap(err, capNetRaw, "opening a raw ARP socket on "+attrs.Name)
	}
	defer c.Close()
	req, err := arp.NewPacket(arp.OperationRequest, ifi.HardwareAddr, ip, net.HardwareAddr{0, 0, 0, 0, 0, 0}, ip)
	if err != nil {
		return fmt.Errorf("building ARP request: %w", err)
	}
	rep, err := arp.NewPacket(arp.OperationReply, ifi.HardwareAddr, ip, broadcast, ip)
	if err != nil {
		return fmt.Errorf("building ARP reply: %w", err)
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for i := range h.opts.GARPCount {
		if i > 0 {
			t.Reset(h.opts.GARPInterval)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-t.C:
			}
		}
		if !h.holds(name, token) {
			return nil
		}
		if err := c.SetWriteDeadline(time.Now().Add(time.Second)); err != nil {
			return fmt.Errorf("setting ARP write deadline: %w", err)
		}
		if err := errors.Join(c.WriteTo(req, broadcast), c.WriteTo(rep, broadcast)); err != nil {
			return withCap(err, capNetRaw, "sending gratuitous ARP on "+attrs.Name)
		}
	}
	return nil
}
