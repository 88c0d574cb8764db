//go:build linux

package netns

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestNetemEmulation measures the NFQUEUE stand-in for tc netem between
// two namespaces (node n1, faulted, and the client): the round trip grows
// by the delay, about the configured share of n1's datagrams is lost, and
// removing it restores the path completely (no rule, no queue, fast round
// trips, no loss).
func TestNetemEmulation(t *testing.T) {
	o := DefaultOptions()
	o.Nodes, o.Bin = 1, bin
	r := New(t, o)
	n := r.Node("n1")
	accept := listenTCP(t, r, n.Name, n.IP)

	const (
		dials     = 20
		datagrams = 1000
		delay     = 100 * time.Millisecond
	)
	base := connectRTTs(t, r, accept, dials)
	// A shorter check of the rig itself; the one after removal is full.
	if lost := udpLoss(t, r, n.Name, datagrams/5); lost != 0 {
		t.Fatalf("before the fault: %d of %d datagrams lost", lost, datagrams/5)
	}
	if m := median(base); m > 10*time.Millisecond {
		t.Fatalf("before the fault: median round trip %s, want < 10ms", m)
	}

	seed := uint64(time.Now().UnixNano())
	x, err := r.Netem(n.Name, NetemConfig{Delay: delay, Loss: 5, Seed: seed, Emulate: true})
	if err != nil {
		t.Fatalf("netem: %v", err)
	}
	faulted := connectRTTs(t, r, accept, dials)
	lost := udpLoss(t, r, n.Name, datagrams)
	seen, dropped, overflow := x.Stats()
	t.Logf("seed %d: round trip median %s -> %s (min %s); %d of %d datagrams lost; the queue saw %d packets, dropped %d, overflowed %d",
		seed, median(base), median(faulted), slices.Min(faulted), lost, datagrams, seen, dropped, overflow)
	// A SYN-ACK the emulation drops costs a 1s retransmission; the
	// median stays clear of those.
	if mn, m := slices.Min(faulted), median(faulted); mn < slices.Min(base)+delay || m > 400*time.Millisecond {
		t.Errorf("under the fault: round trips min %s, median %s; want min >= %s + %s and median < 400ms", mn, m, slices.Min(base), delay)
	}
	// 5% of 1000 is 50 with a standard deviation of about 7.
	if lost < datagrams/100 || lost > datagrams*12/100 {
		t.Errorf("under the fault: %d of %d datagrams lost, want 1%%..12%%", lost, datagrams)
	}
	if overflow != 0 {
		t.Errorf("the queue overflowed %d times", overflow)
	}

	if err := x.Remove(); err != nil {
		t.Fatalf("removing netem: %v", err)
	}
	out, err := r.Command(context.Background(), n.Name, x.ipt, "-t", "mangle", "-S").CombinedOutput()
	if err != nil || strings.Contains(string(out), "NFQUEUE") {
		t.Errorf("after removal, %s -t mangle -S: %v: %s", x.ipt, err, out)
	}
	if q, err := boundQueues(r, n.Name); err != nil || len(q) > 0 {
		t.Errorf("after removal, queues bound in %s: %v (%v)", n.Name, q, err)
	}
	after := connectRTTs(t, r, accept, dials)
	lost = udpLoss(t, r, n.Name, datagrams)
	t.Logf("after removal: round trip median %s; %d of %d datagrams lost", median(after), lost, datagrams)
	if m := median(after); m > 10*time.Millisecond {
		t.Errorf("after removal: median round trip %s, want < 10ms", m)
	}
	if lost != 0 {
		t.Errorf("after removal: %d of %d datagrams lost", lost, datagrams)
	}
}

// A consumer that is gone never blackholes the namespace: with the rule
// still in place and nothing bound to its queue, packets pass at once.
func TestNetemEmulationConsumerGone(t *testing.T) {
	o := DefaultOptions()
	o.Nodes, o.Bin = 1, bin
	r := New(t, o)
	n := r.Node("n1")
	accept := listenTCP(t, r, n.Name, n.IP)
	x, err := r.Netem(n.Name, NetemConfig{Delay: 100 * time.Millisecond, Loss: 5, Seed: 1, Emulate: true})
	if err != nil {
		t.Fatalf("netem: %v", err)
	}
	if err := x.q.stop(); err != nil {
		t.Fatalf("stopping the consumer: %v", err)
	}
	out, err := r.Command(context.Background(), n.Name, x.ipt, "-t", "mangle", "-S").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "NFQUEUE") {
		t.Fatalf("the rule should still be there: %v: %s", err, out)
	}
	if m := median(connectRTTs(t, r, accept, 10)); m > 10*time.Millisecond {
		t.Errorf("without a consumer: median round trip %s, want < 10ms", m)
	}
	if lost := udpLoss(t, r, n.Name, 200); lost != 0 {
		t.Errorf("without a consumer: %d of 200 datagrams lost", lost)
	}
	if err := x.Remove(); err != nil {
		t.Errorf("removing netem: %v", err)
	}
}

