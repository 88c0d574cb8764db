package testutil

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestFreePorts(t *testing.T) {
	ports, err := FreePorts([]string{"127.0.0.1"}, 3)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p < 1024 || p >= ephemeralLow() || seen[p] {
			t.Fatalf("ports %v: want distinct ones below %d", ports, ephemeralLow())
		}
		seen[p] = true
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d not free: %v", p, err)
		}
		l.Close()
	}
}

func TestProcess(t *testing.T) {
	log := filepath.Join(t.TempDir(), "p.log")
	spec := ProcessSpec{Name: "sleeper", Path: "sh", Args: []string{"-c", `echo "up $X"; exec sleep 60`}, Env: []string{"X=1"}, Log: log}
	p, err := StartProcess(spec)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Running() {
		t.Fatal("not running after start")
	}
	Eventually(t, 10*time.Second, "output in the log", func() error {
		if !strings.Contains(p.LogTail(100), "up 1") {
			return errLog(p.LogTail(100))
		}
		return nil
	})
	st, err := p.Kill()
	if err != nil {
		t.Fatal(err)
	}
	if ws := st.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL || p.Running() {
		t.Fatalf("after Kill: %v, running %v", st, p.Running())
	}

	// A process that ignores SIGTERM is killed after the grace period.
	spec.Args = []string{"-c", `trap "" TERM; echo ready; while :; do sleep 1; done`}
	p, err = StartProcess(spec)
	if err != nil {
		t.Fatal(err)
	}
	Eventually(t, 10*time.Second, "the trap set", func() error {
		if !strings.Contains(p.LogTail(100), "ready") {
			return errLog(p.LogTail(100))
		}
		return nil
	})
	if _, err := p.Stop(200 * time.Millisecond); err == nil {
		t.Fatal("Stop of a process ignoring SIGTERM: want an error")
	}
	if p.Running() {
		t.Fatal("still running after Stop")
	}

	// One that stops on SIGTERM exits by itself.
	spec.Args = []string{"-c", "exec sleep 60"}
	if p, err = StartProcess(spec); err != nil {
		t.Fatal(err)
	}
	st, err = p.Stop(10 * time.Second)
	if err != nil || st.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Fatalf("Stop = %v, %v; want an exit by SIGTERM", st, err)
	}
	if n := strings.Count(LogTail(log, 1000), "start sleeper"); n != 3 {
		t.Fatalf("log has %d start lines, want 3", n)
	}
}

type errLog string

func (e errLog) Error() string { return "log so far: " + string(e) }

func TestAdmin(t *testing.T) {
	state := map[string]string{}
	mux := func(name string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer tok" {
				http.Error(w, "no", http.StatusUnauthorized)
				return
			}
			w.Header().Set("X-Rafter-Index", "7")
			w.Header().Set("X-Rafter-Leader", "n2")
			w.Write([]byte(`{"node_id":"` + name + `","state":"` + state[name] + `"}`))
		}))
	}
	state["n1"], state["n2"] = "Follower", "Leader"
	s1, s2 := mux("n1"), mux("n2")
	defer s1.Close()
	defer s2.Close()

	a := Admin{Token: "tok"}
	r, err := a.Do(context.Background(), s1.URL, http.MethodGet, "/v1/status", nil)
	if err != nil || r.Status != 200 || r.Index != 7 || r.Leader != "n2" {
		t.Fatalf("Do = %+v, %v", r, err)
	}
	if st, err := a.Status(context.Background(), s1.URL); err != nil || st.NodeID != "n1" || st.State != "Follower" {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	if u, err := a.Leader(5*time.Second, s1.URL, s2.URL); err != nil || u != s2.URL {
		t.Fatalf("Leader = %q, %v; want %q", u, err, s2.URL)
	}
	if _, err := a.Leader(50*time.Millisecond, s1.URL); err == nil {
		t.Fatal("Leader among followers: want an error")
	}
	if _, err := (Admin{Token: "bad"}).Status(context.Background(), s1.URL); err == nil {
		t.Fatal("Status with a bad token: want an error")
	}
}
