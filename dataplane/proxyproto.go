package dataplane

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"unsafe"
)

// The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2)
// carries the client's address from a load balancer in front (an AWS NLB,
// HAProxy) at the start of a connection. The parsers below read from a
// buffer that holds the connection's first bytes; they never allocate and
// never read past the header's end, which is bounded: 107 bytes for a v1
// line, proxyV2MaxLen for a v2 header, whatever the header claims.

const (
	proxyV1Sig = "PROXY "
	proxyV2Sig = "\r\n\r\n\x00\r\nQUIT\n"
	// proxyV1MaxLen is the longest v1 line, CRLF included (the spec's 107).
	proxyV1MaxLen = 107
	// proxyV2MaxLen bounds a v2 header, its 16 fixed bytes included. The
	// addresses take at most 216 bytes (AF_UNIX); the rest is TLVs, a few
	// dozen bytes from an AWS NLB (the VPC endpoint id) or a TLS-terminating
	// balancer. The spec allows 65551; a larger header is refused.
	proxyV2MaxLen = 2048
	// proxyBufSize is the buffer a connection's first bytes are read into
	// while looking for a header.
	proxyBufSize = proxyV2MaxLen
)

// Errors of PROXY header parsing. errProxyNeedMore is not a failure: the
// buffer holds a valid beginning and the header continues.
var (
	errProxyNeedMore  = errors.New("proxy protocol: header incomplete")
	errProxyNoHeader  = errors.New("proxy protocol: no PROXY header")
	errProxyTooLong   = errors.New("proxy protocol: header too long")
	errProxyMalformed = errors.New("proxy protocol: malformed header")
	errProxyUntrusted = errors.New("proxy protocol: header from an untrusted source")
)

// proxyHeader is a parsed PROXY header.
type proxyHeader struct {
	version uint8
	// local: the header carries no client address to use (v2 LOCAL, v1
	// UNKNOWN, v2 AF_UNSPEC or AF_UNIX); the connection's own addresses
	// stand.
	local    bool
	src, dst netip.AddrPort
	// n is the header's length in bytes: what follows is the client's.
	n int
}

// proxySigState tells what b, a connection's first bytes, begins with.
type proxySig uint8

const (
	sigNone    proxySig = iota // neither signature: no header
	sigPartial                 // a prefix of a signature: read more to decide
	sigV1
	sigV2
)

func proxySignature(b []byte) proxySig {
	switch {
	case bytes.HasPrefix(b, []byte(proxyV2Sig)):
		return sigV2
	case bytes.HasPrefix(b, []byte(proxyV1Sig)):
		return sigV1
	case len(b) < len(proxyV2Sig) && bytes.HasPrefix([]byte(proxyV2Sig), b),
		len(b) < len(proxyV1Sig) && bytes.HasPrefix([]byte(proxyV1Sig), b):
		return sigPartial
	}
	return sigNone
}

// parseProxy parses the PROXY header at the start of b, of either version.
func parseProxy(b []byte) (proxyHeader, error) {
	switch proxySignature(b) {
	case sigV1:
		return parseProxyV1(b)
	case sigV2:
		return parseProxyV2(b)
	case sigPartial:
		return proxyHeader{}, errProxyNeedMore
	}
	return proxyHeader{}, errProxyNoHeader
}

// parseProxyV1 parses "PROXY TCP4|TCP6 src dst sport dport\r\n" or
// "PROXY UNKNOWN ...\r\n" at the start of b. Fields are separated by
// exactly one space; addresses are in their canonical family, ports are
// decimal 0..65535 without leading zeros.
func parseProxyV1(b []byte) (proxyHeader, error) {
	if !bytes.HasPrefix(b, []byte(proxyV1Sig)) {
		return proxyHeader{}, errProxyNoHeader
	}
	end := bytes.IndexByte(b[:min(len(b), proxyV1MaxLen)], '\n')
	if end < 0 {
		if len(b) >= proxyV1MaxLen {
			return proxyHeader{}, errProxyTooLong
		}
		return proxyHeader{}, errProxyNeedMore
	}
	if end == 0 || b[end-1] != '\r' {
		return proxyHeader{}, errProxyMalformed
	}
	h := proxyHeader{version: 1, n: end + 1}
	line := b[len(proxyV1Sig) : end-1]
	proto, rest, _ := bytes.Cut(line, []byte{' '})
	switch string(proto) {
	case "UNKNOWN":
		// The sender knows no addresses; whatever follows is ignored.
		h.local = true
		return h, nil
	case "TCP4", "TCP6":
	default:
		return proxyHeader{}, errProxyMalformed
	}
	var f [4][]byte
	for i := range f {
		var ok bool
		f[i], rest, ok = bytes.Cut(rest, []byte{' '})
		if len(f[i]) == 0 || ok != (i < 3) {
			return proxyHeader{}, errProxyMalformed
		}
	}
	v4 := proto[3] == '4'
	src, ok1 := parseProxyV1Addr(f[0], v4)
	dst, ok2 := parseProxyV1Addr(f[1], v4)
	sport, ok3 := parseProxyV1Port(f[2])
	dport, ok4 := parseProxyV1Port(f[3])
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return proxyHeader{}, errProxyMalformed
	}
	h.src = netip.AddrPortFrom(src, sport)
	h.dst = netip.AddrPortFrom(dst, dport)
	return h, nil
}

func parseProxyV1Addr(b []byte, v4 bool) (netip.Addr, bool) {
	if len(b) == 0 || len(b) > 45 || bytes.IndexByte(b, '%') >= 0 {
		return netip.Addr{}, false
	}
	// netip.ParseAddr keeps no reference to its argument (zones, which
	// it would intern, are refused above), so the bytes are viewed as a
	// string without a copy.
	a, err := netip.ParseAddr(unsafe.String(&b[0], len(b)))
	if err != nil || a.Is4() != v4 {
		return netip.Addr{}, false
	}
	return a, true
}

