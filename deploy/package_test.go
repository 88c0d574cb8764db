package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPackages builds the packages with `make package`, inspects the .deb
// and unpacks it into a throwaway root where its binary must run and its
// default configuration must be refused only for what an operator fills in.
func TestPackages(t *testing.T) {
	need(t, "make", "dpkg-deb", "dpkg", "gzip")
	dist := t.TempDir()
	run(t, repoRoot(t), nil, "make", "package", "DIST="+dist, "PKG_VERSION=0.0.1")
	debs, _ := filepath.Glob(filepath.Join(dist, "*.deb"))
	rpms, _ := filepath.Glob(filepath.Join(dist, "*.rpm"))
	if len(debs) != 1 || len(rpms) != 1 {
		t.Fatalf("want one .deb and one .rpm in %s, got %v %v", dist, debs, rpms)
	}
	for _, p := range append(debs, rpms...) {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d bytes", filepath.Base(p), st.Size())
	}
	// An rpm starts with the lead's magic.
	if head, err := os.ReadFile(rpms[0]); err != nil || !bytes.HasPrefix(head, []byte{0xed, 0xab, 0xee, 0xdb}) {
		t.Errorf("%s is not an rpm (err %v)", rpms[0], err)
	}
	deb := debs[0]

	list := run(t, "", nil, "dpkg-deb", "-c", deb)
	for _, path := range []string{
		"./usr/bin/rafter",
		"./usr/lib/systemd/system/rafter.service",
		"./usr/lib/systemd/system/rafter-register@.service",
		"./etc/rafter/rafter.yaml",
		"./etc/default/rafter",
		"./usr/share/bash-completion/completions/rafter",
		"./usr/share/zsh/vendor-completions/_rafter",
		"./usr/share/fish/vendor_completions.d/rafter.fish",
		"./usr/share/man/man1/rafter.1.gz",
		"./usr/share/doc/rafter/LICENSE",
		"./usr/share/doc/rafter/operations.md",
	} {
		if !containsField(list, path) {
			t.Errorf("the .deb lacks %s; it holds:\n%s", path, list)
		}
	}
	info := run(t, "", nil, "dpkg-deb", "-I", deb)
	for _, want := range []string{"Package: rafter", "Version: 0.0.1-1", "Depends: adduser", "postinst", "prerm", "conffiles"} {
		if !strings.Contains(info, want) {
			t.Errorf("dpkg-deb -I lacks %q:\n%s", want, info)
		}
	}
	conffiles := run(t, "", nil, "dpkg-deb", "--info", deb, "conffiles")
	for _, want := range []string{"/etc/rafter/rafter.yaml", "/etc/default/rafter"} {
		if !strings.Contains(conffiles, want) {
			t.Errorf("conffiles lacks %s:\n%s", want, conffiles)
		}
	}
	postinst := run(t, "", nil, "dpkg-deb", "--info", deb, "postinst")
	if !strings.Contains(postinst, "adduser --system") {
		t.Errorf("postinst does not create the rafter user:\n%s", postinst)
	}

	root := t.TempDir()
	run(t, "", nil, "dpkg", "-x", deb, root)
	bin := filepath.Join(root, "usr/bin/rafter")
	if out := run(t, "", nil, bin, "version"); !strings.HasPrefix(out, "rafter ") {
		t.Errorf("rafter version: %q", out)
	}
	// The shipped config is a template: --check names what to fill in.
	cmd := exec.Command(bin, "agent", "--config", filepath.Join(root, "etc/rafter/rafter.yaml"), "--check")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--node-id") || !strings.Contains(string(out), "--zone") {
		t.Errorf("--check of the default config: %v\n%s\nwant a failure naming --node-id and --zone", err, out)
	}
	man := run(t, "", nil, "sh", "-c", "gzip -dc "+filepath.Join(root, "usr/share/man/man1/rafter.1.gz"))
	if !strings.Contains(man, ".TH RAFTER 1") {
		t.Errorf("man page: %q", man[:min(len(man), 200)])
	}
	if data, err := os.ReadFile(filepath.Join(root, "usr/share/bash-completion/completions/rafter")); err != nil || !bytes.Contains(data, []byte("__start_rafter")) {
		t.Errorf("bash completion: %v", err)
	}
}

// containsField reports whether a line of dpkg-deb -c output ends in path.
func containsField(list, path string) bool {
	for _, line := range strings.Split(list, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[len(f)-1] == path {
			return true
		}
	}
	return false
}
