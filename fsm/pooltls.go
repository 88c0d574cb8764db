package fsm

import (
	"bytes"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// PoolTLS makes the connections to a pool's backends TLS: proxied
// requests and active health checks alike, with the same verification and
// client certificate.
//
// The backend's certificate is verified against CA (inline PEM) or CAFile
// (a PEM file every node reads), or the system roots when neither is set,
// for ServerName (default: the host of the backend's address; an IP is
// matched against the certificate's IP SANs). CertFile and KeyFile name a
// client certificate (mutual TLS) every node reads from its own disk, like
// an https listener's files; the key never enters the replicated state.
// InsecureSkipVerify turns verification off: it is logged as a warning at
// every table build and shown by rafter_pool_tls_insecure_skip_verify.
type PoolTLS struct {
	CA                 string `json:"ca,omitempty"`
	CAFile             string `json:"ca_file,omitempty"`
	ServerName         string `json:"server_name,omitempty"`
	CertFile           string `json:"cert_file,omitempty"`
	KeyFile            string `json:"key_file,omitempty"`
	InsecureSkipVerify bool   `json:"insecure_skip_verify,omitempty"`
}

// ProxyProtocol configures the PROXY protocol (v1 and v2, told apart by
// their signatures) on a listener. A header is read only from a source
// address within Trusted; the address it carries then is the client's
// address everywhere (X-Forwarded-For, access log, hash on client_ip).
// A connection from any other source that starts with a PROXY signature
// is closed. With Required, a trusted source's connection without a
// header is closed. Timeout bounds the wait for the header (default 5s).
type ProxyProtocol struct {
	Trusted  []string `json:"trusted"`
	Required bool     `json:"required,omitempty"`
	Timeout  Duration `json:"timeout,omitempty"`
}

// PROXY protocol versions a pool may send to its backends.
const (
	ProxyProtocolV1 = "v1"
	ProxyProtocolV2 = "v2"
)

// Bounds of pool tls and listener proxy_protocol.
const (
	// maxCAPEMLen bounds tls.ca: it is replicated in every log entry and
	// snapshot; 128 KiB holds a few hundred certificates.
	maxCAPEMLen = 128 << 10
	// maxCACerts bounds the certificates in tls.ca.
	maxCACerts = 256
	// maxTrustedCIDRs bounds proxy_protocol.trusted.
	maxTrustedCIDRs = 256
	// maxProxyTimeout bounds proxy_protocol.timeout: a load balancer in
	// front sends the header with the connection's first bytes.
	maxProxyTimeout = Duration(time.Minute)
	// minProxyTimeout keeps a set timeout above a LAN round trip.
	minProxyTimeout = Duration(10 * time.Millisecond)
	// maxServerNameLen bounds tls.server_name (a DNS name).
	maxServerNameLen = 253
)

func validatePoolTLS(p string, s *PoolSpec) error {
	switch s.SendProxyProtocol {
	case "", ProxyProtocolV1, ProxyProtocolV2:
	default:
		return invalidf(p+".send_proxy_protocol", "%q is not v1 or v2", s.SendProxyProtocol)
	}
	t := s.TLS
	if t == nil {
		return nil
	}
	p += ".tls"
	if err := firstErr(
		maxLen(p+".ca_file", t.CAFile, maxFileLen),
		maxLen(p+".cert_file", t.CertFile, maxFileLen),
		maxLen(p+".key_file", t.KeyFile, maxFileLen),
		maxLen(p+".server_name", t.ServerName, maxServerNameLen),
		maxLen(p+".ca", t.CA, maxCAPEMLen),
	); err != nil {
		return err
	}
	for _, f := range []struct{ name, v string }{{"ca_file", t.CAFile}, {"cert_file", t.CertFile}, {"key_file", t.KeyFile}} {
		if strings.ContainsAny(f.v, "\x00\n\r") {
			return invalidf(p+"."+f.name, "contains a line break or NUL")
		}
	}
	if t.CA != "" && t.CAFile != "" {
		return invalidf(p+".ca_file", "set at most one of ca, ca_file")
	}
	if t.InsecureSkipVerify && (t.CA != "" || t.CAFile != "") {
		return invalidf(p+".insecure_skip_verify", "contradicts a ca or ca_file, which would never be used")
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		if t.CertFile == "" {
			return invalidf(p+".cert_file", "required with key_file")
		}
		return invalidf(p+".key_file", "required with cert_file")
	}
	if t.ServerName != "" {
		if _, err := netip.ParseAddr(t.ServerName); err != nil {
			if msg := hostnameProblem(t.ServerName, false); msg != "" {
				return invalidf(p+".server_name", "%s", msg)
			}
		}
	}
	if t.CA != "" {
		if _, err := CheckCAPEM([]byte(t.CA)); err != nil {
			return invalidf(p+".ca", "%v", err)
		}
	}
	return nil
}

// CheckCAPEM checks a bundle of PEM certificates strictly but only for
// its structure: CERTIFICATE blocks only, each a DER SEQUENCE with nothing
// after it, at most maxCACerts, nothing but white space around them. It
// returns the DER of each. Validation runs again when every node applies
// the entry, so it must not depend on the Go version's X.509 parser,
// whose strictness changes between releases: the data plane parses the
// certificates themselves (and refuses the pool's tls block if one does
// not parse).
func CheckCAPEM(b []byte) ([][]byte, error) {
	var ders [][]byte
	rest := b
	for {
		rest = bytes.TrimLeft(rest, " \t\r\n")
		if len(rest) == 0 {
			break
		}
		block, next := pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("not PEM after certificate %d", len(ders))
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("block %d is %.32q, want CERTIFICATE", len(ders), block.Type)
		}
		if len(ders) == maxCACerts {
			return nil, fmt.Errorf("more than %d certificates", maxCACerts)
		}
		var seq asn1.RawValue
		tail, err := asn1.Unmarshal(block.Bytes, &seq)
		if err != nil || len(tail) != 0 || seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
			return nil, fmt.Errorf("certificate %d is not DER", len(ders))
		}
		ders = append(ders, block.Bytes)
		rest = next
	}
	if len(ders) == 0 {
		return nil, fmt.Errorf("no PEM certificate")
	}
	return ders, nil
}

func validateProxyProtocol(p string, pp *ProxyProtocol) error {
	if pp == nil {
		return nil
	}
	if len(pp.Trusted) == 0 {
		return invalidf(p+".trusted", "at least one CIDR required (the addresses of the load balancers in front)")
	}
	if err := maxItems(p+".trusted", len(pp.Trusted), maxTrustedCIDRs); err != nil {
		return err
	}
	for i, c := range pp.Trusted {
		if _, err := ParseTrusted(c); err != nil {
			return invalidf(fmt.Sprintf("%s.trusted[%d]", p, i), "%.64q is not a CIDR (e.g. 10.0.0.0/16) or an IP address", c)
		}
	}
	if pp.Timeout != 0 {
		return durRange(p+".timeout", pp.Timeout, minProxyTimeout, maxProxyTimeout)
	}
	return nil
}

// ParseTrusted reads one proxy_protocol.trusted entry: a CIDR, or an IP
// address standing for itself alone. The prefix is returned masked.
func ParseTrusted(s string) (netip.Prefix, error) {
	if len(s) > 64 {
		return netip.Prefix{}, fmt.Errorf("too long")
	}
	if strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return pfx.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("zone not allowed")
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
