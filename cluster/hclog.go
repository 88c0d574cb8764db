package cluster

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter sends hashicorp/raft's hclog output to the node's slog
// logger, so an operator sees one log stream in one format. Raft is chatty at
// info level (every election, every snapshot), hence the separate level.
type hclogAdapter struct {
	l     *slog.Logger
	name  string
	args  []any
	level *atomic.Int32 // shared by every derived logger, as hclog's SetLevel is
	peers *peerWatch    // shared as well
	downs *stepDowns    // shared as well
}

func newHCLogAdapter(l *slog.Logger, level hclog.Level) *hclogAdapter {
	lv := new(atomic.Int32)
	lv.Store(int32(level))
	return &hclogAdapter{l: l, name: "raft", level: lv, peers: newPeerWatch(time.Now), downs: &stepDowns{now: time.Now}}
}

// parseRaftLogLevel maps Config.RaftLogLevel to an hclog level; "" is warn.
func parseRaftLogLevel(s string) (hclog.Level, error) {
	if s == "" {
		return hclog.Warn, nil
	}
	lv := hclog.LevelFromString(s)
	if lv == hclog.NoLevel {
		return hclog.NoLevel, fmt.Errorf("unknown level %q (want trace, debug, info, warn, error or off)", s)
	}
	return lv, nil
}

func toSlogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Info, hclog.NoLevel, hclog.DefaultLevel:
		return slog.LevelInfo
	case hclog.Warn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (a *hclogAdapter) enabled(l hclog.Level) bool { return a.shown(l, l) }

// shown reports whether a message raft logs at level raftLevel and rafter
// shows at level level gets through: the raft level filters what raft
// says, the logger's level what the operator sees.
func (a *hclogAdapter) shown(raftLevel, level hclog.Level) bool {
	min := hclog.Level(a.level.Load())
	if min == hclog.Off {
		return false
	}
	return raftLevel >= min && a.l.Enabled(context.Background(), toSlogLevel(level))
}

// Log re-levels raft's message by raftRules, adds the advice for those
// still at WARN or ERROR, and turns a peer failing for longer than a
// restart into one warning of rafter's own.
func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	rule := raftRuleFor(level, msg, args)
	if rule.peerDown {
		if peer := raftPeer(args); peer != "" {
			if down := a.peers.failed(peer); down > 0 && a.shown(level, hclog.Warn) {
				a.l.Log(context.Background(), slog.LevelWarn, "raft peer unreachable",
					"component", a.name, "peer", peer, "for", down.Round(time.Second).String(),
					"action", "check that rafter runs on that node and that its raft port is reachable from here (firewall, security group); `rafter status` shows every member; remove a node gone for good with `rafter node remove`")
			}
		}
	}
	if msg == stepDown {
		if n := a.downs.record(); n > 0 && a.shown(level, hclog.Warn) {
			a.l.Log(context.Background(), slog.LevelWarn, "raft leadership unstable",
				"component", a.name, "step_downs", n, "within", stepDownWindow.String(),
				"action", "this node lost its majority repeatedly as leader: check the network between the nodes and that none is starved of CPU or stalled on disk (`rafter status`, fsync latency)")
		}
	}
	if !a.shown(level, rule.level) {
		return
	}
	all := make([]any, 0, len(a.args)+len(args)+4)
	all = append(all, "component", a.name)
	all = append(all, a.args...)
	all = append(all, args...)
	if rule.action != "" {
		all = append(all, "action", rule.action)
	}
	a.l.Log(context.Background(), toSlogLevel(rule.level), msg, all...)
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *hclogAdapter) IsTrace() bool { return a.enabled(hclog.Trace) }
func (a *hclogAdapter) IsDebug() bool { return a.enabled(hclog.Debug) }
func (a *hclogAdapter) IsInfo() bool  { return a.enabled(hclog.Info) }
func (a *hclogAdapter) IsWarn() bool  { return a.enabled(hclog.Warn) }
func (a *hclogAdapter) IsError() bool { return a.enabled(hclog.Error) }

func (a *hclogAdapter) ImpliedArgs() []any { return a.args }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	c := *a
	c.args = append(append([]any(nil), a.args...), args...)
	return &c
}

func (a *hclogAdapter) Name() string { return a.name }

func (a *hclogAdapter) Named(name string) hclog.Logger {
	c := *a
	if c.name != "" {
		c.name += "." + name
	} else {
		c.name = name
	}
	return &c
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *a
	c.name = name
	return &c
}

func (a *hclogAdapter) SetLevel(level hclog.Level) { a.level.Store(int32(level)) }
func (a *hclogAdapter) GetLevel() hclog.Level      { return hclog.Level(a.level.Load()) }

func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

func (a *hclogAdapter) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	level := hclog.Info
	if opts != nil && opts.ForceLevel != hclog.NoLevel {
		level = opts.ForceLevel
	}
	return &stdWriter{a: a, level: level}
}

// stdWriter is the io.Writer behind StandardLogger; raft's NetworkTransport
// uses one when no hclog logger is given.
type stdWriter struct {
	a     *hclogAdapter
	level hclog.Level
}

func (w *stdWriter) Write(p []byte) (int, error) {
	w.a.Log(w.level, strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
