package fsm

import (
	"errors"
	"testing"
)

// Zone names are one rule everywhere (backends, nodes, the evacuate API),
// so that every zone a backend or node is in can be evacuated.
func TestZoneNames(t *testing.T) {
	for _, tt := range []struct {
		zone string
		ok   bool
	}{
		{"us-east-1a", true}, {"use1-az1", true}, {"a", true}, {"Zone_B.2", true},
		{"", false}, {"a:b", false}, {"-a", false}, {"a-", false}, {"a/b", false}, {"a b", false},
		{"x123456789012345678901234567890123456789012345678901234567890123", false},
	} {
		err := CheckZoneName(tt.zone)
		if (err == nil) != tt.ok {
			t.Errorf("CheckZoneName(%q) = %v, want ok=%v", tt.zone, err, tt.ok)
		}
		var fe *FieldError
		if err != nil && (!errors.As(err, &fe) || fe.Field != "zone" || !errors.Is(err, ErrInvalid)) {
			t.Errorf("CheckZoneName(%q) = %#v, want a field error on zone", tt.zone, err)
		}
		pool := Object{Kind: KindPool, Name: "p", Spec: []byte(`{"backends":[{"addr":"10.0.0.1:80","zone":"` + tt.zone + `"}]}`)}
		if tt.zone == "" {
			continue // an empty zone on a backend means "no zone"
		}
		_, err = Next(Empty(), 1, PutCommand(pool, nil))
		if (err == nil) != tt.ok {
			t.Errorf("backend in zone %q: %v, want ok=%v", tt.zone, err, tt.ok)
		}
	}
}
