package bench

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// The raw Go floor is the least a Go proxy with a goroutine per client
// connection can do, run as the proxy RawFloor. It uses no HTTP library:
// it looks at a request only to find its end and at an answer only to find
// its status and Content-Length, writes the request to a backend
// connection of the client connection's own with X-Forwarded-For added, and
// copies the answer back. It takes no request bodies (501) and no chunked
// answers (502). Its deadlines are re-armed lazily, as rafter's are.
//
// Beside the fasthttp floor it splits what is left of rafter's distance
// from HAProxy once more: the Go runtime's share (raw floor ÷ HAProxy) and
// the HTTP library's (fasthttp floor ÷ raw floor).

// Sizes of the raw floor's buffers: a request head, and an answer's head
// with as much of its body as one read brings.
const (
	rawHeadMax   = 16 << 10
	rawAnswerBuf = 64 << 10
)

var (
	errRawHead    = errors.New("head too large or malformed")
	errRawBody    = errors.New("request with a body")
	errRawChunked = errors.New("answer without Content-Length")
	// errAnswered: the client is gone or has part of the answer, so no
	// error reply can follow.
	errAnswered = errors.New("answer begun or client gone")
)

// ServeRawFloor serves the raw floor on ln until ln fails.
func ServeRawFloor(ln net.Listener, backend string, timeout, idle time.Duration) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go (&rawFloorConn{client: lazyDeadline{Conn: c, d: idle}, backend: backend, timeout: timeout}).serve()
	}
}

// lazyDeadline is a connection whose read and write deadline is d after
// its last use, set again only once it has fallen d/64 behind.
type lazyDeadline struct {
	net.Conn
	d     time.Duration
	until time.Time
}

func (l *lazyDeadline) arm(now time.Time) error {
	want := now.Add(l.d)
	if want.Sub(l.until) < l.d/64 {
		return nil
	}
	l.until = want
	return l.Conn.SetDeadline(want)
}

type rawFloorConn struct {
	client  lazyDeadline
	up      *lazyDeadline
	backend string
	timeout time.Duration
	xff     []byte // "X-Forwarded-For: ip\r\n"
	in      [rawHeadMax]byte
	out     []byte
	answer  [rawAnswerBuf]byte
}

func (f *rawFloorConn) serve() {
	defer f.client.Close()
	defer f.closeUp()
	f.xff = []byte("X-Forwarded-For: ")
	if ta, ok := f.client.RemoteAddr().(*net.TCPAddr); ok {
		f.xff = append(f.xff, ta.IP.String()...)
	}
	f.xff = append(f.xff, "\r\n"...)
	n := 0 // bytes of f.in read and not yet handled
	for {
		if err := f.client.arm(time.Now()); err != nil {
			return
		}
		end := bytes.Index(f.in[:n], crlfcrlf)
		for end < 0 {
			if n == len(f.in) {
				f.reply("431 Request Header Fields Too Large")
				return
			}
			m, err := f.client.Read(f.in[n:])
			if err != nil {
				return
			}
			n += m
			end = bytes.Index(f.in[:n], crlfcrlf)
		}
		head := f.in[:end+4]
		method, err := rawRequestHead(head)
		switch {
		case errors.Is(err, errRawBody):
			f.reply("501 Not Implemented")
			return
		case err != nil:
			f.reply("400 Bad Request")
			return
		}
		if err := f.exchange(head, method); err != nil {
			f.closeUp()
			if !errors.Is(err, errAnswered) {
				f.reply("502 Bad Gateway")
			}
			return
		}
		n = copy(f.in[:], f.in[len(head):n])
	}
}

var crlfcrlf = []byte("\r\n\r\n")

// exchange sends one request head to the backend and copies its answer to
// the client.
func (f *rawFloorConn) exchange(head []byte, method []byte) error {
	if f.up == nil {
		c, err := net.DialTimeout("tcp", f.backend, f.timeout)
		if err != nil {
			return err
		}
		f.up = &lazyDeadline{Conn: c, d: f.timeout}
	}
	if err := f.up.arm(time.Now()); err != nil {
		return err
	}
	line := bytes.Index(head, []byte("\r\n")) + 2
	f.out = append(append(append(f.out[:0], head[:line]...), f.xff...), head[line:]...)
	if _, err := f.up.Write(f.out); err != nil {
		return err
	}
	n, end := 0, -1
	for end < 0 {
		if n == len(f.answer) {
			return errRawHead
		}
		m, err := f.up.Read(f.answer[n:])
		if err != nil {
			return err
		}
		n += m
		end = bytes.Index(f.answer[:n], crlfcrlf)
	}
	body, err := rawAnswerBody(f.answer[:end+4], bytes.Equal(method, []byte("HEAD")))
	if err != nil {
		return err
	}
	left := end + 4 + body - n // body bytes still to read
	if left < 0 {
		return errRawHead // the backend sent more than its answer
	}
	for {
		if _, err := f.client.Write(f.answer[:n]); err != nil {
			return errAnswered
		}
		if left == 0 {
			return nil
		}
		n, err = f.up.Read(f.answer[:min(left, len(f.answer))])
		if err != nil {
			return fmt.Errorf("%w: %w", errAnswered, err)
		}
		left -= n
	}
}

func (f *rawFloorConn) closeUp() {
	if f.up != nil {
		f.up.Close()
		f.up = nil
	}
}

// reply answers the client with status and no body; the connection closes
// after it.
func (f *rawFloorConn) reply(status string) {
	_, _ = f.client.Write([]byte("HTTP/1.1 " + status + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
}

// rawRequestHead returns the method of a request head, refusing one that
// announces a body.
func rawRequestHead(head []byte) ([]byte, error) {
	sp := bytes.IndexByte(head, ' ')
	if sp <= 0 {
		return nil, errRawHead
	}
	for _, name := range [][]byte{[]byte("content-length"), []byte("transfer-encoding")} {
		if v, ok := rawField(head, name); ok && !bytes.Equal(v, []byte("0")) {
			return nil, errRawBody
		}
	}
	return head[:sp], nil
}

// rawAnswerBody returns how many body bytes follow an answer's head.
func rawAnswerBody(head []byte, toHead bool) (int, error) {
	if len(head) < 12 || !bytes.HasPrefix(head, []byte("HTTP/1.")) {
		return 0, errRawHead
	}
	status, err := strconv.Atoi(string(head[9:12]))
	if err != nil {
		return 0, errRawHead
	}
	if toHead || status < 200 || status == 204 || status == 304 {
		return 0, nil
	}
	if _, ok := rawField(head, []byte("transfer-encoding")); ok {
		return 0, errRawChunked
	}
	v, ok := rawField(head, []byte("content-length"))
	if !ok {
		return 0, errRawChunked
	}
	size, err := strconv.Atoi(string(v))
	if err != nil || size < 0 {
		return 0, errRawHead
	}
	return size, nil
}

// rawField finds the value of the field name (lower case) in a head.
func rawField(head, name []byte) ([]byte, bool) {
	for rest := head[bytes.Index(head, []byte("\r\n"))+2:]; len(rest) > 2; {
		eol := bytes.Index(rest, []byte("\r\n"))
		if eol < 0 {
			return nil, false
		}
		line := rest[:eol]
		rest = rest[eol+2:]
		if len(line) > len(name) && line[len(name)] == ':' && bytes.EqualFold(line[:len(name)], name) {
			return bytes.TrimSpace(line[len(name)+1:]), true
		}
	}
	return nil, false
}
