package dataplane

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// v2 builds a v2 header: verCmd, fam, then body (addresses and TLVs);
// length is len(body) unless forced with lenOverride >= 0.
func v2(verCmd, fam byte, body []byte, lenOverride int) []byte {
	b := append([]byte(proxyV2Sig), verCmd, fam)
	n := len(body)
	if lenOverride >= 0 {
		n = lenOverride
	}
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	return append(b, body...)
}

func v2inet(src, dst string, sport, dport uint16, tlvs ...byte) []byte {
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	body := append(append(s[:], d[:]...), byte(sport>>8), byte(sport), byte(dport>>8), byte(dport))
	return append(body, tlvs...)
}

func v2inet6(src, dst string, sport, dport uint16) []byte {
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	return append(append(s[:], d[:]...), byte(sport>>8), byte(sport), byte(dport>>8), byte(dport))
}

func TestParseProxy(t *testing.T) {
	unix := make([]byte, 216)
	copy(unix, "/var/run/a.sock")
	copy(unix[108:], "/var/run/b.sock")
	// An AWS NLB's TLV: type 0xEA, subtype 0x01, the VPC endpoint id.
	vpce := append([]byte{0xEA, 0x00, 0x17, 0x01}, "vpce-08d2bf15fac5001c9"...)
	tests := []struct {
		name  string
		in    []byte
		err   error
		src   string // "" for a local header
		n     int    // header length; 0 means len(in)
		local bool
	}{
		// v1
		{name: "v1 tcp4", in: []byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"), src: "192.0.2.1:56324"},
		{name: "v1 tcp6", in: []byte("PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n"), src: "[2001:db8::1]:1"},
		{name: "v1 tcp4 with data", in: []byte("PROXY TCP4 10.0.0.1 10.0.0.2 1000 80\r\nGET / HTTP/1.1\r\n"), src: "10.0.0.1:1000", n: 38},
		{name: "v1 port 0", in: []byte("PROXY TCP4 10.0.0.1 10.0.0.2 0 80\r\n"), src: "10.0.0.1:0"},
		{name: "v1 unknown", in: []byte("PROXY UNKNOWN\r\n"), local: true},
		{name: "v1 unknown with addresses", in: []byte("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"), local: true},
		{name: "v1 longest", in: []byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"), src: "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"},
		{name: "v1 truncated", in: []byte("PROXY TCP4 192.0.2.1 198.51"), err: errProxyNeedMore},
		{name: "v1 sig prefix", in: []byte("PROX"), err: errProxyNeedMore},
		{name: "v1 too long", in: []byte("PROXY UNKNOWN " + strings.Repeat("a", 100) + "\r\n"), err: errProxyTooLong},
		{name: "v1 108 without newline", in: []byte("PROXY " + strings.Repeat("1", 102)), err: errProxyTooLong},
		{name: "v1 LF only", in: []byte("PROXY TCP4 10.0.0.1 10.0.0.2 1 2\n"), err: errProxyMalformed},
		{name: "v1 lower case", in: []byte("PROXY tcp4 10.0.0.1 10.0.0.2 1 2\r\n"), err: errProxyMalformed},
		{name: "v1 unknown proto", in: []byte("PROXY UDP4 10.0.0.1 10.0.0.2 1 2\r\n"), err: errProxyMalformed},
		{name: "v1 tcp4 with v6", in: []byte("PROXY TCP4 ::1 ::1 1 2\r\n"), err: errProxyMalformed},
		{name: "v1 tcp6 with v4", in: []byte("PROXY TCP6 10.0.0.1 10.0.0.2 1 2\r\n"), err: errProxyMalformed},
		{name: "v1 zone", in: []byte("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"), err: errProxyMalformed},
		{name: "v1 double space", in: []byte("PROXY TCP4  10.0.0.1 10.0.0.2 1 2\r\n"), err: errProxyMalformed},
		{name: "v1 trailing space", in: []byte("PROXY TCP4 10.0.0.1 10.0.0.2 1 2 \r\n"), err: errProxyMalformed},
		{name: "v1 missing port", in: []byte("PROXY TCP4 10.0.0.1 10.0.0.2 1\r\n"), err: errProxyMalformed},
		{name: "v1 extra field", in: []byte("PROXY TCP4 10.0.0.1 10.0.0.2 1 2 3\r\n"), err: errProxyMalformed},
		{name: "v1 port too big", in: []byte("PROXY TCP4 10.0.0.1 10.0.0.2 65536 2\r\n"), err: errProxyMalformed},
		{name: "v1 port leading zero", in: []byte("PROXY TCP4 10.0.0.1 10.0.0.2 080 2\r\n"), err: errProxyMalformed},
		{name: "v1 port sign", in: []byte("PROXY TCP4 10.0.0.1 10.0.0.2 +80 2\r\n"), err: errProxyMalformed},
		{name: "v1 bad ip", in: []byte("PROXY TCP4 10.0.0.256 10.0.0.2 1 2\r\n"), err: errProxyMalformed},
		{name: "v1 ip leading zero", in: []byte("PROXY TCP4 010.0.0.1 10.0.0.2 1 2\r\n"), err: errProxyMalformed},
		{name: "v1 NUL", in: []byte("PROXY TCP4 10.0.0.1\x00 10.0.0.2 1 2\r\n"), err: errProxyMalformed},
		{name: "v1 empty line", in: []byte("PROXY \r\n"), err: errProxyMalformed},
		// v2
		{name: "v2 inet", in: v2(0x21, 0x11, v2inet("192.0.2.1", "198.51.100.2", 56324, 443), -1), src: "192.0.2.1:56324"},
		{name: "v2 inet with data", in: append(v2(0x21, 0x11, v2inet("192.0.2.1", "198.51.100.2", 1, 2), -1), "GET /"...), src: "192.0.2.1:1", n: 28},
		{name: "v2 inet6", in: v2(0x21, 0x21, v2inet6("2001:db8::1", "2001:db8::2", 7, 8), -1), src: "[2001:db8::1]:7"},
		{name: "v2 inet tlvs", in: v2(0x21, 0x11, v2inet("10.1.2.3", "10.0.0.1", 9, 80, append(vpce, 0x04, 0x00, 0x00)...), -1), src: "10.1.2.3:9"},
		{name: "v2 unix", in: v2(0x21, 0x31, unix, -1), local: true},
		{name: "v2 local", in: v2(0x20, 0x00, nil, -1), local: true},
		{name: "v2 local with body", in: v2(0x20, 0x11, v2inet("10.1.2.3", "10.0.0.1", 9, 80), -1), local: true},
		{name: "v2 unspec", in: v2(0x21, 0x00, []byte{1, 2, 3}, -1), local: true},
		{name: "v2 sig prefix", in: []byte(proxyV2Sig[:5]), err: errProxyNeedMore},
		{name: "v2 fixed part truncated", in: []byte(proxyV2Sig + "\x21\x11"), err: errProxyNeedMore},
		{name: "v2 body truncated", in: v2(0x21, 0x11, v2inet("10.1.2.3", "10.0.0.1", 9, 80), -1)[:20], err: errProxyNeedMore},
		{name: "v2 bad version", in: v2(0x11, 0x11, v2inet("10.1.2.3", "10.0.0.1", 9, 80), -1), err: errProxyMalformed},
		{name: "v2 bad command", in: v2(0x22, 0x11, v2inet("10.1.2.3", "10.0.0.1", 9, 80), -1), err: errProxyMalformed},
		{name: "v2 bad family", in: v2(0x21, 0x41, v2inet("10.1.2.3", "10.0.0.1", 9, 80), -1), err: errProxyMalformed},
		{name: "v2 bad transport", in: v2(0x21, 0x13, v2inet("10.1.2.3", "10.0.0.1", 9, 80), -1), err: errProxyMalformed},
		{name: "v2 dgram", in: v2(0x21, 0x12, v2inet("10.1.2.3", "10.0.0.1", 9, 80), -1), err: errProxyMalformed},
		{name: "v2 inet short", in: v2(0x21, 0x11, []byte{1, 2, 3, 4, 5, 6, 7, 8}, -1), err: errProxyMalformed},
		{name: "v2 inet6 short", in: v2(0x21, 0x21, v2inet("10.1.2.3", "10.0.0.1", 9, 80), -1), err: errProxyMalformed},
		{name: "v2 unix short", in: v2(0x21, 0x31, unix[:100], -1), err: errProxyMalformed},
		{name: "v2 tlv truncated header", in: v2(0x21, 0x11, v2inet("10.1.2.3", "10.0.0.1", 9, 80, 0x04, 0x00), -1), err: errProxyMalformed},
		{name: "v2 tlv past end", in: v2(0x21, 0x11, v2inet("10.1.2.3", "10.0.0.1", 9, 80, 0x04, 0x00, 0x05, 1, 2), -1), err: errProxyMalformed},
		{name: "v2 tlv huge length", in: v2(0x21, 0x11, v2inet("10.1.2.3", "10.0.0.1", 9, 80, 0x04, 0xff, 0xff), -1), err: errProxyMalformed},
		{name: "v2 length too long", in: v2(0x21, 0x11, nil, 0xffff), err: errProxyTooLong},
		{name: "v2 length just over", in: v2(0x21, 0x11, nil, proxyV2MaxLen-15), err: errProxyTooLong},
		// neither
		{name: "http", in: []byte("GET / HTTP/1.1\r\n"), err: errProxyNoHeader},
		{name: "tls", in: []byte{0x16, 0x03, 0x01, 0x00, 0xa5}, err: errProxyNoHeader},
		{name: "bad v2 sig", in: []byte("\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x00"), err: errProxyNoHeader},
		{name: "proxy without space", in: []byte("PROXYTCP4 "), err: errProxyNoHeader},
		{name: "empty", in: nil, err: errProxyNeedMore},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := parseProxy(tt.in)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			n := tt.n
			if n == 0 {
				n = len(tt.in)
			}
			if h.n != n {
				t.Errorf("length %d, want %d", h.n, n)
			}
			if h.local != tt.local {
				t.Errorf("local = %v, want %v", h.local, tt.local)
			}
			if !tt.local && h.src.String() != tt.src {
				t.Errorf("src %s, want %s", h.src, tt.src)
			}
		})
	}
}

