package httpapi

import (
	"net/http"
	"time"

	"github.com/rafterlb/rafter/internal/conf"
)

// Timeouts bound how long one client may hold an admin API connection.
// Without them a client dripping a request body a byte at a time keeps a
// goroutine and a connection for as long as it likes.
type Timeouts struct {
	// ReadHeader bounds reading the request line and headers.
	ReadHeader time.Duration
	// Read bounds reading the whole request, headers and body.
	Read time.Duration
	// Write bounds handling the request and writing the answer. A blocking
	// read (?index=N&wait=D) gets D on top of it.
	Write time.Duration
	// Idle bounds the wait for the next request on a kept-alive connection.
	Idle time.Duration
	// Transfer replaces Read for a POST /v1/restore body and Write for a
	// GET /v1/snapshot answer: snapshots may be far larger than a manifest.
	Transfer time.Duration
}

// DefaultTimeouts returns the admin API's timeouts: generous for an
// operator on a slow link, short enough that a stalled client is cut.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		ReadHeader: 10 * time.Second,
		Read:       60 * time.Second,
		Write:      60 * time.Second,
		Idle:       120 * time.Second,
		Transfer:   5 * time.Minute,
	}
}

// withDefaults fills zero fields from DefaultTimeouts.
func (t Timeouts) withDefaults() Timeouts {
	d := DefaultTimeouts()
	conf.Positive(&t.ReadHeader, d.ReadHeader)
	conf.Positive(&t.Read, d.Read)
	conf.Positive(&t.Write, d.Write)
	conf.Positive(&t.Idle, d.Idle)
	conf.Positive(&t.Transfer, d.Transfer)
	return t
}

// NewServer returns the http.Server for handler h (from New) with the
// timeouts of cfg set; the caller sets TLS, logging and contexts and
// serves it.
func NewServer(h http.Handler, cfg Config) *http.Server {
	t := cfg.Timeouts.withDefaults()
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
	}
	if s, ok := h.(*server); ok {
		srv.RegisterOnShutdown(s.closeStreams)
	}
	return srv
}

// extendDeadlines gives one request more time than the server's defaults:
// a blocking read waits up to its wait before it answers, a snapshot
// moves more bytes. The server's ReadTimeout would otherwise also end the
// request: net/http cancels a request's context when its connection's
// read deadline passes. Handlers not behind an http.Server (tests with a
// recorder) cannot be extended and need not be.
func extendDeadlines(w http.ResponseWriter, read, write time.Duration) {
	rc := http.NewResponseController(w)
	now := time.Now()
	if read > 0 {
		_ = rc.SetReadDeadline(now.Add(read))
	}
	if write > 0 {
		_ = rc.SetWriteDeadline(now.Add(write))
	}
}
