package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"time"
)

// CommandType names what a command does to the document.
type CommandType string

// The commands of the replicated state machine; each has its own payload
// type, named after it.
const (
	CmdPut        CommandType = "put"         // Put
	CmdDelete     CommandType = "delete"      // Delete
	CmdApply      CommandType = "apply"       // ApplyManifest
	CmdRestore    CommandType = "restore"     // Restore
	CmdAssign     CommandType = "assign"      // Assign
	CmdSettle     CommandType = "settle"      // Settle
	CmdNodeUpsert CommandType = "node_upsert" // NodeUpsert
	CmdNodeRemove CommandType = "node_remove" // NodeRemove
	CmdZone       CommandType = "zone"        // ZoneChange

	CmdLeaseGrant        CommandType = "lease_grant"        // LeaseGrant
	CmdLeaseRevoke       CommandType = "lease_revoke"       // LeaseRevoke
	CmdLeaseExpire       CommandType = "lease_expire"       // LeaseExpire
	CmdBackendRegister   CommandType = "backend_register"   // BackendRegister
	CmdBackendDeregister CommandType = "backend_deregister" // BackendDeregister

	CmdRolloutDecide  CommandType = "rollout_decide"  // RolloutDecide
	CmdRolloutControl CommandType = "rollout_control" // RolloutControl
)

// CommandVersion is the envelope version this package writes and accepts.
const CommandVersion = 1

// Command is one Raft log entry: a type tag, the envelope version and the
// payload of that type. On the wire it is one flat JSON object,
// `{"type":..., "v":1, <the payload's fields>}`, and it carries everything
// Apply needs, including the leader's clock where time matters, so that
// applying it is deterministic on every node.
type Command struct {
	Type    CommandType
	V       int
	Payload Payload
}

// Payload is the typed body of a command.
type Payload interface {
	commandType() CommandType
}

// NewCommand wraps p in an envelope of the current version.
func NewCommand(p Payload) *Command {
	return &Command{Type: p.commandType(), V: CommandVersion, Payload: p}
}

// Put creates or replaces one object. CAS, when set, is the modify_index
// the object must have now (0: it must not exist).
type Put struct {
	Objects []Object `json:"objects"` // exactly one
	CAS     *uint64  `json:"cas,omitempty"`
}

// Delete deletes one object; CAS as for Put.
type Delete struct {
	Kind Kind    `json:"kind"`
	Name string  `json:"name"`
	CAS  *uint64 `json:"cas,omitempty"`
}

// ApplyManifest upserts a whole manifest, all or nothing (no prune).
type ApplyManifest struct {
	Objects []Object `json:"objects"`
}

// Restore replaces listeners, routes, pools, VIPs, assignments, zones and
// leases with those of Config; the cluster's members stay.
type Restore struct {
	Config *Config `json:"config"`
}

// Assign makes Assignment.Holder hold Assignment.VIP; the assignment's
// token becomes the entry's index. CAS, when set, is the token the current
// assignment must have (0: none). Time is the leader's clock.
type Assign struct {
	Assignment *Assignment `json:"assignment"`
	CAS        *uint64     `json:"cas,omitempty"`
	Time       time.Time   `json:"time,omitzero"`
}

// Settle marks the hand-over of the assignment with Assignment.Token of
// Assignment.VIP complete.
type Settle struct {
	Assignment *Assignment `json:"assignment"`
}

// NodeUpsert records a cluster member.
type NodeUpsert struct {
	Node *Node `json:"node"`
}

// NodeRemove forgets a cluster member.
type NodeRemove struct {
	NodeID string `json:"node_id"`
}

// ZoneChange evacuates or restores a zone.
type ZoneChange struct {
	Zone *ZoneState `json:"zone"`
}

// LeaseGrant grants a lease whose ID is the entry's index.
type LeaseGrant struct {
	TTL  Duration  `json:"ttl"`
	Time time.Time `json:"time,omitzero"`
}

// LeaseRevoke ends lease ID; with Drain its backends drain first.
type LeaseRevoke struct {
	ID    uint64    `json:"id"`
	Drain bool      `json:"drain,omitempty"`
	Time  time.Time `json:"time,omitzero"`
}

// LeaseExpire ends the leases IDs, proposed by the leader.
type LeaseExpire struct {
	IDs  []uint64  `json:"ids"`
	Time time.Time `json:"time,omitzero"`
}

// BackendRegister adds Backend (with its Lease) to Pool.
type BackendRegister struct {
	Pool    string   `json:"pool"`
	Backend *Backend `json:"backend"`
}

// BackendDeregister removes the lease-attached backend Backend.Addr from
// Pool; Backend.Lease, when set, must be the lease that holds it.
type BackendDeregister struct {
	Pool    string   `json:"pool"`
	Backend *Backend `json:"backend"`
}

func (*Put) commandType() CommandType               { return CmdPut }
func (*Delete) commandType() CommandType            { return CmdDelete }
func (*ApplyManifest) commandType() CommandType     { return CmdApply }
func (*Restore) commandType() CommandType           { return CmdRestore }
func (*Assign) commandType() CommandType            { return CmdAssign }
func (*Settle) commandType() CommandType            { return CmdSettle }
func (*NodeUpsert) commandType() CommandType        { return CmdNodeUpsert }
func (*NodeRemove) commandType() CommandType        { return CmdNodeRemove }
func (*ZoneChange) commandType() CommandType        { return CmdZone }
func (*LeaseGrant) commandType() CommandType        { return CmdLeaseGrant }
func (*LeaseRevoke) commandType() CommandType       { return CmdLeaseRevoke }
func (*LeaseExpire) commandType() CommandType       { return CmdLeaseExpire }
func (*BackendRegister) commandType() CommandType   { return CmdBackendRegister }
func (*BackendDeregister) commandType() CommandType { return CmdBackendDeregister }