// Parsing allocates nothing, whatever the input.
func TestParseProxyAllocs(t *testing.T) {
	inputs := [][]byte{
		[]byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
		[]byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"),
		[]byte("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"),
		v2(0x21, 0x21, v2inet6("2001:db8::1", "2001:db8::2", 7, 8), -1),
		v2(0x21, 0x11, nil, 0xffff),
		[]byte("PROXY " + strings.Repeat("x", 200)),
	}
	allocs := testing.AllocsPerRun(100, func() {
		for _, in := range inputs {
			_, _ = parseProxy(in)
		}
	})
	if allocs != 0 {
		t.Fatalf("parsing allocated %.1f times", allocs)
	}
}

// What the writers produce, the parsers read back.
func TestProxyHeaderRoundTrip(t *testing.T) {
	for _, c := range []struct{ src, dst string }{
		{"192.0.2.1:56324", "10.0.0.1:80"}, {"[2001:db8::1]:1", "[::1]:65535"}, {"[::ffff:10.0.0.1]:5", "10.0.0.2:6"},
	} {
		src, dst := netip.MustParseAddrPort(c.src), netip.MustParseAddrPort(c.dst)
		want := netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		for v, b := range map[int][]byte{1: appendProxyV1(nil, src, dst), 2: appendProxyV2(nil, src, dst)} {
			h, err := parseProxy(b)
			if err != nil || h.local || h.src != want || h.n != len(b) || int(h.version) != v {
				t.Errorf("v%d %s: %+v, %v", v, c.src, h, err)
			}
		}
	}
	// Mixed families or no address: the header says so and carries none.
	for _, b := range [][]byte{
		appendProxyV1(nil, netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("[::1]:2")),
		appendProxyV2(nil, netip.AddrPort{}, netip.MustParseAddrPort("[::1]:2")),
	} {
		if h, err := parseProxy(b); err != nil || !h.local || h.n != len(b) {
			t.Errorf("%q: %+v, %v", b, h, err)
		}
	}
}

