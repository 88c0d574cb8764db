package fsm

import "time"

// TicketKeys are the TLS session-ticket keys every node of the cluster
// uses, so that a client resumes its session on whichever node it reaches.
// The leader generates a key (outside Apply), seals it with the secrets
// key and proposes it in a TicketKeysRotate command; Keys holds the newest
// first and a few previous ones, which nodes still accept for resumption.
type TicketKeys struct {
	// Keys are sealed 32-byte keys (package secrets, TicketKeyAAD),
	// newest first, at most MaxTicketKeys.
	Keys []string `json:"keys"`
	// RotatedAt is the leader's clock when the newest key was committed.
	RotatedAt   time.Time `json:"rotated_at,omitzero"`
	ModifyIndex uint64    `json:"modify_index"`
}

// MaxTicketKeys is how many ticket keys the cluster keeps: the newest,
// which issues tickets, and the previous ones, which still resume.
const MaxTicketKeys = 3

// TicketKeysRotate makes Key the newest session-ticket key. Prev is the
// modify_index of the ticket keys the leader rotated from (0: none yet),
// so two rotations decided on the same state commit only once.
type TicketKeysRotate struct {
	Key  string    `json:"key"`
	Prev uint64    `json:"prev"`
	Time time.Time `json:"time,omitzero"`
}

// CmdTicketKeysRotate is the TicketKeysRotate command.
const CmdTicketKeysRotate CommandType = "ticket_keys_rotate"

func (*TicketKeysRotate) commandType() CommandType { return CmdTicketKeysRotate }

func nextTicketKeysRotate(c *Config, index uint64, cmd *TicketKeysRotate) (*Config, error) {
	if cmd.Key == "" {
		return nil, invalidf("key", "required")
	}
	if err := sealedProblem("key", cmd.Key); err != nil {
		return nil, err
	}
	var cur uint64
	var keys []string
	if c.TicketKeys != nil {
		cur, keys = c.TicketKeys.ModifyIndex, c.TicketKeys.Keys
	}
	if cmd.Prev != cur {
		return nil, conflictf("prev", "ticket keys have modify_index %d, not %d", cur, cmd.Prev)
	}
	next := make([]string, 0, MaxTicketKeys)
	next = append(next, cmd.Key)
	for _, k := range keys {
		if len(next) == MaxTicketKeys {
			break
		}
		next = append(next, k)
	}
	b := newBuilder(c, index)
	b.c.TicketKeys = &TicketKeys{Keys: next, RotatedAt: cmd.Time.UTC(), ModifyIndex: index}
	return b.c, nil
}
