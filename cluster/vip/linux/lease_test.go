//go:build linux

package linux

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdlayher/arp"
)

func TestLease(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	const lifetime = time.Second
	h := r.holder(t, Options{Lifetime: lifetime, RenewEvery: 200 * time.Millisecond, LeasePeriod: 500 * time.Millisecond})
	p := netip.MustParsePrefix("10.77.0.100/24")
	var contact atomic.Int64 // unix nanos of the last quorum contact; 0: fresh (now)
	quorumContact := func() time.Time {
		if n := contact.Load(); n != 0 {
			return time.Unix(0, n)
		}
		return time.Now()
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		NewLease(h).Run(ctx, quorumContact)
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })

	start := time.Now()
	if err := h.Claim(context.Background(), testVIP("web", p.String()), 1); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	// With fresh contact the address outlives several lifetimes.
	for time.Since(start) < 3*lifetime+time.Second {
		if _, ok := r.addrOf(t, p); !ok {
			t.Fatalf("address dropped %s after the claim although quorum contact is fresh", time.Since(start))
		}
		time.Sleep(50 * time.Millisecond)
	}
	contact.Store(time.Now().Add(-time.Hour).UnixNano())
	eventually(t, 10*time.Second, "lease releasing the address once quorum contact is old", func() bool {
		_, ok := r.addrOf(t, p)
		return !ok && len(h.Held()) == 0
	})
}

func TestClaimSendsGratuitousARP(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	peer := &net.Interface{Index: r.peer.Attrs().Index, Name: peerIface, HardwareAddr: r.peer.Attrs().HardwareAddr}
	var c *arp.Client
	in(t, r.wire, func() error {
		var err error
		c, err = arp.Dial(peer)
		return err
	})
	t.Cleanup(func() { c.Close() })

	h := r.holder(t, Options{Lifetime: 30 * time.Second, RenewEvery: time.Second, GARPCount: 2, GARPInterval: 50 * time.Millisecond})
	vip := netip.MustParseAddr("10.77.0.100")
	if err := h.Claim(context.Background(), testVIP("web", "10.77.0.100/24"), 1); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	mac := r.link.Attrs().HardwareAddr
	seen := map[arp.Operation]int{}
	deadline := time.Now().Add(10 * time.Second)
	for seen[arp.OperationRequest] < 2 || seen[arp.OperationReply] < 2 {
		if err := c.SetReadDeadline(deadline); err != nil {
			t.Fatal(err)
		}
		pkt, _, err := c.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("gratuitous ARP not seen on the peer: %v", seen)
		}
		if err != nil {
			continue // not an ARP frame we can parse
		}
		if pkt.SenderIP == vip && pkt.TargetIP == vip && pkt.SenderHardwareAddr.String() == mac.String() {
			seen[pkt.Operation]++
		}
	}
}

func TestFreebindListen(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	const addr = "10.77.0.100:8080"
	var ln net.Listener
	in(t, r.node, func() error {
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			return errors.New("plain listen on an absent address succeeded; the test proves nothing")
		}
		var err error
		ln, err = FreebindListen("tcp", addr)
		return err
	})
	t.Cleanup(func() { ln.Close() })

	// Once the VIP is claimed, the listener serves it.
	h := r.holder(t, Options{Lifetime: 30 * time.Second, RenewEvery: time.Second})
	if err := h.Claim(context.Background(), testVIP("web", "10.77.0.100/24"), 1); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	in(t, r.wire, func() error {
		d := net.Dialer{Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	})
	select {
	case err := <-accepted:
		if err != nil {
			t.Fatalf("Accept: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted on the VIP")
	}
}
