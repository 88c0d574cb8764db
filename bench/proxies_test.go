package bench

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rafterlb/rafter/fsm"
)

func testSetup() ProxySetup {
	return ProxySetup{Listen: "127.0.0.1:18080", Backend: "127.0.0.1:19090", Dir: "/tmp/x",
		ConnectTimeout: 5 * time.Second, RequestTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxConns: 4096}
}

func TestProxyConfigsRender(t *testing.T) {
	s := testSetup()
	tests := []struct {
		name    string
		text    string
		want    []string
		notWant []string
	}{
		{"haproxy", HAProxyConfig(s), []string{
			"nbthread 1", "http-reuse always", "option http-keep-alive", "option forwardfor",
			"timeout connect 5s", "timeout server 30s", "timeout client 30s", "timeout http-keep-alive 60s",
			"bind 127.0.0.1:18080", "server b1 127.0.0.1:19090",
		}, []string{"log ", "nbproc", "daemon"}},
		{"nginx", NginxConfig(s), []string{
			"worker_processes 1;", "daemon off;", "access_log off;", "keepalive 4096;",
			"proxy_http_version 1.1;", `proxy_set_header Connection "";`, "server 127.0.0.1:19090",
			"listen 127.0.0.1:18080;", "proxy_connect_timeout 5s;", "proxy_read_timeout 30s;",
			"keepalive_timeout 60s;", "keepalive_requests 1000000;", "pid /tmp/x/nginx.pid;",
			"proxy_max_temp_file_size 0;",
		}, []string{"access_log /", "worker_processes auto"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, w := range tt.want {
				if !strings.Contains(tt.text, w) {
					t.Errorf("missing %q in\n%s", w, tt.text)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(tt.text, w) {
					t.Errorf("unexpected %q in\n%s", w, tt.text)
				}
			}
		})
	}
}

func TestRafterManifestParses(t *testing.T) {
	objs, err := fsm.ParseManifest([]byte(RafterManifest(testSetup(), 18080)))
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{}
	for _, o := range objs {
		kinds[string(o.Kind)] = string(o.Spec)
	}
	if len(objs) != 3 {
		t.Fatalf("%d objects: %v", len(objs), kinds)
	}
	for kind, want := range map[string][]string{
		"listener": {`"port":18080`, `"idle_timeout":"1m0s"`},
		"pool":     {`"addr":"127.0.0.1:19090"`},
		"route":    {`"prefix":"/"`, `"pool":"bench"`, `"weight":100`, `"connect":"5s"`, `"request":"30s"`},
	} {
		for _, w := range want {
			if !strings.Contains(kinds[kind], w) {
				t.Errorf("%s spec %s lacks %s", kind, kinds[kind], w)
			}
		}
	}
}

func TestPropagationRouteIsARouteSpec(t *testing.T) {
	var spec fsm.RouteSpec
	dec := json.NewDecoder(strings.NewReader(PropagationRoute("prop", 7)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		t.Fatal(err)
	}
	if spec.Listener != "prop" || spec.Action.Respond == nil || spec.Action.Respond.Body != "w7" {
		t.Fatalf("spec %+v", spec)
	}
}

// A rafter binary given on the command line is named by its path, not by
// the tree's commit, which it need not be built from.
func TestRafterVersionNamesTheBinaryRun(t *testing.T) {
	c := DefaultConfig()
	if v := rafterVersion(c, Rafter); v != "rafter "+gitSHA() {
		t.Fatalf("built by the harness: %q, want the tree's commit", v)
	}
	c.RafterBin, c.RafterBBin = "/opt/a/rafter", "/opt/b/rafter"
	if v := rafterVersion(c, Rafter); v != "rafter /opt/a/rafter" {
		t.Fatalf("--rafter: %q", v)
	}
	if v := rafterVersion(c, RafterB); v != "rafter /opt/b/rafter" {
		t.Fatalf("--rafter-b: %q", v)
	}
}
