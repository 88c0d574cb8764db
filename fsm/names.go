package fsm

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
)

// validateName checks an object name: a DNS-label-like word of lower-case
// letters, digits and "-_." that starts and ends with a letter or digit.
func validateName(field, name string) error {
	if name == "" {
		return invalidf(field, "required")
	}
	if len(name) > maxNameLen {
		return invalidf(field, "%q is longer than %d characters", name, maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		ch := name[i]
		alnum := ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9'
		inner := ch == '-' || ch == '_' || ch == '.'
		if alnum || inner && i > 0 && i < len(name)-1 {
			continue
		}
		return invalidf(field, "%q is not a valid name (lower-case letters, digits, '-', '_', '.'; starting and ending with a letter or digit)", name)
	}
	return nil
}

// validateNodeID accepts the identifiers operators give with --node-id.
func validateNodeID(field, id string) error {
	if id == "" {
		return invalidf(field, "required")
	}
	if len(id) > maxNodeIDLen {
		return invalidf(field, "longer than %d characters", maxNodeIDLen)
	}
	for _, r := range id {
		if r == '/' || r > unicode.MaxASCII || !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return invalidf(field, "%q: only printable ASCII without spaces or '/'", id)
		}
	}
	return nil
}

// CheckZoneName reports why z is not a zone name, as a *FieldError on
// field "zone". Zones are DNS-label-like ("us-east-1a", "use1-az1", "a"):
// letters, digits and inner '-', '_', '.', at most 63 characters, so they
// read the same in a URL path, a table and a metric label.
func CheckZoneName(z string) error { return validateZoneName("zone", z) }

func validateZoneName(field, z string) error {
	if z == "" {
		return invalidf(field, "required")
	}
	if len(z) > maxZoneLen {
		return invalidf(field, "%q is longer than %d characters", z, maxZoneLen)
	}
	for i := 0; i < len(z); i++ {
		ch := z[i]
		alnum := ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9'
		inner := (ch == '-' || ch == '_' || ch == '.') && i > 0 && i < len(z)-1
		if !alnum && !inner {
			return invalidf(field, "%q is not a valid zone name (letters, digits, '-', '_', '.'; starting and ending with a letter or digit)", z)
		}
	}
	return nil
}

func validateNode(field string, n *Node) error {
	if err := validateNodeID(field+".id", n.ID); err != nil {
		return err
	}
	if err := validateZoneName(field+".zone", n.Zone); n.Zone != "" && err != nil {
		return err
	}
	if n.RaftAddr == "" {
		return invalidf(field+".raft_addr", "required")
	}
	if msg := hostPortProblem(n.RaftAddr); msg != "" {
		return invalidf(field+".raft_addr", "%s", msg)
	}
	for _, a := range []struct{ f, v string }{{"admin_addr", n.AdminAddr}, {"data_addr", n.DataAddr}} {
		if err := maxLen(field+"."+a.f, a.v, maxNodeAddrLen); err != nil {
			return err
		}
		if strings.ContainsFunc(a.v, unicode.IsSpace) {
			return invalidf(field+"."+a.f, "%q contains whitespace", a.v)
		}
	}
	if n.InstanceID != "" {
		if err := CheckInstanceID(n.InstanceID); err != nil {
			return reField(field+".instance_id", err)
		}
	}
	if n.ENI != "" {
		if err := CheckENI(n.ENI); err != nil {
			return reField(field+".eni", err)
		}
	}
	if n.PrivateIP != "" {
		if _, err := netip.ParseAddr(n.PrivateIP); err != nil {
			return invalidf(field+".private_ip", "%q is not an IP address", n.PrivateIP)
		}
	}
	if err := CheckRole(n.Role); err != nil {
		return reField(field+".role", err)
	}
	return nil
}

// CheckRole reports why r is not a member role: "voter", "proxy", or ""
// (a voter).
func CheckRole(r string) error {
	switch r {
	case "", RoleVoter, RoleProxy:
		return nil
	}
	if len(r) > 16 {
		r = r[:16] + "..."
	}
	return invalidf("role", "%q is not voter or proxy", r)
}

// awsID reports whether id is prefix followed by lower-case letters and digits.
func awsID(id, prefix string) bool {
	rest, ok := strings.CutPrefix(id, prefix)
	if !ok || rest == "" || len(rest) > 32 {
		return false
	}
	for i := 0; i < len(rest); i++ {
		if ch := rest[i]; !(ch >= '0' && ch <= '9' || ch >= 'a' && ch <= 'z') {
			return false
		}
	}
	return true
}

// hostnameProblem describes why h is not a host name a route may match
// (exact, or with wildcard a leading "*."), or returns "".
func hostnameProblem(h string, wildcard bool) string {
	if h == "" {
		return "empty host"
	}
	name := h
	if strings.HasPrefix(h, "*.") && wildcard {
		name = h[2:]
	}
	if strings.ContainsRune(h, ':') {
		return fmt.Sprintf("%q: a host must not contain a port", h)
	}
	if len(name) > 253 {
		return fmt.Sprintf("%q is longer than 253 characters", h)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Sprintf("%q is not a valid host name", h)
		}
		for i := 0; i < len(label); i++ {
			ch := label[i]
			ok := ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_'
			if !ok {
				if ch == '*' {
					return fmt.Sprintf("%q: a wildcard is only allowed as a leading \"*.\"", h)
				}
				return fmt.Sprintf("%q is not a valid host name", h)
			}
		}
	}
	return ""
}

// hostPortProblem describes why addr is not host:port with a valid port.
func hostPortProblem(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Sprintf("%q is not host:port", addr)
	}
	if host == "" {
		return fmt.Sprintf("%q has no host", addr)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || port[0] == '+' || port[0] == '0' {
		return fmt.Sprintf("%q: port must be 1..65535", addr)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	if strings.Contains(addr, "[") {
		return fmt.Sprintf("%q: bracketed host is not an IP address", addr)
	}
	if msg := hostnameProblem(host, false); msg != "" {
		return msg
	}
	return ""
}

// isToken reports whether s is an RFC 9110 token (header names, methods).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", ch) >= 0:
		default:
			return false
		}
	}
	return true
}

// The checks below are the rules for a node's identity wherever it is
// given: node records, `rafter agent` flags and cluster.Config. Each
// returns a *FieldError whose Message reads well after a flag name.

// CheckNodeID reports why id cannot identify a node.
func CheckNodeID(id string) error { return validateNodeID("node_id", id) }

// CheckInstanceID reports why id is not an EC2 instance id.
func CheckInstanceID(id string) error {
	if !awsID(id, "i-") {
		return invalidf("instance_id", "%q is not an instance id like i-0123456789abcdef0", id)
	}
	return nil
}

// CheckENI reports why id is not an EC2 network interface id.
func CheckENI(id string) error {
	if !awsID(id, "eni-") {
		return invalidf("eni", "%q is not a network interface id like eni-0123456789abcdef0", id)
	}
	return nil
}

// reField returns err, a *FieldError, with its field replaced.
func reField(field string, err error) error {
	var fe *FieldError
	if errors.As(err, &fe) {
		return &FieldError{Field: field, Message: fe.Message, Err: fe.Err}
	}
	return err
}
