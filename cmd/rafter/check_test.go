package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rafterlb/rafter/cmd/rafter/internal/cli"
)

// run runs the rafter command line in this process.
func run(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	s := cli.Streams{In: strings.NewReader(""), Out: &out, Err: &out, Getenv: func(k string) string { return env[k] }}
	err := cli.Execute(context.Background(), newRoot(s), args)
	return out.String(), err
}

func TestAgentCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, err := run(t, nil, "tls", "init", "--dir", filepath.Join(dir, "tls"), "--nodes", "n1=10.0.0.1"); err != nil {
		t.Fatalf("tls init: %v", err)
	}
	tlsKeys := "tls_ca: " + filepath.Join(dir, "tls", "ca.pem") + "\n" +
		"tls_cert: " + filepath.Join(dir, "tls", "n1.pem") + "\n" +
		"tls_key: " + filepath.Join(dir, "tls", "n1-key.pem") + "\n"
	good := "node_id: n1\nzone: z1\ndata_dir: " + filepath.Join(dir, "data") + "\nbind: 10.0.0.1\n" +
		"bootstrap_expect: 3\njoin: [10.0.0.1:7700, 10.0.0.2:7700, 10.0.0.3:7700]\n" + tlsKeys
	tests := []struct {
		name, file, wantErr string
	}{
		{"valid", good, ""},
		{"missing zone", strings.Replace(good, "zone: z1\n", "", 1), "--zone: required"},
		{"no TLS off loopback", strings.Replace(good, tlsKeys, "", 1), "--tls-ca"},
		{"unreadable key", strings.Replace(good, "n1-key.pem", "absent-key.pem", 1), "--tls-key"},
		{"not a key", strings.Replace(good, "n1-key.pem", "ca.pem", 1), "--tls-*"},
		{"unknown key", good + "colour: blue\n", `unknown key "colour"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := write(strings.ReplaceAll(tc.name, " ", "-")+".yaml", tc.file)
			out, err := run(t, nil, "agent", "--config", path, "--check")
			if tc.wantErr == "" {
				if err != nil || strings.TrimSpace(out) != "configuration ok" {
					t.Fatalf("--check = %q, %v; want \"configuration ok\"", out, err)
				}
				if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
					t.Errorf("--check created the data dir (stat: %v); it must start nothing", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("--check error %v, want one naming %q", err, tc.wantErr)
			}
		})
	}
}

func TestRecoverNeedsData(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"recover", "--node-id", "n1"}, "--data-dir: required"},
		{[]string{"recover", "--data-dir", dir, "--node-id", "n1"}, "no Raft state to recover"},
		{[]string{"recover", "--data-dir", dir, "--node-id", "n1", "--peers", "n1"}, "--peers: [0]"},
	} {
		_, err := run(t, nil, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%v: error %v, want one naming %q", tc.args, err, tc.wantErr)
		}
	}
}
