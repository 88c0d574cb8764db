package httpapi

import (
	"context"
	"sync"

	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/fsm"
)

type storeRole int

const (
	roleLeader storeRole = iota
	roleFollower
	roleNoLeader
)

// fakeStore is an in-memory Store: Apply runs fsm.Next on the document, as
// the leader does before proposing. As a follower it answers ErrNotLeader
// and names leaderAddr as the leader's admin address.
type fakeStore struct {
	mu         sync.Mutex
	id         string
	cfg        *fsm.Config
	changed    chan struct{}
	role       storeRole
	leaderID   string
	leaderAddr string
	// changedCalls counts Changed calls, so a test can tell that a
	// blocking read is waiting.
	changedCalls int
	voters       []cluster.PeerInfo
	promoted     []string
	demoted      []string
	suffrageErr  error // what Promote and Demote answer when set
	removed      []string
}

func newFakeStore(id string) *fakeStore {
	return &fakeStore{id: id, cfg: fsm.Empty(), changed: make(chan struct{}), leaderID: id}
}

func (f *fakeStore) setFollower(leaderID, leaderAddr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.role, f.leaderID, f.leaderAddr = roleFollower, leaderID, leaderAddr
}

func (f *fakeStore) setNoLeader() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.role, f.leaderID, f.leaderAddr = roleNoLeader, "", ""
}

func (f *fakeStore) roleErr() error {
	switch f.role {
	case roleFollower:
		return cluster.ErrNotLeader
	case roleNoLeader:
		return cluster.ErrNoLeader
	}
	return nil
}

func (f *fakeStore) Apply(ctx context.Context, cmd *fsm.Command) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.roleErr(); err != nil {
		return 0, err
	}
	idx := f.cfg.Index + 1
	next, err := fsm.Next(f.cfg, idx, cmd)
	if err != nil {
		return 0, err
	}
	f.cfg = next
	close(f.changed)
	f.changed = make(chan struct{})
	return idx, nil
}

func (f *fakeStore) Config() *fsm.Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cfg
}

func (f *fakeStore) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.changedCalls++
	return f.changed
}

func (f *fakeStore) changedCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changedCalls
}

func (f *fakeStore) ConsistentConfig(ctx context.Context) (*fsm.Config, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.roleErr(); err != nil {
		return nil, err
	}
	return f.cfg, nil
}

func (f *fakeStore) Leader() (string, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.leaderID, f.leaderAddr
}

func (f *fakeStore) Status() cluster.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	state := "Leader"
	if f.role != roleLeader {
		state = "Follower"
	}
	return cluster.Status{NodeID: f.id, State: state, Leader: f.leaderID, LeaderAddr: f.leaderAddr,
		CommitIndex: f.cfg.Index, AppliedIndex: f.cfg.Index}
}

func (f *fakeStore) PeerInfo() cluster.PeerInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return cluster.PeerInfo{ID: f.id, RaftAddr: "127.0.0.1:7701", AdminAddr: "127.0.0.1:7700",
		Bootstrapped: true, Leader: f.leaderID, LeaderAddr: f.leaderAddr}
}

func (f *fakeStore) AddMember(ctx context.Context, info cluster.PeerInfo) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.roleErr(); err != nil {
		return err
	}
	f.voters = append(f.voters, info)
	return nil
}

func (f *fakeStore) RemoveServer(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.roleErr(); err != nil {
		return err
	}
	f.removed = append(f.removed, id)
	return nil
}

func (f *fakeStore) Promote(ctx context.Context, ids []string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.roleErr(); err != nil {
		return nil, err
	}
	if f.suffrageErr != nil {
		return nil, f.suffrageErr
	}
	f.promoted = append(f.promoted, ids...)
	return ids, nil
}

func (f *fakeStore) Demote(ctx context.Context, ids []string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.roleErr(); err != nil {
		return nil, err
	}
	if f.suffrageErr != nil {
		return nil, f.suffrageErr
	}
	f.demoted = append(f.demoted, ids...)
	return nil, nil
}

func (f *fakeStore) joined() []cluster.PeerInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]cluster.PeerInfo(nil), f.voters...)
}
