package dataplane

import (
	"bytes"

	"github.com/valyala/fasthttp"
)

// hopByHop lists the lower-case header fields that describe one
// connection and are never forwarded (RFC 9110 7.6.1). Transfer-Encoding
// and Content-Length are re-framed by fasthttp on each side.
var hopByHop = [...]string{
	"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
	"proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade",
}

func isHopByHop(k []byte) bool {
	for _, h := range hopByHop {
		if equalFoldLower(k, h) {
			return true
		}
	}
	return false
}

// connectionTokens appends the comma-separated tokens of every Connection
// field value in v to dst; the tokens alias v.
func connectionTokens(dst [][]byte, v []byte) [][]byte {
	for len(v) > 0 {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			tok, v = v, nil
		}
		tok = bytes.TrimSpace(tok)
		if len(tok) > 0 {
			dst = append(dst, tok)
		}
	}
	return dst
}

func containsFold(list [][]byte, k []byte) bool {
	for _, t := range list {
		if bytes.EqualFold(t, k) {
			return true
		}
	}
	return false
}

func containsLower(list []string, k []byte) bool {
	for _, t := range list {
		if equalFoldLower(k, t) {
			return true
		}
	}
	return false
}

// hasRawField reports whether the raw header block holds a field named
// lname (lower-case). It sees fields fasthttp folds away after parsing,
// such as a Content-Length next to Transfer-Encoding.
func hasRawField(raw []byte, lname string) bool {
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		if k, _, ok := bytes.Cut(line, []byte(":")); ok && equalFoldLower(bytes.TrimRight(k, " \t"), lname) {
			return true
		}
	}
	return false
}

// hasObsFold reports whether the raw header block continues a field on a
// line that starts with a space or tab (obs-fold, RFC 9112 5.2).
func hasObsFold(raw []byte) bool {
	if len(raw) > 0 && (raw[0] == ' ' || raw[0] == '\t') {
		return true
	}
	for i := 0; i+1 < len(raw); i++ {
		if raw[i] == '\n' && (raw[i+1] == ' ' || raw[i+1] == '\t') {
			return true
		}
	}
	return false
}

// isAuthorityForm reports whether a request-target is host:port, the
// only form CONNECT takes (RFC 9112 3.2.3).
func isAuthorityForm(target []byte) bool {
	return len(target) > 0 && target[0] != '/' && target[0] != '*' &&
		!bytes.Contains(target, []byte("://")) && bytes.IndexByte(target, ':') > 0
}

// cleanResponseHeader removes hop-by-hop fields, fields the backend named
// in Connection and the route's response removals, whatever their case.
// Framing fields stay: fasthttp re-frames the body for the client.
func cleanResponseHeader(h *fasthttp.ResponseHeader, ex *exchange, remove []string) {
	ex.tokens = ex.tokens[:0]
	ex.keyBuf = ex.keyBuf[:0]
	ex.keys = ex.keys[:0]
	for k, v := range h.All() {
		if equalFoldLower(k, "connection") {
			// Copy: deleting fields below may move the bytes v aliases.
			start := len(ex.keyBuf)
			ex.keyBuf = append(ex.keyBuf, v...)
			ex.keys = append(ex.keys, span{start, len(ex.keyBuf), true})
		}
	}
	n := len(ex.keys)
	for i := 0; i < n; i++ {
		s := ex.keys[i]
		ex.tokens = connectionTokens(ex.tokens, ex.keyBuf[s.from:s.to])
	}
	ex.keys = ex.keys[:0]
	for k := range h.All() {
		if equalFoldLower(k, "transfer-encoding") || equalFoldLower(k, "content-length") {
			continue
		}
		if isHopByHop(k) || containsFold(ex.tokens, k) || containsLower(remove, k) {
			start := len(ex.keyBuf)
			ex.keyBuf = append(ex.keyBuf, k...)
			ex.keys = append(ex.keys, span{start, len(ex.keyBuf), false})
		}
	}
	for _, s := range ex.keys {
		h.DelBytes(ex.keyBuf[s.from:s.to])
	}
	h.ResetConnectionClose()
}

type span struct {
	from, to int
	value    bool
}