func proxySeeds(f *testing.F) {
	for _, s := range [][]byte{
		[]byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n\r\n"),
		[]byte("PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n"),
		[]byte("PROXY UNKNOWN\r\n"),
		[]byte("PROXY TCP4 10.0.0.1 10.0.0.2 080 2\r\n"),
		[]byte("PROXY " + strings.Repeat("1", 110)),
		v2(0x21, 0x11, v2inet("192.0.2.1", "198.51.100.2", 56324, 443), -1),
		v2(0x21, 0x21, v2inet6("2001:db8::1", "2001:db8::2", 7, 8), -1),
		v2(0x20, 0x00, nil, -1),
		v2(0x21, 0x11, v2inet("10.1.2.3", "10.0.0.1", 9, 80, 0xEA, 0x00, 0x02, 0x01, 0x41), -1),
		v2(0x21, 0x11, nil, 0xffff),
	} {
		f.Add(s)
	}
}

// checkParsed holds for every input: no panic, a header no longer than
// its input or bound, and a source that is a real address.
func checkParsed(t *testing.T, in []byte, h proxyHeader, err error, limit int) {
	if err != nil {
		if h != (proxyHeader{}) {
			t.Fatalf("an error with a header: %+v", h)
		}
		return
	}
	if h.n <= 0 || h.n > len(in) || h.n > limit {
		t.Fatalf("header length %d of %d input bytes (limit %d)", h.n, len(in), limit)
	}
	if !h.local && !h.src.Addr().IsValid() {
		t.Fatalf("no source address in a PROXY header: %+v", h)
	}
}

