package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rafterlb/rafter/fsm"
)

// TestProvisionWritesACheckedConfig runs the config-writing part of the
// provisioning script against a temporary root, as Vagrant runs it on n2,
// and checks the result with `rafter agent --check`.
func TestProvisionWritesACheckedConfig(t *testing.T) {
	root := t.TempDir()
	bin := rafterBinary(t)
	tlsDir := filepath.Join(root, "etc/rafter/tls")
	peers := "n1=192.168.56.11,n2=192.168.56.12,n3=192.168.56.13"
	run(t, "", nil, bin, "tls", "init", "--dir", tlsDir, "--nodes", peers)
	script := filepath.Join(repoRoot(t), "deploy/provision/write-config.sh")
	run(t, "", []string{
		"ROOT=" + root, "NODE_ID=n2", "ZONE=zone-b", "NODE_IP=192.168.56.12",
		"PEER_IPS=192.168.56.11,192.168.56.12,192.168.56.13", "TLS_DIR=" + tlsDir,
		"VIP_LINUX=true", "RAFTER_TOKEN=s3cret",
	}, "sh", script)
	conf := filepath.Join(root, "etc/rafter/rafter.yaml")
	if out := run(t, "", nil, bin, "agent", "--config", conf, "--check"); strings.TrimSpace(out) != "configuration ok" {
		t.Fatalf("--check: %q", out)
	}
	data, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"node_id: n2\n", "bootstrap_expect: 3\n", "join: [192.168.56.11:7700, 192.168.56.12:7700, 192.168.56.13:7700]\n"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("config lacks %q:\n%s", want, data)
		}
	}
	env, err := os.ReadFile(filepath.Join(root, "etc/default/rafter"))
	if err != nil || string(env) != "RAFTER_TOKEN=s3cret\n" {
		t.Errorf("etc/default/rafter: %q, %v", env, err)
	}
	if st, err := os.Stat(filepath.Join(root, "etc/default/rafter")); err != nil || st.Mode().Perm()&0o007 != 0 {
		t.Errorf("etc/default/rafter is readable by others (%v, %v)", st.Mode(), err)
	}

	// Without a required variable it stops, naming it.
	cmd := exec.Command("sh", script)
	cmd.Env = append(os.Environ(), "ROOT="+root, "ZONE=z", "NODE_IP=10.0.0.1", "PEER_IPS=10.0.0.1")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "NODE_ID") {
		t.Errorf("without NODE_ID: %v %s", err, out)
	}
}

// TestDemoManifestIsValid parses and validates what the last node applies.
func TestDemoManifestIsValid(t *testing.T) {
	out := run(t, "", []string{"VIP=192.168.56.100/24", "PEERS=n1=192.168.56.11,n2=192.168.56.12,n3=192.168.56.13"},
		"sh", filepath.Join(repoRoot(t), "deploy/provision/demo-manifest.sh"))
	objs, err := fsm.ParseManifest([]byte(out))
	if err != nil {
		t.Fatalf("demo manifest: %v\n%s", err, out)
	}
	if len(objs) != 4 {
		t.Fatalf("demo manifest has %d objects, want 4:\n%s", len(objs), out)
	}
	f := fsm.New()
	for i, o := range objs {
		data, err := fsm.EncodeCommand(fsm.NewCommand(&fsm.Put{Objects: []fsm.Object{o}}))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Apply(uint64(i+1), data); err != nil {
			t.Fatalf("applying %s/%s: %v", o.Kind, o.Name, err)
		}
	}
}