// Invalid settings are refused naming the field, before anything is set up.
func TestNetemConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  NetemConfig
		want string
	}{
		{NetemConfig{Delay: -time.Millisecond}, "netem delay"},
		{NetemConfig{Delay: 11 * time.Second}, "netem delay"},
		{NetemConfig{Loss: -1}, "netem loss"},
		{NetemConfig{Loss: 100.5}, "netem loss"},
		{NetemConfig{Loss: nan()}, "netem loss"},
	} {
		err := c.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want an error naming %q", c.cfg, err, c.want)
		}
	}
	if err := (NetemConfig{Delay: 100 * time.Millisecond, Loss: 5}).Validate(); err != nil {
		t.Errorf("a valid config refused: %v", err)
	}
}

func nan() float64 {
	zero := 0.0
	return zero / zero
}

// The parser of packet messages finds the id and refuses truncated input
// instead of reading past it.
func TestPacketID(t *testing.T) {
	hdr := make([]byte, 7) // packet_id, hw_protocol, hook
	binary.BigEndian.PutUint32(hdr, 0xdeadbeef)
	msg := append([]byte{0, 0, 0, 0}, nlAttr(5, []byte{1, 2, 3, 4})...) // an ifindex first
	msg = append(msg, nlAttr(nfqaPacketHdr, hdr)...)
	if id, ok := packetID(msg); !ok || id != 0xdeadbeef {
		t.Fatalf("packetID = %#x, %v", id, ok)
	}
	// The last attribute is 11 bytes and one of padding: anything shorter
	// than 23 bytes cuts it.
	for i := range len(msg) - 1 {
		if id, ok := packetID(msg[:i]); ok {
			t.Fatalf("truncated to %d bytes: got id %#x", i, id)
		}
	}
	bad := append([]byte{0, 0, 0, 0}, 2, 0, 1, 0) // attribute length 2 < header
	if _, ok := packetID(bad); ok {
		t.Fatal("an attribute shorter than its header was accepted")
	}
}

// listenTCP accepts connections on ip in namespace role until the test
// ends, closing each at once; it returns the address.
func listenTCP(t *testing.T, r *Rig, role, ip string) string {
	t.Helper()
	var ln net.Listener
	err := r.Do(role, func() error {
		var err error
		ln, err = net.Listen("tcp4", net.JoinHostPort(ip, "0"))
		return err
	})
	if err != nil {
		t.Fatalf("listening in %s: %v", role, err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// connectRTTs times count TCP handshakes from the client namespace to
// addr: each is one round trip.
func connectRTTs(t *testing.T, r *Rig, addr string, count int) []time.Duration {
	t.Helper()
	var rtts []time.Duration
	for range count {
		err := r.Do(Client, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var d net.Dialer
			start := time.Now()
			c, err := d.DialContext(ctx, "tcp4", addr)
			if err != nil {
				return err
			}
			rtts = append(rtts, time.Since(start))
			return c.Close()
		})
		if err != nil {
			t.Fatalf("connecting to %s: %v", addr, err)
		}
	}
	return rtts
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// udpLoss sends count numbered datagrams from namespace role to the client
// namespace, one a millisecond, and returns how many never arrived. The
// receiver stops after half a second without any datagram once all are sent.
func udpLoss(t *testing.T, r *Rig, role string, count int) int {
	t.Helper()
	var rx *net.UDPConn
	err := r.Do(Client, func() error {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(r.ClientIP)})
		rx = c
		return err
	})
	if err != nil {
		t.Fatalf("udp receiver: %v", err)
	}
	defer rx.Close()
	// Room for every datagram even if the reader fell behind.
	if sc, err := rx.SyscallConn(); err == nil {
		sc.Control(func(fd uintptr) {
			syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, 4<<20)
		})
	}
	var tx *net.UDPConn
	err = r.Do(role, func() error {
		c, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
		tx = c
		return err
	})
	if err != nil {
		t.Fatalf("udp sender in %s: %v", role, err)
	}
	defer tx.Close()

	var sent sync.WaitGroup
	sent.Add(1)
	var sendErr error
	go func() {
		defer sent.Done()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		buf := make([]byte, 8)
		for i := range count {
			<-tick.C
			binary.BigEndian.PutUint64(buf, uint64(i))
			if _, err := tx.Write(buf); err != nil {
				sendErr = err
				return
			}
		}
	}()
	done := make(chan struct{})
	go func() { sent.Wait(); close(done) }()

	got := map[uint64]bool{}
	buf := make([]byte, 64)
	for {
		allSent := false
		select {
		case <-done:
			allSent = true
		default:
		}
		rx.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		nr, err := rx.Read(buf)
		if err == nil && nr == 8 {
			if seq := binary.BigEndian.Uint64(buf); seq < uint64(count) {
				got[seq] = true
			}
			continue
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("udp receive: %v", err)
		}
		if allSent {
			break
		}
	}
	if sendErr != nil {
		t.Fatalf("udp send from %s: %v", role, sendErr)
	}
	return count - len(got)
}

// boundQueues lists the NFQUEUE numbers bound in namespace role.
func boundQueues(r *Rig, role string) ([]int, error) {
	var b []byte
	err := r.Do(role, func() error {
		var err error
		b, err = os.ReadFile("/proc/thread-self/net/netfilter/nfnetlink_queue")
		return err
	})
	var qs []int
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			n, perr := strconv.Atoi(f[0])
			if perr != nil {
				return nil, perr
			}
			qs = append(qs, n)
		}
	}
	return qs, err
}
