package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestRegister: `rafter register` grants a lease, registers the backend,
// keeps the lease alive and revokes it when stopped (SIGTERM cancels the
// command's context).
func TestRegister(t *testing.T) {
	api := newFakeAPI(t, map[string]answer{
		"POST /v1/leases":                          {200, `{"id":7,"ttl":"2s","index":7}`},
		"PUT /v1/pools/app/backends/10.0.0.5:8080": {200, `{"index":8}`},
		"PUT /v1/leases/7/keepalive":               {200, `{"id":7,"ttl":"2s"}`},
		"DELETE /v1/leases/7":                      {200, `{"index":9}`},
	})
	var out, errOut bytes.Buffer
	env := map[string]string{"RAFTER_ADDR": "127.0.0.1:1," + api.srv.URL, "RAFTER_TOKEN": "tok"}
	s := Streams{In: strings.NewReader(""), Out: &out, Err: &errOut, Getenv: func(k string) string { return env[k] }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Execute(ctx, NewRoot(s), []string{"register", "--pool", "app", "--addr", "10.0.0.5:8080", "--zone", "a", "--ttl", "2s"})
	}()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(strings.Join(api.requests(), "\n"), "PUT /v1/leases/7/keepalive") {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no keepalive within 15s: %q\n%s", api.requests(), errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("register: %v", err)
	}
	reqs := api.requests()
	want := []string{
		`POST /v1/leases? {"ttl":"2s"}`,
		`PUT /v1/pools/app/backends/10.0.0.5:8080? {"lease":7,"weight":1,"zone":"a"}`,
		`PUT /v1/leases/7/keepalive?`,
	}
	for i, w := range want {
		if at(reqs, i) != w {
			t.Fatalf("request %d = %q, want %q (all: %q)", i, at(reqs, i), w, reqs)
		}
	}
	if last := reqs[len(reqs)-1]; last != "DELETE /v1/leases/7?" {
		t.Fatalf("last request %q, want the revoke", last)
	}
	if !strings.Contains(out.String(), "registering 10.0.0.5:8080 in pool app") {
		t.Fatalf("stdout %q", out.String())
	}
}

func TestRegisterFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"register", "--addr", "10.0.0.5:80"}, "--pool"},
		{[]string{"register", "--pool", "app"}, "--addr"},
		{[]string{"register", "--pool", "app", "--addr", "10.0.0.5:80", "--ttl", "1s"}, "--ttl"},
		{[]string{"register", "--pool", "app", "--addr", "10.0.0.5:80", "--weight", "0"}, "--weight"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := runCLI(t, "127.0.0.1:1", "", tt.args...)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one starting with %s", err, tt.want)
			}
		})
	}
}