// newPayload returns an empty payload of type t, or nil for an unknown type.
func newPayload(t CommandType) Payload {
	switch t {
	case CmdPut:
		return new(Put)
	case CmdDelete:
		return new(Delete)
	case CmdApply:
		return new(ApplyManifest)
	case CmdRestore:
		return new(Restore)
	case CmdAssign:
		return new(Assign)
	case CmdSettle:
		return new(Settle)
	case CmdNodeUpsert:
		return new(NodeUpsert)
	case CmdNodeRemove:
		return new(NodeRemove)
	case CmdZone:
		return new(ZoneChange)
	case CmdLeaseGrant:
		return new(LeaseGrant)
	case CmdLeaseRevoke:
		return new(LeaseRevoke)
	case CmdLeaseExpire:
		return new(LeaseExpire)
	case CmdBackendRegister:
		return new(BackendRegister)
	case CmdBackendDeregister:
		return new(BackendDeregister)
	case CmdRolloutDecide:
		return new(RolloutDecide)
	case CmdRolloutControl:
		return new(RolloutControl)
	case CmdACMEOrder:
		return new(ACMEOrder)
	case CmdACMEChallenges:
		return new(ACMEChallenges)
	case CmdACMEResult:
		return new(ACMEResult)
	case CmdACMEAccount:
		return new(ACMEAccountSet)
	case CmdCertificateIssue:
		return new(CertificateIssue)
	case CmdTicketKeysRotate:
		return new(TicketKeysRotate)
	}
	return nil
}

// PutCommand creates or replaces one object; cas, when non-nil, is the
// modify_index the object must have now (0: it must not exist).
func PutCommand(obj Object, cas *uint64) *Command {
	return NewCommand(&Put{Objects: []Object{obj}, CAS: cas})
}

// DeleteCommand deletes one object; cas as for PutCommand.
func DeleteCommand(kind Kind, name string, cas *uint64) *Command {
	return NewCommand(&Delete{Kind: kind, Name: name, CAS: cas})
}

// ApplyCommand upserts a whole manifest as one entry, all or nothing.
func ApplyCommand(objs []Object) *Command {
	return NewCommand(&ApplyManifest{Objects: objs})
}

// MarshalJSON writes the flat envelope: type, v, then the payload's fields.
func (c *Command) MarshalJSON() ([]byte, error) {
	head, err := json.Marshal(struct {
		Type CommandType `json:"type"`
		V    int         `json:"v"`
	}{c.Type, c.V})
	if err != nil {
		return nil, err
	}
	if c.Payload == nil {
		return head, nil
	}
	body, err := json.Marshal(c.Payload)
	if err != nil {
		return nil, err
	}
	if len(body) <= 2 { // "{}"
		return head, nil
	}
	out := make([]byte, 0, len(head)+len(body))
	out = append(out, head[:len(head)-1]...)
	out = append(out, ',')
	return append(out, body[1:]...), nil
}

// EncodeCommand returns the log entry bytes of c: its JSON envelope in a
// frame carrying a CRC-32C of it (see frame.go).
func EncodeCommand(c *Command) ([]byte, error) {
	if c == nil {
		return nil, invalidf("", "nil command")
	}
	if c.Payload == nil || c.Payload.commandType() != c.Type {
		return nil, invalidf("type", "command %q carries a payload of another type (%T)", c.Type, c.Payload)
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode command: %w", err)
	}
	return frame(b), nil
}

// DecodeCommand parses a log entry. A checksum mismatch or unknown framing
// gives ErrCorruptEntry, an unknown envelope version
// ErrUnsupportedVersion, anything else malformed ErrInvalid; so does a
// field that the command's payload does not have, so that a node never
// silently ignores part of a newer command. Unframed JSON entries (from
// before entries carried a checksum) are accepted.
func DecodeCommand(entry []byte) (*Command, error) {
	b, _, err := unframe(entry)
	if err != nil {
		return nil, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return nil, invalidf("", "malformed command: %v", err)
	}
	var head struct {
		Type CommandType `json:"type"`
		V    int         `json:"v"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, invalidf("", "malformed command: %v", err)
	}
	if head.V != CommandVersion {
		return nil, &FieldError{Field: "v", Message: fmt.Sprintf("command version %d not supported (want %d)", head.V, CommandVersion), Err: ErrUnsupportedVersion}
	}
	p := newPayload(head.Type)
	if p == nil {
		return nil, invalidf("type", "unknown command type %q", head.Type)
	}
	allowed := jsonFields(reflect.TypeOf(p).Elem())
	for k := range fields {
		if _, ok := allowed[k]; !ok && k != "type" && k != "v" {
			return nil, invalidf("", "malformed command: %s has no field %q", head.Type, k)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(p); err != nil {
		return nil, invalidf("", "malformed command: %v", err)
	}
	if dec.More() {
		return nil, invalidf("", "malformed command: %v", errTrailingData)
	}
	return &Command{Type: head.Type, V: head.V, Payload: p}, nil
}
