package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

// Blocking read limits.
const (
	maxWait     = 5 * time.Minute
	defaultWait = maxWait
)

// readOpts are the query parameters every state read accepts.
type readOpts struct {
	consistent bool
	blocking   bool
	index      uint64 // answer once the state is past this index
	wait       time.Duration
}

func invalidParam(field, format string, args ...any) error {
	return &fsm.FieldError{Field: field, Message: fmt.Sprintf(format, args...), Err: fsm.ErrInvalid}
}

// flag reads a presence flag: "?consistent", "?consistent=true" and
// "?consistent=1" are on, "=false"/"=0" off.
func flag(r *http.Request, name string) (bool, error) {
	q := r.URL.Query()
	if !q.Has(name) {
		return false, nil
	}
	v := q.Get(name)
	if v == "" {
		return true, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, invalidParam(name, "want true or false, got %q", v)
	}
	return b, nil
}

func parseReadOpts(r *http.Request) (readOpts, error) {
	var o readOpts
	var err error
	if o.consistent, err = flag(r, "consistent"); err != nil {
		return o, err
	}
	q := r.URL.Query()
	if q.Has("index") {
		o.blocking = true
		o.index, err = strconv.ParseUint(q.Get("index"), 10, 64)
		if err != nil {
			return o, invalidParam("index", "want a Raft index (unsigned integer), got %q", q.Get("index"))
		}
		o.wait = defaultWait
	}
	if q.Has("wait") {
		if !o.blocking {
			return o, invalidParam("wait", "wait needs index")
		}
		o.wait, err = parseWait(q.Get("wait"))
		if err != nil {
			return o, err
		}
	}
	return o, nil
}

// parseWait takes a Go duration ("30s") or whole seconds ("30"), capped at maxWait.
func parseWait(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		n, nerr := strconv.ParseUint(v, 10, 32)
		if nerr != nil {
			return 0, invalidParam("wait", "want a duration such as 30s, got %q", v)
		}
		d = time.Duration(n) * time.Second
	}
	if d < 0 {
		return 0, invalidParam("wait", "must not be negative, got %q", v)
	}
	return min(d, maxWait), nil
}

// waitPast blocks until the local state is past index, wait elapses or
// the client goes away (then it returns the context's error).
func (s *server) waitPast(ctx context.Context, index uint64, wait time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if _, err := fsm.WaitIndex(wctx, s.store, index+1); err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	// Past the index, or the wait ran out: answer with what there is.
	return nil
}

// load returns the state a read answers from, honouring ?index/?wait and
// ?consistent. done is true when the request was answered by forwarding
// it to the leader.
func (s *server) load(w http.ResponseWriter, r *http.Request) (cfg *fsm.Config, done bool, err error) {
	o, err := parseReadOpts(r)
	if err != nil {
		return nil, false, err
	}
	if o.blocking {
		t := s.cfg.Timeouts
		extendDeadlines(w, o.wait+t.Read, o.wait+t.Write)
		if err := s.waitPast(r.Context(), o.index, o.wait); err != nil {
			return nil, false, err
		}
	}
	if !o.consistent {
		return s.store.Config(), false, nil
	}
	cfg, err = s.store.ConsistentConfig(r.Context())
	if err != nil {
		return nil, true, s.forwardOrFail(w, r, nil, err)
	}
	return cfg, false, nil
}

// readBody reads the whole request body within MaxBodyBytes.
func (s *server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	return readBodyLimit(w, r, s.cfg.MaxBodyBytes)
}

// jsonProblem turns a JSON decoding error into a 400 naming what is wrong
// and, when known, where.
func jsonProblem(field string, data []byte, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case len(bytes.TrimSpace(data)) == 0:
		return invalidParam(field, "request body is empty; want JSON")
	case errors.As(err, &syn):
		return invalidParam(field, "invalid JSON at byte %d: %v", syn.Offset, err)
	case errors.As(err, &typ):
		f := field
		if typ.Field != "" {
			f = field + "." + typ.Field
		}
		return invalidParam(f, "invalid JSON: %s has type %s, want %s", typ.Field, typ.Value, typ.Type)
	default:
		return invalidParam(field, "invalid JSON: %v", err)
	}
}

// casParam parses ?cas=INDEX (nil when absent).
func casParam(r *http.Request) (*uint64, error) {
	q := r.URL.Query()
	if !q.Has("cas") {
		return nil, nil
	}
	v, err := strconv.ParseUint(q.Get("cas"), 10, 64)
	if err != nil {
		return nil, invalidParam("cas", "want the object's modify_index (0 = must not exist), got %q", q.Get("cas"))
	}
	return &v, nil
}
