package testutil

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/rafterlb/rafter/internal/adminhttp"
)

// Admin speaks rafter's admin API (/v1) as tests and benchmarks do: one
// request at a time, with a bearer token, whole answers in memory. It
// mirrors the wire format instead of importing rafter's own types, so that
// a test reads what a client outside the module would read.
type Admin struct {
	Client *http.Client // nil means http.DefaultClient
	Token  string       // sent as a bearer token when not empty
}

// Response is one admin API answer.
type Response struct {
	Status int
	Index  uint64 // X-Rafter-Index
	Leader string // X-Rafter-Leader
	Body   []byte
}

// maxBody bounds how much of an answer Do reads.
const maxBody = 64 << 20

// Do sends one request to the node whose admin API is at baseURL
// ("http://host:port") and reads the whole answer.
func (a Admin) Do(ctx context.Context, baseURL, method, path string, body []byte) (*Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, baseURL+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, b, err := adminhttp.Do(a.Client, req, a.Token, maxBody)
	if err != nil {
		return nil, err
	}
	idx, _ := strconv.ParseUint(resp.Header.Get("X-Rafter-Index"), 10, 64)
	return &Response{Status: resp.StatusCode, Index: idx, Leader: resp.Header.Get("X-Rafter-Leader"), Body: b}, nil
}

// Status is the part of GET /v1/status that tests read.
type Status struct {
	NodeID      string   `json:"node_id"`
	Zone        string   `json:"zone"`
	State       string   `json:"state"`       // Leader, Follower, Candidate, Shutdown
	Leader      string   `json:"leader"`      // the leader's node id, "" when none
	LeaderAddr  string   `json:"leader_addr"` // the leader's admin address
	Term        uint64   `json:"term"`
	CommitIndex uint64   `json:"commit_index"`
	Members     []Member `json:"members"`
}

// Member is one Raft server in a Status.
type Member struct {
	ID        string `json:"id"`
	Zone      string `json:"zone"`
	AdminAddr string `json:"admin_addr"`
	Suffrage  string `json:"suffrage"`
	Leader    bool   `json:"leader"`
	Healthy   bool   `json:"healthy"`
}

// Status reads the node at baseURL's view of itself and the cluster.
func (a Admin) Status(ctx context.Context, baseURL string) (Status, error) {
	r, err := a.Do(ctx, baseURL, http.MethodGet, "/v1/status", nil)
	if err != nil {
		return Status{}, err
	}
	if r.Status != http.StatusOK {
		return Status{}, fmt.Errorf("GET /v1/status at %s: %d %s", baseURL, r.Status, bytes.TrimSpace(r.Body))
	}
	var st Status
	if err := json.Unmarshal(r.Body, &st); err != nil {
		return Status{}, fmt.Errorf("decoding status at %s: %w", baseURL, err)
	}
	return st, nil
}

// statusTimeout bounds one status request while Leader polls, so that a
// node that does not answer cannot use up the whole wait.
const statusTimeout = time.Second

// Leader polls the nodes at urls until one of them reports itself leader
// and returns its URL, or fails with the last thing it saw after within.
func (a Admin) Leader(within time.Duration, urls ...string) (string, error) {
	if len(urls) == 0 {
		return "", errors.New("Leader: no node to ask")
	}
	var leader string
	err := Poll(within, func() error {
		var errs []error
		for _, u := range urls {
			ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
			st, err := a.Status(ctx, u)
			cancel()
			switch {
			case err != nil:
				errs = append(errs, err)
			case st.State == "Leader":
				leader = u
				return nil
			default:
				errs = append(errs, fmt.Errorf("%s is %s", u, st.State))
			}
		}
		return fmt.Errorf("no node reports itself leader: %w", errors.Join(errs...))
	})
	if err != nil {
		return "", fmt.Errorf("no leader within %v: %w", within, err)
	}
	return leader, nil
}
