package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// logLines decodes the JSON lines of buf.
func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// What raft logs as WARN or ERROR during a normal bootstrap, restart or
// election reaches the operator at debug or info; what stays at WARN or
// ERROR carries an action.
func TestRaftLogRelevels(t *testing.T) {
	peer := raft.Server{ID: "n2", Address: "127.0.0.2:7701"}
	cases := []struct {
		level     hclog.Level
		msg       string
		args      []any
		want      string // slog level, "" when not logged at the adapter's level (info)
		hasAction bool
	}{
		{hclog.Warn, "no known peers, aborting election", nil, "", false},
		{hclog.Warn, "failed to get previous log", []any{"previous-index", 1}, "", false},
		{hclog.Warn, "appendEntries rejected, sending older logs", []any{"peer", peer}, "", false},
		{hclog.Warn, "rejecting pre-vote request since we have a leader", nil, "", false},
		{hclog.Error, "failed to heartbeat to", []any{"peer", peer.Address}, "", false},
		{hclog.Error, "failed to appendEntries to", []any{"peer", peer}, "", false},
		{hclog.Error, "failed to make requestVote RPC", []any{"target", peer}, "", false},
		{hclog.Warn, "heartbeat timeout reached, starting election", nil, "INFO", false},
		{hclog.Info, "entering follower state", nil, "INFO", false},
		{hclog.Warn, "failed to contact quorum of nodes, stepping down", nil, "INFO", false},
		{hclog.Error, "failed to decode incoming command", []any{"error", "transport shutdown"}, "", false},
		{hclog.Error, "failed to decode incoming command", []any{"error", errors.New("read tcp 127.0.0.3:7701->127.0.0.1:41272: read: connection reset by peer")}, "", false},
		{hclog.Error, "failed to decode incoming command", []any{"error", "msgpack decode error: unknown type"}, "ERROR", true},
		{hclog.Error, "failed to take snapshot", nil, "ERROR", true},
		{hclog.Error, "something raft never said before", nil, "ERROR", true},
	}
	for _, tc := range cases {
		t.Run(tc.msg, func(t *testing.T) {
			var buf bytes.Buffer
			a := newHCLogAdapter(slog.New(slog.NewJSONHandler(&buf, nil)), hclog.Info)
			a.Log(tc.level, tc.msg, tc.args...)
			lines := logLines(t, &buf)
			if tc.want == "" {
				if len(lines) != 0 {
					t.Fatalf("logged %v, want nothing at info", lines)
				}
				return
			}
			if len(lines) != 1 || lines[0]["level"] != tc.want {
				t.Fatalf("logged %v, want one line at %s", lines, tc.want)
			}
			if _, ok := lines[0]["action"]; ok != tc.hasAction {
				t.Fatalf("action present = %v, want %v: %v", ok, tc.hasAction, lines[0])
			}
		})
	}
}

// A peer that fails for longer than a restart takes is worth one warning
// with an action, repeated only after peerDownRepeat; a peer back within
// a restart is never mentioned above debug.
func TestRaftLogPeerUnreachable(t *testing.T) {
	var buf bytes.Buffer
	a := newHCLogAdapter(slog.New(slog.NewJSONHandler(&buf, nil)), hclog.Warn)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a.peers.now = func() time.Time { return now }
	peer := raft.Server{ID: "n3", Address: "127.0.0.3:7701"}
	fail := func(d time.Duration) {
		end := now.Add(d)
		for ; now.Before(end); now = now.Add(250 * time.Millisecond) {
			a.Log(hclog.Error, "failed to heartbeat to", "peer", peer.Address)
			a.Log(hclog.Error, "failed to appendEntries to", "peer", peer)
		}
	}
	fail(10 * time.Second) // a restart
	if s := buf.String(); s != "" {
		t.Fatalf("a 10 s outage logged:\n%s", s)
	}
	now = now.Add(time.Minute) // back, then down again for good
	fail(29 * time.Second)
	if s := buf.String(); s != "" {
		t.Fatalf("a new 29 s outage logged:\n%s", s)
	}
	fail(2 * time.Minute)
	lines := logLines(t, &buf)
	if len(lines) != 1 || lines[0]["msg"] != "raft peer unreachable" || lines[0]["level"] != "WARN" ||
		lines[0]["peer"] != "127.0.0.3:7701" || lines[0]["action"] == nil {
		t.Fatalf("after 2.5 min down: %v, want one WARN naming the peer and an action", lines)
	}
	fail(peerDownRepeat)
	if n := len(logLines(t, &buf)); n != 2 {
		t.Fatalf("after another %v down: %d warnings, want 2", peerDownRepeat, n)
	}
}

// With the logger at debug, what raft said at WARN and rafter re-levels
// shows at debug, even when raft's own filter is at info.
func TestRaftLogDemotedVisibleAtDebug(t *testing.T) {
	var buf bytes.Buffer
	a := newHCLogAdapter(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), hclog.Info)
	a.Log(hclog.Warn, "failed to get previous log", "previous-index", 1)
	a.Log(hclog.Debug, "raft's own debug message")
	lines := logLines(t, &buf)
	if len(lines) != 1 || lines[0]["level"] != "DEBUG" || lines[0]["msg"] != "failed to get previous log" {
		t.Fatalf("logged %v, want the re-levelled line at DEBUG and nothing below raft's level", lines)
	}
}

// One leader step-down is an election, logged at info; repeated ones
// within stepDownWindow get one warning with an action.
func TestRaftLogStepDownsRepeat(t *testing.T) {
	var buf bytes.Buffer
	a := newHCLogAdapter(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})), hclog.Warn)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a.downs.now = func() time.Time { return now }
	step := func(after time.Duration) {
		now = now.Add(after)
		a.Log(hclog.Warn, stepDown)
	}
	step(0)
	step(stepDownWindow) // the first one is out of the window by now
	step(time.Minute)
	if s := buf.String(); s != "" {
		t.Fatalf("two step-downs within the window logged:\n%s", s)
	}
	step(time.Minute)
	lines := logLines(t, &buf)
	if len(lines) != 1 || lines[0]["msg"] != "raft leadership unstable" || lines[0]["action"] == nil {
		t.Fatalf("third step-down: %v", lines)
	}
	step(time.Second)
	if n := len(logLines(t, &buf)); n != 1 {
		t.Fatalf("a fourth step-down soon after warned again (%d lines)", n)
	}
}
