//go:build linux

package linux

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestClaimAddsAddressWithLifetime(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, addr string
	}{
		{"ipv4 subnet", "10.77.0.100/24"},
		{"ipv4 host", "10.77.0.101/32"},
		{"ipv6", "fd00:77::100/64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			h := r.holder(t, Options{Lifetime: 3 * time.Second})
			if err := h.Claim(context.Background(), testVIP("web", tc.addr), 7); err != nil {
				t.Fatalf("Claim: %v", err)
			}
			a, ok := r.addrOf(t, netip.MustParsePrefix(tc.addr))
			if !ok {
				t.Fatalf("%s not on %s after Claim", tc.addr, nodeIface)
			}
			if a.ValidLft <= 0 || a.ValidLft > 3 {
				t.Fatalf("valid_lft = %d, want 1..3 (a finite lifetime, not forever)", a.ValidLft)
			}
			if got := h.Held(); len(got) != 1 || got[0].VIP != "web" || got[0].Token != 7 || got[0].Interface != nodeIface {
				t.Fatalf("Held() = %+v", got)
			}
		})
	}
}

func TestRenewExtendsLifetime(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	h := r.holder(t, Options{Lifetime: 3 * time.Second})
	p := netip.MustParsePrefix("10.77.0.100/24")
	if err := h.Claim(context.Background(), testVIP("web", p.String()), 1); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	eventually(t, 5*time.Second, "valid_lft counting down", func() bool {
		a, ok := r.addrOf(t, p)
		if !ok {
			t.Fatal("address expired before its lifetime counted down")
		}
		return a.ValidLft < 3
	})
	if err := h.Renew(); err != nil {
		t.Fatalf("Renew: %v", err)
	}
	a, ok := r.addrOf(t, p)
	if !ok {
		t.Fatal("address gone after Renew")
	}
	if a.ValidLft != 3 {
		t.Fatalf("valid_lft after Renew = %d, want the full 3", a.ValidLft)
	}
}

// An address whose lifetime has run out is never renewed back: the leader
// may have given it to another node meanwhile. The holder lets go of it.
func TestRenewNeverReaddsExpiredAddress(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	h := r.holder(t, Options{Lifetime: time.Second})
	p := netip.MustParsePrefix("10.77.0.100/24")
	if err := h.Claim(context.Background(), testVIP("web", p.String()), 1); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	eventually(t, 10*time.Second, "kernel dropping the address", func() bool { _, ok := r.addrOf(t, p); return !ok })
	if err := h.Renew(); err != nil {
		t.Fatalf("Renew: %v", err)
	}
	if _, ok := r.addrOf(t, p); ok {
		t.Fatal("Renew re-added an address whose lifetime had run out")
	}
	if held := h.Held(); len(held) != 0 {
		t.Fatalf("still held after its lifetime: %v", held)
	}
}

// The Lease's safety rests on the kernel dropping an address soon after
// its lifetime runs out when nobody renews it: at most kernelSlack late.
func TestKernelDropsExpiredAddress(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	const lifetime = time.Second
	h := r.holder(t, Options{Lifetime: lifetime})
	p := netip.MustParsePrefix("10.77.0.100/24")
	if err := h.Claim(context.Background(), testVIP("web", p.String()), 1); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	var last time.Time
	for range 3 {
		time.Sleep(250 * time.Millisecond)
		if err := h.Renew(); err != nil {
			t.Fatalf("Renew: %v", err)
		}
		last = time.Now()
	}
	var gone time.Time
	deadline := last.Add(lifetime + 5*time.Second)
	for time.Now().Before(deadline) {
		if _, ok := r.addrOf(t, p); !ok {
			gone = time.Now()
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if gone.IsZero() {
		t.Fatalf("the address outlived its %s lifetime by more than 5s", lifetime)
	}
	late := gone.Sub(last) - lifetime
	t.Logf("kernel removed the address %s after its lifetime ran out", late.Round(time.Millisecond))
	if late > kernelSlack {
		t.Fatalf("address lingered %s past its lifetime; kernelSlack assumes at most %s", late, kernelSlack)
	}
}

func TestRelease(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		release func(h *Holder) error
		gone    []string
		kept    []string
	}{
		{"one", func(h *Holder) error { return h.Release("a") }, []string{"a"}, []string{"b"}},
		{"all", func(h *Holder) error { return h.ReleaseAll() }, []string{"a", "b"}, nil},
		{"unknown", func(h *Holder) error { return h.Release("zzz") }, nil, []string{"a", "b"}},
	}
	addrs := map[string]netip.Prefix{"a": netip.MustParsePrefix("10.77.0.10/24"), "b": netip.MustParsePrefix("10.77.0.11/24")}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			h := r.holder(t, Options{Lifetime: 30 * time.Second, RenewEvery: time.Second})
			for name, p := range addrs {
				if err := h.Claim(context.Background(), testVIP(name, p.String()), 1); err != nil {
					t.Fatalf("Claim %s: %v", name, err)
				}
			}
			if err := tc.release(h); err != nil {
				t.Fatalf("release: %v", err)
			}
			for _, name := range tc.gone {
				if _, ok := r.addrOf(t, addrs[name]); ok {
					t.Errorf("%s still on the interface", name)
				}
			}
			for _, name := range tc.kept {
				if _, ok := r.addrOf(t, addrs[name]); !ok {
					t.Errorf("%s removed though not released", name)
				}
			}
			if got := len(h.Held()); got != len(tc.kept) {
				t.Errorf("Held() has %d, want %d", got, len(tc.kept))
			}
		})
	}
}

