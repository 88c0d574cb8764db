package fsm

import (
	"strings"
	"testing"
)

// portsBase holds nodes n1 and n2 (admin port 7700, Raft port 7701) and
// listener web on 8080.
func portsBase(t testing.TB) *Config {
	t.Helper()
	c := Empty()
	for _, n := range []*Node{
		{ID: "n1", RaftAddr: "10.0.0.1:7701", AdminAddr: "10.0.0.1:7700"},
		{ID: "n2", RaftAddr: "10.0.0.2:7711", AdminAddr: "[fd00::2]:7710"},
	} {
		c = mustNext(t, c, NewCommand(&NodeUpsert{Node: n}))
	}
	return mustNext(t, c, PutCommand(obj(KindListener, "web", `{"port":8080}`), nil))
}

func TestListenerOnNodePortRefused(t *testing.T) {
	base := portsBase(t)
	tests := []struct {
		name  string
		cmd   *Command
		field string
		msg   string
	}{
		{"admin port", PutCommand(obj(KindListener, "x", `{"port":7700}`), nil), "spec.port", "7700 is node n1's admin port"},
		{"raft port", PutCommand(obj(KindListener, "x", `{"port":7701}`), nil), "spec.port", "7701 is node n1's Raft port"},
		{"ipv6 admin port", PutCommand(obj(KindListener, "x", `{"port":7710}`), nil), "spec.port", "7710 is node n2's admin port"},
		{"moving a listener", PutCommand(obj(KindListener, "web", `{"port":7711}`), nil), "spec.port", "7711 is node n2's Raft port"},
		{"apply", ApplyCommand([]Object{obj(KindListener, "a", `{"port":9000}`), obj(KindListener, "b", `{"port":7700}`)}), "documents[1].spec.port", "7700 is node n1's admin port"},
		{"restore", NewCommand(&Restore{Config: &Config{Listeners: map[string]*Listener{
			"x": {Name: "x", Spec: ListenerSpec{Port: 7701}},
		}}}), "listeners/x.spec.port", "7701 is node n1's Raft port"},
		{"node admin port", NewCommand(&NodeUpsert{Node: &Node{ID: "n3", RaftAddr: "10.0.0.3:7701", AdminAddr: "10.0.0.3:8080"}}), "node.admin_addr", `port 8080 is used by listener "web"`},
		{"node raft port", NewCommand(&NodeUpsert{Node: &Node{ID: "n1", RaftAddr: "10.0.0.1:8080", AdminAddr: "10.0.0.1:7700"}}), "node.raft_addr", `port 8080 is used by listener "web"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Next(base, base.Index+1, tt.cmd)
			wantFieldError(t, err, tt.field, ErrInvalid)
			if !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("message %q does not contain %q", err, tt.msg)
			}
		})
	}
}

func TestListenerOnOtherPortsAccepted(t *testing.T) {
	base := portsBase(t)
	for _, cmd := range []*Command{
		PutCommand(obj(KindListener, "x", `{"port":7702}`), nil),
		PutCommand(obj(KindListener, "web", `{"port":8081}`), nil),
		// An unchanged node record and one that moves to free ports.
		NewCommand(&NodeUpsert{Node: &Node{ID: "n1", RaftAddr: "10.0.0.1:7701", AdminAddr: "10.0.0.1:7700"}}),
		NewCommand(&NodeUpsert{Node: &Node{ID: "n3", RaftAddr: "10.0.0.3:7801", AdminAddr: "10.0.0.3:7800"}}),
		// Without an admin address only the Raft port counts.
		NewCommand(&NodeUpsert{Node: &Node{ID: "n4", RaftAddr: "10.0.0.4:7901"}}),
	} {
		if _, err := Next(base, base.Index+1, cmd); err != nil {
			t.Errorf("%s refused: %v", cmd.Type, err)
		}
	}
}
