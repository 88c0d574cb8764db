package sdnotify

import (
	"net"
	"path/filepath"
	"testing"
	"time"
)

func TestNotifyWritesOneDatagram(t *testing.T) {
	for _, tc := range []struct{ name, path string }{
		{"file", filepath.Join(t.TempDir(), "notify.sock")},
		{"abstract", "@rafter-sdnotify-test-" + t.Name()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			listen := tc.path
			if listen[0] == '@' {
				listen = "\x00" + listen[1:]
			}
			ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: listen, Net: "unixgram"})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			for _, state := range []string{Ready, Stopping} {
				sent, err := Notify(tc.path, state)
				if err != nil || !sent {
					t.Fatalf("Notify(%q) = %v, %v; want true, nil", state, sent, err)
				}
				buf := make([]byte, 256)
				ln.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, err := ln.Read(buf)
				if err != nil {
					t.Fatal(err)
				}
				if got := string(buf[:n]); got != state {
					t.Errorf("received %q, want %q", got, state)
				}
			}
		})
	}
}

func TestNotifyWithoutSocketSendsNothing(t *testing.T) {
	sent, err := Notify("", Ready)
	if sent || err != nil {
		t.Fatalf("Notify(\"\") = %v, %v; want false, nil", sent, err)
	}
}

func TestNotifyNamesAMissingSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent.sock")
	if _, err := Notify(path, Ready); err == nil {
		t.Fatal("Notify to a missing socket succeeded")
	}
}