func FuzzProxyProtoV1(f *testing.F) {
	proxySeeds(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		h, err := parseProxyV1(in)
		checkParsed(t, in, h, err, proxyV1MaxLen)
		if err == nil && !bytes.HasSuffix(in[:h.n], []byte("\r\n")) {
			t.Fatalf("a v1 header not ending in CRLF: %q", in[:h.n])
		}
		if err == nil && !h.local {
			// What was accepted writes out as a header that reads back
			// as the same client address.
			out := appendProxyV1(nil, h.src, h.dst)
			h2, err := parseProxyV1(out)
			want := netip.AddrPortFrom(h.src.Addr().Unmap(), h.src.Port())
			if err != nil || h2.src != want {
				t.Fatalf("accepted %q, which writes back as %q: %+v, %v", in[:h.n], out, h2, err)
			}
		}
	})
}

func FuzzProxyProtoV2(f *testing.F) {
	proxySeeds(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		h, err := parseProxyV2(in)
		checkParsed(t, in, h, err, proxyV2MaxLen)
		if err == nil && int(binary.BigEndian.Uint16(in[14:16]))+16 != h.n {
			t.Fatalf("header length %d, its length field says %d", h.n, binary.BigEndian.Uint16(in[14:16]))
		}
		// Any cut of a header is incomplete, never something else.
		if err == nil && h.n > 0 {
			if _, err := parseProxyV2(in[:h.n-1]); !errors.Is(err, errProxyNeedMore) {
				t.Fatalf("a header cut by one byte: %v", err)
			}
		}
	})
}