func parseProxyV1Port(b []byte) (uint16, bool) {
	if len(b) == 0 || len(b) > 5 || (b[0] == '0' && len(b) > 1) {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if n > 65535 {
		return 0, false
	}
	return uint16(n), true
}

// parseProxyV2 parses a binary v2 header at the start of b: 12 signature
// bytes, version and command, family and transport, a big-endian length,
// then the addresses and TLVs. Every TLV must lie within the length.
func parseProxyV2(b []byte) (proxyHeader, error) {
	if !bytes.HasPrefix(b, []byte(proxyV2Sig)) {
		if len(b) < len(proxyV2Sig) && bytes.HasPrefix([]byte(proxyV2Sig), b) {
			return proxyHeader{}, errProxyNeedMore
		}
		return proxyHeader{}, errProxyNoHeader
	}
	if len(b) < 16 {
		return proxyHeader{}, errProxyNeedMore
	}
	verCmd, fam := b[12], b[13]
	total := 16 + int(binary.BigEndian.Uint16(b[14:16]))
	if verCmd>>4 != 2 {
		return proxyHeader{}, errProxyMalformed
	}
	if total > proxyV2MaxLen {
		return proxyHeader{}, errProxyTooLong
	}
	if len(b) < total {
		return proxyHeader{}, errProxyNeedMore
	}
	h := proxyHeader{version: 2, n: total}
	body := b[16:total]
	var addrLen int
	switch fam >> 4 {
	case 0x0: // AF_UNSPEC
		addrLen = 0
	case 0x1: // AF_INET
		addrLen = 12
	case 0x2: // AF_INET6
		addrLen = 36
	case 0x3: // AF_UNIX
		addrLen = 216
	default:
		return proxyHeader{}, errProxyMalformed
	}
	switch verCmd & 0xf {
	case 0x0: // LOCAL: the sender's own connection (a health check)
		h.local = true
		return h, nil
	case 0x1: // PROXY
	default:
		return proxyHeader{}, errProxyMalformed
	}
	switch fam & 0xf {
	case 0x0: // UNSPEC
	case 0x1: // STREAM
	default: // DGRAM is not what arrives on a TCP listener
		return proxyHeader{}, errProxyMalformed
	}
	if fam>>4 == 0x0 {
		// AF_UNSPEC: the receiver ignores the address block.
		h.local = true
		return h, nil
	}
	if len(body) < addrLen {
		return proxyHeader{}, errProxyMalformed
	}
	switch fam >> 4 {
	case 0x1:
		h.src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[0:4])), binary.BigEndian.Uint16(body[8:10]))
		h.dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[4:8])), binary.BigEndian.Uint16(body[10:12]))
	case 0x2:
		h.src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[0:16])), binary.BigEndian.Uint16(body[32:34]))
		h.dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[16:32])), binary.BigEndian.Uint16(body[34:36]))
	default: // AF_UNIX: no IP address to use
		h.local = true
	}
	// TLVs (type, 16-bit length, value) fill the rest exactly. None is
	// used; a malformed one makes the whole header malformed.
	for tlv := body[addrLen:]; len(tlv) > 0; {
		if len(tlv) < 3 {
			return proxyHeader{}, errProxyMalformed
		}
		n := 3 + int(binary.BigEndian.Uint16(tlv[1:3]))
		if n > len(tlv) {
			return proxyHeader{}, errProxyMalformed
		}
		tlv = tlv[n:]
	}
	return h, nil
}

// appendProxyV1 appends a v1 header for a connection from src to dst
// ("PROXY UNKNOWN" when src is not a valid address).
func appendProxyV1(dst []byte, src, to netip.AddrPort) []byte {
	s, d := src.Addr().Unmap(), to.Addr().Unmap()
	if !src.IsValid() || !to.IsValid() || s.Is4() != d.Is4() {
		return append(dst, "PROXY UNKNOWN\r\n"...)
	}
	if s.Is4() {
		dst = append(dst, "PROXY TCP4 "...)
	} else {
		dst = append(dst, "PROXY TCP6 "...)
	}
	dst = s.AppendTo(dst)
	dst = append(dst, ' ')
	dst = d.AppendTo(dst)
	dst = append(dst, ' ')
	dst = appendUint(dst, src.Port())
	dst = append(dst, ' ')
	dst = appendUint(dst, to.Port())
	return append(dst, '\r', '\n')
}

func appendUint(dst []byte, v uint16) []byte {
	var b [5]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(dst, b[i:]...)
}

// appendProxyV2 appends a v2 PROXY header for a connection from src to
// dst (a LOCAL header when src is not a valid address).
func appendProxyV2(dst []byte, src, to netip.AddrPort) []byte {
	dst = append(dst, proxyV2Sig...)
	s, d := src.Addr().Unmap(), to.Addr().Unmap()
	switch {
	case !src.IsValid() || !to.IsValid() || s.Is4() != d.Is4():
		return append(dst, 0x20, 0x00, 0, 0)
	case s.Is4():
		dst = append(dst, 0x21, 0x11, 0, 12)
		a4, b4 := s.As4(), d.As4()
		dst = append(dst, a4[:]...)
		dst = append(dst, b4[:]...)
	default:
		dst = append(dst, 0x21, 0x21, 0, 36)
		a16, b16 := s.As16(), d.As16()
		dst = append(dst, a16[:]...)
		dst = append(dst, b16[:]...)
	}
	dst = binary.BigEndian.AppendUint16(dst, src.Port())
	return binary.BigEndian.AppendUint16(dst, to.Port())
}
