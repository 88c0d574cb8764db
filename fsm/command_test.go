package fsm

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

// Entries written before commands had payload types must still decode:
// the wire format is the same flat object.
func TestDecodeCommandWireFormat(t *testing.T) {
	cas := uint64(7)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		wire string
		want Payload
	}{
		{`{"type":"delete","v":1,"kind":"route","name":"app","cas":7}`, &Delete{Kind: KindRoute, Name: "app", CAS: &cas}},
		{`{"type":"assign","v":1,"assignment":{"vip":"v","holder":"n1","token":0,"since":"0001-01-01T00:00:00Z"},"cas":7,"time":"2026-01-02T03:04:05Z"}`,
			&Assign{Assignment: &Assignment{VIP: "v", Holder: "n1"}, CAS: &cas, Time: at}},
		{`{"type":"node_remove","v":1,"node_id":"n3"}`, &NodeRemove{NodeID: "n3"}},
		{`{"type":"lease_grant","v":1,"ttl":"30s","time":"2026-01-02T03:04:05Z"}`, &LeaseGrant{TTL: Duration(30 * time.Second), Time: at}},
		{`{"type":"lease_expire","v":1,"ids":[3,4],"time":"2026-01-02T03:04:05Z"}`, &LeaseExpire{IDs: []uint64{3, 4}, Time: at}},
		{`{"type":"backend_deregister","v":1,"pool":"app","backend":{"addr":"127.0.0.1:1","lease":4}}`, &BackendDeregister{Pool: "app", Backend: &Backend{Addr: "127.0.0.1:1", Lease: 4}}},
	}
	for _, tt := range tests {
		c, err := DecodeCommand([]byte(tt.wire))
		if err != nil {
			t.Fatalf("decode %s: %v", tt.wire, err)
		}
		if c.Type != tt.want.commandType() || !reflect.DeepEqual(c.Payload, tt.want) {
			t.Fatalf("decode %s = %s %#v, want %#v", tt.wire, c.Type, c.Payload, tt.want)
		}
		b, err := EncodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		again, err := DecodeCommand(b)
		if err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("round trip of %s: %s -> %#v, %v", tt.wire, b, again, err)
		}
	}
}

func TestDecodeCommandRefusesWhatItCannotApply(t *testing.T) {
	for _, wire := range []string{
		`{"type":"node_remove","v":1,"node_id":"n3","drain":true}`, // a field of another command
		`{"type":"node_remove","v":1,"future_field":1}`,
		`{"type":"frobnicate","v":1}`,
		`{"type":"zone","v":1,"zone":{"zone":"a"}} {}`,
	} {
		if _, err := DecodeCommand([]byte(wire)); !errors.Is(err, ErrInvalid) {
			t.Errorf("DecodeCommand(%s) = %v, want ErrInvalid", wire, err)
		}
	}
	if _, err := DecodeCommand([]byte(`[1,2]`)); !errors.Is(err, ErrCorruptEntry) {
		t.Errorf("a JSON array: %v, want ErrCorruptEntry", err)
	}
	if _, err := DecodeCommand([]byte(`{"type":"zone","v":2}`)); !errors.Is(err, ErrUnsupportedVersion) {
		t.Errorf("version 2: %v, want ErrUnsupportedVersion", err)
	}
}

func TestCommandTypeMustMatchPayload(t *testing.T) {
	c := &Command{Type: CmdDelete, V: CommandVersion, Payload: &NodeRemove{NodeID: "n1"}}
	if _, err := EncodeCommand(c); !errors.Is(err, ErrInvalid) {
		t.Fatalf("EncodeCommand of a mismatched command = %v, want ErrInvalid", err)
	}
	if _, err := Next(Empty(), 1, c); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Next of a mismatched command = %v, want ErrInvalid", err)
	}
}

func TestVIPSpecMayHold(t *testing.T) {
	open := VIPSpec{HomeNode: "n1"}
	listed := VIPSpec{HomeNode: "n1", Candidates: []string{"n2"}}
	for _, tt := range []struct {
		s    VIPSpec
		node string
		want bool
	}{
		{open, "n1", true}, {open, "n9", true},
		{listed, "n1", true}, {listed, "n2", true}, {listed, "n3", false},
	} {
		if got := tt.s.MayHold(tt.node); got != tt.want {
			t.Errorf("%+v.MayHold(%s) = %v, want %v", tt.s, tt.node, got, tt.want)
		}
	}
}
