//go:build linux

package netns

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A userspace stand-in for tc netem where the kernel has no sch_netem: an
// NFQUEUE consumer that holds every queued packet for a fixed delay before
// accepting it and drops a share of them at random. It speaks
// nfnetlink_queue (linux/netfilter/nfnetlink_queue.h) directly; the
// constants below are that header's, which golang.org/x/sys/unix lacks.
const (
	nfqnlMsgPacket  = 0
	nfqnlMsgVerdict = 1
	nfqnlMsgConfig  = 2

	nfqaPacketHdr  = 1
	nfqaVerdictHdr = 2

	nfqaCfgCmd         = 1
	nfqaCfgParams      = 2
	nfqaCfgQueueMaxlen = 3
	nfqaCfgMask        = 4
	nfqaCfgFlags       = 5

	nfqnlCfgCmdBind  = 1
	nfqnlCopyMeta    = 1
	nfqaCfgFFailOpen = 1 << 0

	nfDrop   = 0
	nfAccept = 1
)

// Limits of the emulation, so a burst can neither exhaust memory nor
// blackhole traffic: past nfqMaxLen packets waiting in the kernel, the
// queue fails open (the kernel accepts at once). The socket's receive
// buffer holds a full queue's messages (copy-meta ones take about 1 KiB
// each), so the kernel never has to discard one, which would strand its
// packet until the queue closes.
const (
	nfqMaxLen  = 8192
	nfqRcvBuf  = 16 << 20
	maxDelay   = 10 * time.Second
	nfqRecvBuf = 64 << 10
)

// nfqueue is one bound queue in one network namespace.
type nfqueue struct {
	num   uint16
	delay time.Duration
	loss  float64 // probability in [0, 1]
	rnd   *rand.Rand

	f       *os.File
	rc      syscall.RawConn
	seq     atomic.Uint32
	closed  atomic.Bool
	pending chan heldPacket
	wg      sync.WaitGroup

	// Counters: packets seen, dropped on purpose, accepted at once.
	seen, dropped, overflow atomic.Int64
	errMu                   sync.Mutex
	err                     error // the first verdict or read error
}

type heldPacket struct {
	id  uint32
	due time.Time
}

// openNFQueue binds queue num in the calling thread's network namespace
// (the socket stays there) in copy-meta mode: the consumer sees packet ids,
// never payloads. It consumes nothing until start.
func openNFQueue(num uint16, delay time.Duration, loss float64, seed uint64) (*nfqueue, error) {
	if delay < 0 || delay > maxDelay {
		return nil, fmt.Errorf("nfqueue delay: %s, want 0..%s", delay, maxDelay)
	}
	if !(loss >= 0 && loss <= 1) {
		return nil, fmt.Errorf("nfqueue loss: %v, want 0..1", loss)
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("nfqueue: netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("nfqueue: binding the netlink socket: %w", err)
	}
	// Root may exceed rmem_max.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, nfqRcvBuf); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("nfqueue: SO_RCVBUFFORCE: %w", err)
	}
	q := &nfqueue{
		num: num, delay: delay, loss: loss,
		rnd:     rand.New(rand.NewPCG(seed, 0x6e6671)),
		f:       os.NewFile(uintptr(fd), "nfqueue"),
		pending: make(chan heldPacket, nfqMaxLen),
	}
	if q.rc, err = q.f.SyscallConn(); err != nil {
		q.f.Close()
		return nil, fmt.Errorf("nfqueue: %w", err)
	}
	params := make([]byte, 5) // struct nfqnl_msg_config_params, packed
	binary.BigEndian.PutUint32(params[0:4], 0xffff)
	params[4] = nfqnlCopyMeta
	steps := []struct {
		what  string
		attrs []byte
	}{
		{"binding queue", nlAttr(nfqaCfgCmd, []byte{nfqnlCfgCmdBind, 0, 0, unix.AF_INET})},
		{"copy mode", nlAttr(nfqaCfgParams, params)},
		{"queue length", nlAttr(nfqaCfgQueueMaxlen, be32(nfqMaxLen))},
		{"fail-open flag", append(nlAttr(nfqaCfgMask, be32(nfqaCfgFFailOpen)), nlAttr(nfqaCfgFlags, be32(nfqaCfgFFailOpen))...)},
	}
	for _, s := range steps {
		if err := q.config(s.attrs); err != nil {
			q.f.Close()
			return nil, fmt.Errorf("nfqueue %d: %s: %w", num, s.what, err)
		}
	}
	return q, nil
}

// start runs the reader, which gives drop verdicts at once, and the
// releaser, which accepts held packets in arrival order once their delay
// is over.
func (q *nfqueue) start() {
	q.wg.Go(q.read)
	q.wg.Go(q.release)
}

// stop closes the socket (the kernel then drops whatever is still queued,
// so callers first let the queue drain) and waits for both goroutines.
// Calling it again only waits and reports.
func (q *nfqueue) stop() error {
	// The poller's error for a closed file is not os.ErrClosed; the flag
	// tells the goroutines that a failure is the close.
	var cerr error
	if !q.closed.Swap(true) {
		cerr = q.f.Close()
	}
	q.wg.Wait()
	q.errMu.Lock()
	defer q.errMu.Unlock()
	return errors.Join(q.err, cerr)
}

func (q *nfqueue) fail(err error) {
	q.errMu.Lock()
	defer q.errMu.Unlock()
	if q.err == nil {
		q.err = err
	}
}