func TestReleaseOfExpiredAddressSucceeds(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	h := r.holder(t, Options{Lifetime: time.Second})
	p := netip.MustParsePrefix("10.77.0.100/24")
	if err := h.Claim(context.Background(), testVIP("web", p.String()), 1); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	eventually(t, 10*time.Second, "kernel dropping the address", func() bool { _, ok := r.addrOf(t, p); return !ok })
	if err := h.Release("web"); err != nil {
		t.Fatalf("Release of an expired address: %v", err)
	}
	if len(h.Held()) != 0 {
		t.Fatal("still held")
	}
}

func TestClaimTokens(t *testing.T) {
	t.Parallel()
	const vip = "web"
	tests := []struct {
		name    string
		tokens  []uint64 // claimed in order; the last one is checked
		release bool     // release before the last claim
		stale   bool
	}{
		{"first", []uint64{5}, false, false},
		{"same token again", []uint64{5, 5}, false, false},
		{"newer", []uint64{5, 9}, false, false},
		{"older refused", []uint64{9, 5}, false, true},
		{"older refused after release", []uint64{9, 5}, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			h := r.holder(t, Options{Lifetime: 30 * time.Second, RenewEvery: time.Second})
			v := testVIP(vip, "10.77.0.100/24")
			last := len(tc.tokens) - 1
			for _, tok := range tc.tokens[:last] {
				if err := h.Claim(context.Background(), v, tok); err != nil {
					t.Fatalf("Claim(%d): %v", tok, err)
				}
			}
			if tc.release {
				if err := h.Release(vip); err != nil {
					t.Fatalf("Release: %v", err)
				}
			}
			err := h.Claim(context.Background(), v, tc.tokens[last])
			if got := errors.Is(err, ErrStaleToken); got != tc.stale {
				t.Fatalf("Claim(%d) = %v, stale=%v want %v", tc.tokens[last], err, got, tc.stale)
			}
			_, on := r.addrOf(t, netip.MustParsePrefix("10.77.0.100/24"))
			if want := !(tc.stale && tc.release); on != want {
				t.Fatalf("address present = %v, want %v", on, want)
			}
		})
	}
}

func TestClaimMovesAddressWhenSpecChanges(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	h := r.holder(t, Options{Lifetime: 30 * time.Second, RenewEvery: time.Second})
	oldP, newP := netip.MustParsePrefix("10.77.0.100/24"), netip.MustParsePrefix("10.77.0.200/24")
	if err := h.Claim(context.Background(), testVIP("web", oldP.String()), 1); err != nil {
		t.Fatal(err)
	}
	if err := h.Claim(context.Background(), testVIP("web", newP.String()), 2); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.addrOf(t, oldP); ok {
		t.Error("old address still present")
	}
	if _, ok := r.addrOf(t, newP); !ok {
		t.Error("new address missing")
	}
}

func TestClaimErrors(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	h := r.holder(t, Options{})
	tests := []struct {
		name, addr, iface, want string
	}{
		{"not CIDR", "10.77.0.100", "", "CIDR"},
		{"unknown interface", "10.77.0.100/24", "nope0", "nope0"},
	}
	for _, tc := range tests {
		v := testVIP("web", tc.addr)
		v.Spec.Interface = tc.iface
		err := h.Claim(context.Background(), v, 1)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Claim = %v, want an error mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestWithCapNamesCapability(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		perm bool
	}{
		{syscall.EPERM, true},
		{syscall.EACCES, true},
		{syscall.EEXIST, false},
	}
	for _, tc := range tests {
		err := withCap(tc.err, capNetRaw, "sending")
		if errors.Is(err, ErrPermission) != tc.perm {
			t.Errorf("%v: ErrPermission = %v, want %v", tc.err, !tc.perm, tc.perm)
		}
		if tc.perm && !strings.Contains(err.Error(), "CAP_NET_RAW") {
			t.Errorf("%v: %q does not name CAP_NET_RAW", tc.err, err)
		}
		if !errors.Is(err, tc.err) {
			t.Errorf("%v: cause lost in %v", tc.err, err)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		o     Options
		field string
	}{
		{Options{}, ""},
		{DefaultOptions(), ""},
		{Options{Lifetime: 500 * time.Millisecond}, "vip.linux.lifetime"},
		{Options{Lifetime: 3 * time.Second, RenewEvery: 3 * time.Second}, "vip.linux.renew_every"},
		{Options{LeasePeriod: -1}, "vip.linux.lease_period"},
		{Options{GARPCount: -1}, "vip.linux.garp_count"},
		{Options{GARPInterval: time.Second}, "vip.linux.garp_count"},
	}
	for _, tc := range tests {
		err := tc.o.Validate()
		if tc.field == "" && err != nil || tc.field != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.field)) {
			t.Errorf("%+v: Validate = %v, want field %q", tc.o, err, tc.field)
		}
	}
	// lease 200ms + lifetime 1s + kernel slack 300ms
	if got, want := DefaultOptions().HandoverDelay(), 1500*time.Millisecond; got != want {
		t.Errorf("HandoverDelay = %s, want %s", got, want)
	}
}
