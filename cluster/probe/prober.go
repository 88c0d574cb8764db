package probe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rafterlb/rafter/internal/adminhttp"
	"github.com/rafterlb/rafter/internal/conf"
)

// Sender delivers one probe to the leader's admin address.
type Sender interface {
	Send(ctx context.Context, leaderID, adminAddr string, req Request) (Response, error)
}

// HTTPSender posts probes to the admin API.
type HTTPSender struct {
	Client *http.Client
	Scheme string // default "http"
	Token  string // bearer token; empty: none
}

// Send posts req to Scheme://adminAddr/v1/cluster/probe.
func (s HTTPSender) Send(ctx context.Context, _, adminAddr string, req Request) (Response, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return Response{}, err
	}
	scheme := s.Scheme
	if scheme == "" {
		scheme = "http"
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, scheme+"://"+adminAddr+Path, bytes.NewReader(body))
	if err != nil {
		return Response{}, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	if req.Seq != 0 {
		hreq.Header.Set(HeaderIncarnation, strconv.FormatUint(req.Incarnation, 10))
		hreq.Header.Set(HeaderSeq, strconv.FormatUint(req.Seq, 10))
	}
	if p := req.Prior; p != nil {
		hreq.Header.Set(HeaderPrior, fmt.Sprintf("%s %d %d", p.Leader, p.Term, int64(p.Ago)))
	}
	resp, b, err := adminhttp.Do(s.Client, hreq, s.Token, 64<<10)
	if err != nil {
		return Response{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return Response{}, fmt.Errorf("probe: %s answered %d: %s", adminAddr, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	var out Response
	if err := json.Unmarshal(b, &out); err != nil {
		return Response{}, fmt.Errorf("probe: %s: malformed answer: %w", adminAddr, err)
	}
	return out, nil
}

// ProberConfig configures a Prober.
type ProberConfig struct {
	NodeID   string
	Interval time.Duration // between probe sends (default 100ms)
	Timeout  time.Duration // for one probe (default 500ms)
	// WarnAfter is how long probes may fail before the Prober says so at
	// WARN (default 5s): longer than a leader election takes.
	WarnAfter time.Duration
	// Leader names the leader and its admin address (cluster.Node.Leader).
	Leader func() (id, adminAddr string)
	// Local answers probes when this node leads (Tracker.Handle).
	Local  func(ctx context.Context, req Request) (Response, error)
	Sender Sender
	// Holding lists the Linux VIPs held now, as probe seq is composed;
	// from then on, grants answering earlier probes are void at the node
	// (see Request.Seq). nil: none.
	Holding func(seq uint64) map[string]uint64
	// Prior reports this node's last contact with a leader of an earlier
	// term than the current leader's (cluster.Node.PriorContact); nil or
	// ok false: not sent.
	Prior func() (leader string, term uint64, at time.Time, ok bool)
	// OnResponse sees the answer to probe seq before the next probe is
	// sent; nil: ignored.
	OnResponse func(seq uint64, resp Response)
	Now        func() time.Time
	Logger     *slog.Logger
}

// Prober sends this node's probes, one at a time.
type Prober struct {
	cfg         ProberConfig
	incarnation uint64
	seq         uint64 // of the last probe sent; only Run's goroutine
	leaving     atomic.Bool
	now         chan struct{}

	mu      sync.Mutex
	contact time.Time
}

// NewProber checks cfg and returns a Prober; Run sends.
func NewProber(cfg ProberConfig) (*Prober, error) {
	switch {
	case cfg.NodeID == "":
		return nil, errors.New("probe: prober.node_id: required")
	case cfg.Leader == nil:
		return nil, errors.New("probe: prober.leader: required")
	case cfg.Local == nil:
		return nil, errors.New("probe: prober.local: required")
	case cfg.Sender == nil:
		return nil, errors.New("probe: prober.sender: required")
	}
	if err := conf.NotNegative(
		conf.Field("probe: prober.interval", cfg.Interval),
		conf.Field("probe: prober.timeout", cfg.Timeout),
		conf.Field("probe: prober.warn_after", cfg.WarnAfter),
	); err != nil {
		return nil, err
	}
	conf.Default(&cfg.Interval, 100*time.Millisecond)
	conf.Default(&cfg.Timeout, 500*time.Millisecond)
	conf.Default(&cfg.WarnAfter, 5*time.Second)
	conf.Now(&cfg.Now)
	conf.Logger(&cfg.Logger)
	return &Prober{cfg: cfg, incarnation: rand.Uint64() | 1, now: make(chan struct{}, 1)}, nil
}

// QuorumContact is the send time of the last probe the leader answered:
// a quorum confirmed that leader after this instant. Zero before the first.
func (p *Prober) QuorumContact() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.contact
}

// SetLeaving marks the following probes as from a node that is stopping.
func (p *Prober) SetLeaving(leaving bool) { p.leaving.Store(leaving) }

// ProbeNow has the next probe sent at once (after the one in flight).
func (p *Prober) ProbeNow() {
	select {
	case p.now <- struct{}{}:
	default:
	}
}

// Run probes every Interval until ctx ends; never two at a time.
func (p *Prober) Run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	var (
		last         time.Time
		failingSince time.Time // zero: the last probe was answered
		warned       bool      // of the failures since failingSince
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-p.now:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
			// Asked for at once, but never closer than a fifth of the
			// interval to the previous probe: each costs the leader a
			// quorum round.
			if wait := p.cfg.Interval/5 - time.Since(last); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
		last = time.Now()
		sent := p.cfg.Now()
		err := p.probe(ctx, sent)
		switch {
		case err != nil && ctx.Err() == nil:
			if failingSince.IsZero() {
				p.cfg.Logger.Debug("probe of the leader failed", "err", err)
				failingSince = sent
			}
			if failed := p.cfg.Now().Sub(failingSince); !warned && failed >= p.cfg.WarnAfter {
				warned = true
				p.cfg.Logger.Warn("probes of the leader failing; this node cannot claim or keep linux vips until one is answered",
					"failing_for", failed.Round(time.Millisecond), "err", err,
					"action", "check that this node reaches the leader's admin address and that the leader has a quorum")
			}
		case err == nil && !failingSince.IsZero():
			if warned {
				p.cfg.Logger.Info("probes of the leader answered again", "failed_for", sent.Sub(failingSince).Round(time.Millisecond))
			}
			failingSince, warned = time.Time{}, false
		}
		wait := p.cfg.Interval - p.cfg.Now().Sub(sent)
		timer.Reset(max(wait, 0))
	}
}

func (p *Prober) probe(ctx context.Context, sent time.Time) error {
	id, addr := p.cfg.Leader()
	if id == "" {
		return errors.New("no known leader")
	}
	p.seq++
	req := Request{Node: p.cfg.NodeID, Incarnation: p.incarnation, Seq: p.seq, Leaving: p.leaving.Load()}
	if p.cfg.Holding != nil {
		req.Holding = p.cfg.Holding(req.Seq)
	}
	if p.cfg.Prior != nil {
		if leader, term, at, ok := p.cfg.Prior(); ok && leader == id {
			req.Prior = &Prior{Leader: leader, Term: term, Ago: max(time.Since(at), 0)}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	var (
		resp Response
		err  error
	)
	if id == p.cfg.NodeID {
		resp, err = p.cfg.Local(ctx, req)
	} else {
		if addr == "" {
			return fmt.Errorf("leader %s has no known admin address", id)
		}
		resp, err = p.cfg.Sender.Send(ctx, id, addr, req)
	}
	if err != nil {
		return err
	}
	if resp.Leader != id {
		return fmt.Errorf("probe sent to %s answered by %q", id, resp.Leader)
	}
	p.mu.Lock()
	if sent.After(p.contact) {
		p.contact = sent
	}
	p.mu.Unlock()
	if p.cfg.OnResponse != nil {
		p.cfg.OnResponse(req.Seq, resp)
	}
	return nil
}