func (q *nfqueue) read() {
	defer close(q.pending)
	buf := make([]byte, nfqRecvBuf)
	for {
		n, err := q.recv(buf)
		if q.closed.Load() {
			return
		}
		if errors.Is(err, unix.ENOBUFS) {
			// Messages were lost; their packets wait until close. Count
			// it and go on: the queue length in /proc shows the rest.
			q.fail(fmt.Errorf("nfqueue %d: receive buffer overrun", q.num))
			continue
		}
		if err != nil {
			q.fail(fmt.Errorf("nfqueue %d: receive: %w", q.num, err))
			return
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			q.fail(fmt.Errorf("nfqueue %d: parsing: %w", q.num, err))
			continue
		}
		for _, m := range msgs {
			if m.Header.Type != unix.NFNL_SUBSYS_QUEUE<<8|nfqnlMsgPacket {
				continue
			}
			id, ok := packetID(m.Data)
			if !ok {
				q.fail(fmt.Errorf("nfqueue %d: a packet message without a packet header", q.num))
				continue
			}
			q.seen.Add(1)
			if q.loss > 0 && q.rnd.Float64() < q.loss {
				q.dropped.Add(1)
				q.verdict(id, nfDrop)
				continue
			}
			select {
			case q.pending <- heldPacket{id: id, due: time.Now().Add(q.delay)}:
			default:
				q.overflow.Add(1)
				q.verdict(id, nfAccept)
			}
		}
	}
}

func (q *nfqueue) release() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for p := range q.pending {
		if d := time.Until(p.due); d > 0 {
			t.Reset(d)
			<-t.C
		}
		q.verdict(p.id, nfAccept)
	}
}

func (q *nfqueue) verdict(id uint32, v uint32) {
	hdr := make([]byte, 8) // struct nfqnl_msg_verdict_hdr
	binary.BigEndian.PutUint32(hdr[0:4], v)
	binary.BigEndian.PutUint32(hdr[4:8], id)
	msg := q.message(nfqnlMsgVerdict, 0, nlAttr(nfqaVerdictHdr, hdr))
	if err := q.send(msg); err != nil && !q.closed.Load() {
		q.fail(fmt.Errorf("nfqueue %d: verdict for packet %d: %w", q.num, id, err))
	}
}

// config sends one configuration message and waits for its
// acknowledgement. Only used before start, while no reader runs.
func (q *nfqueue) config(attrs []byte) error {
	msg := q.message(nfqnlMsgConfig, unix.NLM_F_ACK, attrs)
	seq := binary.NativeEndian.Uint32(msg[8:12])
	if err := q.send(msg); err != nil {
		return err
	}
	buf := make([]byte, 8192)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		q.f.SetReadDeadline(deadline)
		n, err := q.recv(buf)
		if err != nil {
			return fmt.Errorf("waiting for the acknowledgement: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Type != unix.NLMSG_ERROR || m.Header.Seq != seq || len(m.Data) < 4 {
				continue
			}
			q.f.SetReadDeadline(time.Time{})
			if errno := -int32(binary.NativeEndian.Uint32(m.Data[0:4])); errno != 0 {
				return syscall.Errno(errno)
			}
			return nil
		}
	}
	return errors.New("no acknowledgement within 5s")
}

// message is a netlink message of the queue subsystem: header, nfgenmsg
// (res_id is the queue number, big-endian), attributes.
func (q *nfqueue) message(typ uint16, flags uint16, attrs []byte) []byte {
	b := make([]byte, unix.NLMSG_HDRLEN+4, unix.NLMSG_HDRLEN+4+len(attrs))
	b = append(b, attrs...)
	binary.NativeEndian.PutUint32(b[0:4], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:6], unix.NFNL_SUBSYS_QUEUE<<8|typ)
	binary.NativeEndian.PutUint16(b[6:8], unix.NLM_F_REQUEST|flags)
	binary.NativeEndian.PutUint32(b[8:12], q.seq.Add(1))
	b[16] = unix.AF_UNSPEC
	b[17] = unix.NFNETLINK_V0
	binary.BigEndian.PutUint16(b[18:20], q.num)
	return b
}

func (q *nfqueue) send(msg []byte) error {
	var serr error
	err := q.rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return serr != unix.EAGAIN
	})
	if err != nil {
		return err
	}
	return serr
}

func (q *nfqueue) recv(buf []byte) (int, error) {
	var n int
	var rerr error
	err := q.rc.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), buf, 0)
		return rerr != unix.EAGAIN
	})
	if err != nil {
		return 0, err
	}
	return n, rerr
}

// packetID finds NFQA_PACKET_HDR in a packet message (after its nfgenmsg)
// and returns the packet id from it.
func packetID(data []byte) (uint32, bool) {
	if len(data) < 4 {
		return 0, false
	}
	b := data[4:]
	for len(b) >= unix.SizeofNlAttr {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		typ := binary.NativeEndian.Uint16(b[2:4]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if l < unix.SizeofNlAttr || l > len(b) {
			return 0, false
		}
		if typ == nfqaPacketHdr && l >= unix.SizeofNlAttr+4 {
			return binary.BigEndian.Uint32(b[4:8]), true
		}
		b = b[min(nlAlign(l), len(b)):]
	}
	return 0, false
}

func nlAttr(typ uint16, payload []byte) []byte {
	l := unix.SizeofNlAttr + len(payload)
	b := make([]byte, nlAlign(l))
	binary.NativeEndian.PutUint16(b[0:2], uint16(l))
	binary.NativeEndian.PutUint16(b[2:4], typ)
	copy(b[4:], payload)
	return b
}

func nlAlign(n int) int { return (n + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1) }

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
