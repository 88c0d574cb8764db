package fsm

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func TestSnapshotRoundTrip(t *testing.T) {
	c := Empty()
	for i, cmd := range commandLog() {
		if next, err := Next(c, uint64(i+1), cmd); err == nil {
			c = next
		}
	}
	data := snapshotBytes(t, c)
	back, err := ReadSnapshot(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(document(back), document(c)) {
		t.Fatal("snapshot round trip differs")
	}
	if !bytes.Equal(snapshotBytes(t, back), data) {
		t.Fatal("re-written snapshot differs")
	}
	empty, err := ReadSnapshot(bytes.NewReader(snapshotBytes(t, &Config{})))
	if err != nil || empty.Routes == nil || empty.Nodes == nil {
		t.Fatalf("empty snapshot: %v %+v", err, empty)
	}
}

func TestSnapshotCorruption(t *testing.T) {
	c := baseConfig(t)
	data := snapshotBytes(t, c)
	check := func(t *testing.T, what string, b []byte, want ...error) {
		t.Helper()
		got, err := ReadSnapshot(bytes.NewReader(b))
		if got != nil {
			t.Fatalf("%s: returned a document", what)
		}
		for _, w := range want {
			if errors.Is(err, w) {
				return
			}
		}
		t.Fatalf("%s: error %v, want one of %v", what, err, want)
	}
	for n := 0; n < len(data); n++ {
		check(t, "truncated", data[:n], ErrCorruptSnapshot)
	}
	for i := range data {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			b := bytes.Clone(data)
			b[i] ^= mask
			check(t, "flipped", b, ErrCorruptSnapshot, ErrUnsupportedVersion)
		}
	}
	check(t, "trailing", append(bytes.Clone(data), 0), ErrCorruptSnapshot)
	b := bytes.Clone(data)
	b[0] = 'X'
	check(t, "magic", b, ErrCorruptSnapshot)
	b = bytes.Clone(data)
	b[11] = 2
	check(t, "version", b, ErrUnsupportedVersion)
	check(t, "empty", nil, ErrCorruptSnapshot)
	b = bytes.Clone(data)
	for i := 12; i < 20; i++ {
		b[i] = 0xff
	}
	check(t, "huge length", b, ErrCorruptSnapshot)
}

func TestSnapshotRefusesInconsistentDocument(t *testing.T) {
	c := baseConfig(t)
	cc := *c
	cc.Routes = map[string]*Route{"x": {Name: "y"}}
	_, err := ReadSnapshot(bytes.NewReader(snapshotBytes(t, &cc)))
	if !errors.Is(err, ErrCorruptSnapshot) {
		t.Fatalf("got %v", err)
	}
	if err := WriteSnapshot(&bytes.Buffer{}, nil); err == nil {
		t.Fatal("WriteSnapshot(nil) succeeded")
	}
}
