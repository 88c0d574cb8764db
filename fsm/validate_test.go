package fsm

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// validationBase is baseConfig plus two VIPs, for uniqueness checks.
func validationBase(t testing.TB) *Config {
	c := baseConfig(t)
	return mustNext(t, c, ApplyCommand([]Object{
		obj(KindVIP, "edge-a", `{"provider":"aws-eip","allocation_id":"eipalloc-1","home_node":"n1"}`),
		obj(KindVIP, "l1", `{"provider":"linux","address":"10.0.0.100/24","home_node":"n2"}`),
		obj(KindVIP, "p1", `{"provider":"aws-private-ip","private_ip":"10.0.1.100","home_node":"n1"}`),
		obj(KindVIP, "r1", `{"provider":"aws-route","route_table_ids":["rtb-1","rtb-2"],"cidr":"10.200.0.10/32","home_node":"n1"}`),
	}))
}

func TestValidationRejects(t *testing.T) {
	const route = `"listener":"web","action":{"split":[{"pool":"app","weight":1}]}`
	tests := []struct {
		kind  Kind
		name  string
		spec  string
		field string
		err   error
	}{
		// names and kinds
		{KindListener, "Web", `{"port":80}`, "name", ErrInvalid},
		{KindListener, "-web", `{"port":80}`, "name", ErrInvalid},
		{KindListener, "web-", `{"port":80}`, "name", ErrInvalid},
		{KindListener, "", `{"port":80}`, "name", ErrInvalid},
		{KindListener, strings.Repeat("a", 64), `{"port":80}`, "name", ErrInvalid},
		{KindListener, "a b", `{"port":80}`, "name", ErrInvalid},
		{"bogus", "x", `{"port":80}`, "kind", ErrInvalid},
		// decoding
		{KindListener, "x", ``, "spec", ErrInvalid},
		{KindListener, "x", `[]`, "spec", ErrInvalid},
		{KindListener, "x", `{"port":80}{}`, "spec", ErrInvalid},
		{KindListener, "x", `{"prot":80}`, "spec.prot", ErrInvalid},
		{KindListener, "x", `{"Port":80}`, "spec.Port", ErrInvalid},
		{KindListener, "x", `{"port":"80"}`, "spec.port", ErrInvalid},
		{KindListener, "x", `{"port":80.5}`, "spec.port", ErrInvalid},
		{KindListener, "x", `{"port":99999999999999999999}`, "spec.port", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"match":{"path":{"prefix":"/","foo":1}}}`, "spec.match.path.foo", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"timeouts":{"connect":"soon"}}`, "spec.timeouts.connect", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"match":{"hosts":"a.com"}}`, "spec.match.hosts", ErrInvalid},
		// listener
		{KindListener, "x", `{"port":0}`, "spec.port", ErrInvalid},
		{KindListener, "x", `{"port":65536}`, "spec.port", ErrInvalid},
		{KindListener, "x", `{"port":-1}`, "spec.port", ErrInvalid},
		{KindListener, "x", `{"port":81,"protocol":"ftp"}`, "spec.protocol", ErrInvalid},
		{KindListener, "x", `{"port":81,"protocol":"https"}`, "spec.tls", ErrInvalid},
		{KindListener, "x", `{"port":81,"protocol":"https","tls":{"cert_file":"c.pem"}}`, "spec.tls.key_file", ErrInvalid},
		{KindListener, "x", `{"port":81,"protocol":"https","tls":{"key_file":"k.pem"}}`, "spec.tls.cert_file", ErrInvalid},
		{KindListener, "x", `{"port":81,"tls":{"cert_file":"c","key_file":"k"}}`, "spec.tls", ErrInvalid},
		{KindListener, "x", `{"port":81,"limits":{"max_conns":-1}}`, "spec.limits.max_conns", ErrInvalid},
		{KindListener, "x", `{"port":81,"limits":{"max_header_bytes":-1}}`, "spec.limits.max_header_bytes", ErrInvalid},
		{KindListener, "x", `{"port":81,"limits":{"max_body_bytes":-1}}`, "spec.limits.max_body_bytes", ErrInvalid},
		{KindListener, "x", `{"port":81,"limits":{"read_timeout":"-1s"}}`, "spec.limits.read_timeout", ErrInvalid},
		{KindListener, "x", `{"port":81,"limits":{"write_timeout":"-1s"}}`, "spec.limits.write_timeout", ErrInvalid},
		{KindListener, "x", `{"port":81,"limits":{"idle_timeout":"-1s"}}`, "spec.limits.idle_timeout", ErrInvalid},
		{KindListener, "x", `{"port":8080}`, "spec.port", ErrConflict},
		// route: listener and path
		{KindRoute, "x", `{"action":{"split":[{"pool":"app","weight":1}]}}`, "spec.listener", ErrInvalid},
		{KindRoute, "x", `{"listener":"nope","action":{"split":[{"pool":"app","weight":1}]}}`, "spec.listener", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"match":{"path":{"prefix":"/","exact":"/a"}}}`, "spec.match.path", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"match":{"path":{"exact":"/a","regex":"/a"}}}`, "spec.match.path", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"match":{"path":{"prefix":"api"}}}`, "spec.match.path.prefix", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"match":{"path":{"exact":"api"}}}`, "spec.match.path.exact", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"match":{"path":{"regex":"/(a"}}}`, "spec.match.path.regex", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"match":{"path":{"regex":"/(?=a)"}}}`, "spec.match.path.regex", ErrInvalid},
		// route: hosts, methods, headers, query
		{KindRoute, "x", `{` + route + `,"match":{"hosts":["app.example.com:80"]}}`, "spec.match.hosts[0]", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"match":{"hosts":["ok.com","a b.com"]}}`, "spec.match.hosts[1]", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"match":{"hosts":["foo.*.com"]}}`, "spec.match.hosts[0]", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"match":{"hosts":["*"]}}`, "spec.match.hosts[0]", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"match":{"hosts":["**.a.com"]}}`, "spec.match.hosts[0]", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"match":{"hosts":[""]}}`, "spec.match.hosts[0]", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"match":{"hosts":["a..com"]}}`, "spec.match.hosts[0]", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"match":{"hosts":["[::1]"]}}`, "spec.match.hosts[0]", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"match":{"methods":["GET","post"]}}`, "spec.match.methods[1]", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"match":{"methods":["GE T"]}}`, "spec.match.methods[0]", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"match":{"methods":[""]}}`, "spec.match.methods[0]", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"match":{"headers":[{"name":""}]}}`, "spec.match.headers[0].name", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"match":{"headers":[{"name":"X Y"}]}}`, "spec.match.headers[0].name", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"match":{"headers":[{"name":"a"},{"name":"b","regex":"["}]}}`, "spec.match.headers[1].regex", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"match":{"headers":[{"name":"a","value":"v","regex":"v"}]}}`, "spec.match.headers[0]", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"match":{"query":[{"name":""}]}}`, "spec.match.query[0].name", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"match":{"query":[{"name":"q","regex":"a{2,1}"}]}}`, "spec.match.query[0].regex", ErrInvalid},
		// route: action
		{KindRoute, "x", `{"listener":"web"}`, "spec.action", ErrInvalid},
		{KindRoute, "x", `{"listener":"web","action":{"split":[]}}`, "spec.action", ErrInvalid},
		{KindRoute, "x", `{"listener":"web","action":{"split":[{"pool":"app","weight":1}],"respond":{"status":200}}}`, "spec.action", ErrInvalid},
		{KindRoute, "x", `{"listener":"web","action":{"redirect":{},"respond":{"status":200}}}`, "spec.action", ErrInvalid},
		{KindRoute, "x", `{"listener":"web","action":{"split":[{"pool":"app","weight":10001}]}}`, "spec.action.split[0].weight", ErrInvalid},
		{KindRoute, "x", `{"listener":"web","action":{"split":[{"pool":"app","weight":1},{"pool":"other","weight":-1}]}}`, "spec.action.split[1].weight", ErrInvalid},
		{KindRoute, "x", `{"listener":"web","action":{"split":[{"pool":"app","weight":0},{"pool":"other","weight":0}]}}`, "spec.action.split", ErrInvalid},
		{KindRoute, "x", `{"listener":"web","action":{"split":[{"pool":"app","weight":1},{"pool":"nope","weight":1}]}}`, "spec.action.split[1].pool", ErrInvalid},
		{KindRoute, "x", `{"listener":"web","action":{"split":[{"pool":"","weight":1}]}}`, "spec.action.split[0].pool", ErrInvalid},
		{KindRoute, "x", `{"listener":"web","action":{"split":[{"pool":"app","weight":1},{"pool":"app","weight":1}]}}`, "spec.action.split[1].pool", ErrInvalid},
		{KindRoute, "x", `{"listener":"web","action":{"redirect":{"code":300}}}`, "spec.action.redirect.code", ErrInvalid},
		{KindRoute, "x", `{"listener":"web","action":{"redirect":{"scheme":"ftp"}}}`, "spec.action.redirect.scheme", ErrInvalid},
		{KindRoute, "x", `{"listener":"web","action":{"redirect":{"port":70000}}}`, "spec.action.redirect.port", ErrInvalid},
		{KindRoute, "x", `{"listener":"web","action":{"redirect":{"path":"x"}}}`, "spec.action.redirect.path", ErrInvalid},
		{KindRoute, "x", `{"listener":"web","action":{"respond":{"status":99}}}`, "spec.action.respond.status", ErrInvalid},
		{KindRoute, "x", `{"listener":"web","action":{"respond":{"status":600}}}`, "spec.action.respond.status", ErrInvalid},
		{KindRoute, "x", `{"listener":"web","action":{"respond":{"status":200,"headers":{"a b":"c"}}}}`, "spec.action.respond.headers.a b", ErrInvalid},
		// route: the rest
		{KindRoute, "x", `{` + route + `,"retries":{"attempts":6}}`, "spec.retries.attempts", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"retries":{"attempts":-1}}`, "spec.retries.attempts", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"retries":{"attempts":1,"on":["503","bogus"]}}`, "spec.retries.on[1]", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"retries":{"attempts":1,"on":["200"]}}`, "spec.retries.on[0]", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"retries":{"attempts":1,"on":[503]}}`, "spec.retries.on[0]", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"retries":{"attempts":1,"budget_percent":101}}`, "spec.retries.budget_percent", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"max_body":-1}`, "spec.max_body", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"timeouts":{"request":"-1s"}}`, "spec.timeouts.request", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"headers_add":{"X Bad":"v"}}`, "spec.headers_add.X Bad", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"headers_add":{"X-Ok":"a\r\nb"}}`, "spec.headers_add.X-Ok", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"headers_remove":["ok",""]}`, "spec.headers_remove[1]", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"response_headers_remove":["a:b"]}`, "spec.response_headers_remove[0]", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"rewrite":{"path_prefix":"x"}}`, "spec.rewrite.path_prefix", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"match":{"path":{"exact":"/a"}},"rewrite":{"path_prefix":"/b"}}`, "spec.rewrite.path_prefix", ErrInvalid},
		{KindRoute, "x", `{` + route + `,"rewrite":{"host":"a b"}}`, "spec.rewrite.host", ErrInvalid},
		// pool
		{KindPool, "x", `{"balancer":"fastest"}`, "spec.balancer", ErrInvalid},
		{KindPool, "x", `{"balancer":"hash"}`, "spec.hash", ErrInvalid},
		{KindPool, "x", `{"balancer":"hash","hash":{}}`, "spec.hash", ErrInvalid},
		{KindPool, "x", `{"balancer":"hash","hash":{"header":"x-user","client_ip":true}}`, "spec.hash", ErrInvalid},
		{KindPool, "x", `{"balancer":"hash","hash":{"header":"x user"}}`, "spec.hash.header", ErrInvalid},
		{KindPool, "x", `{"hash":{"client_ip":true}}`, "spec.hash", ErrInvalid},
		{KindPool, "x", `{"zone_min_healthy_percent":101}`, "spec.zone_min_healthy_percent", ErrInvalid},
		{KindPool, "x", `{"panic_threshold":-1}`, "spec.panic_threshold", ErrInvalid},
		{KindPool, "x", `{"max_conns_per_backend":-1}`, "spec.max_conns_per_backend", ErrInvalid},
		{KindPool, "x", `{"max_conn_wait":"-1s"}`, "spec.max_conn_wait", ErrInvalid},
		{KindPool, "x", `{"health_check":{"path":"healthz"}}`, "spec.health_check.path", ErrInvalid},
		{KindPool, "x", `{"health_check":{}}`, "spec.health_check.path", ErrInvalid},
		{KindPool, "x", `{"health_check":{"path":"/","rise":101}}`, "spec.health_check.rise", ErrInvalid},
		{KindPool, "x", `{"health_check":{"path":"/","rise":-1}}`, "spec.health_check.rise", ErrInvalid},
		{KindPool, "x", `{"health_check":{"path":"/","fall":101}}`, "spec.health_check.fall", ErrInvalid},
		{KindPool, "x", `{"health_check":{"path":"/","interval":"-2s"}}`, "spec.health_check.interval", ErrInvalid},
		{KindPool, "x", `{"health_check":{"path":"/","timeout":"-2s"}}`, "spec.health_check.timeout", ErrInvalid},
		{KindPool, "x", `{"health_check":{"path":"/","interval":"2s","timeout":"3s"}}`, "spec.health_check.timeout", ErrInvalid},
		{KindPool, "x", `{"health_check":{"path":"/","interval":"500ms"}}`, "spec.health_check.timeout", ErrInvalid},
		{KindPool, "x", `{"health_check":{"path":"/","expect":600}}`, "spec.health_check.expect", ErrInvalid},
		{KindPool, "x", `{"outlier":{"max_ejected_percent":101}}`, "spec.outlier.max_ejected_percent", ErrInvalid},
		{KindPool, "x", `{"outlier":{"consecutive_5xx":-1}}`, "spec.outlier.consecutive_5xx", ErrInvalid},
		{KindPool, "x", `{"backends":[{"addr":"10.0.0.1"}]}`, "spec.backends[0].addr", ErrInvalid},
		{KindPool, "x", `{"backends":[{"addr":"10.0.0.1:0"}]}`, "spec.backends[0].addr", ErrInvalid},
		{KindPool, "x", `{"backends":[{"addr":"10.0.0.1:65536"}]}`, "spec.backends[0].addr", ErrInvalid},
		{KindPool, "x", `{"backends":[{"addr":":80"}]}`, "spec.backends[0].addr", ErrInvalid},
		{KindPool, "x", `{"backends":[{"addr":"a b:80"}]}`, "spec.backends[0].addr", ErrInvalid},
		{KindPool, "x", `{"backends":[{"addr":""}]}`, "spec.backends[0].addr", ErrInvalid},
		{KindPool, "x", `{"backends":[{"addr":"10.0.0.1:80","weight":1001}]}`, "spec.backends[0].weight", ErrInvalid},
		{KindPool, "x", `{"backends":[{"addr":"10.0.0.1:80","weight":-1}]}`, "spec.backends[0].weight", ErrInvalid},
		{KindPool, "x", `{"backends":[{"addr":"10.0.0.1:80"},{"addr":"10.0.0.2:80"},{"addr":"10.0.0.1:80"}]}`, "spec.backends[2].addr", ErrInvalid},
		{KindPool, "x", `{"backends":[{"addr":"10.0.0.1:80","source":"dns"}]}`, "spec.backends[0].source", ErrInvalid},
		{KindPool, "x", `{"backends":[{"addr":"10.0.0.1:80","source":"ec2","lease":3}]}`, "spec.backends[0].source", ErrInvalid},
		{KindPool, "x", `{"discovery":{}}`, "spec.discovery.ec2", ErrInvalid},
		{KindPool, "x", `{"discovery":{"ec2":{"tags":{"app":"x"},"port":0}}}`, "spec.discovery.ec2.port", ErrInvalid},
		// vip
		{KindVIP, "x", `{}`, "spec.provider", ErrInvalid},
		{KindVIP, "x", `{"provider":"gcp"}`, "spec.provider", ErrInvalid},
		{KindVIP, "x", `{"provider":"aws-eip"}`, "spec.allocation_id", ErrInvalid},
		{KindVIP, "x", `{"provider":"linux"}`, "spec.address", ErrInvalid},
		{KindVIP, "x", `{"provider":"linux","address":"10.0.0.5"}`, "spec.address", ErrInvalid},
		{KindVIP, "x", `{"provider":"linux","address":"10.0.0.5/24","allocation_id":"e"}`, "spec.allocation_id", ErrInvalid},
		{KindVIP, "x", `{"provider":"aws-eip","allocation_id":"eipalloc-2","home_node":"n9"}`, "spec.home_node", ErrInvalid},
		{KindVIP, "x", `{"provider":"aws-eip","allocation_id":"eipalloc-2","home_node":"n1","candidates":["n1","n9"]}`, "spec.candidates[1]", ErrInvalid},
		{KindVIP, "x", `{"provider":"aws-eip","allocation_id":"eipalloc-2","candidates":["n1","n1"]}`, "spec.candidates[1]", ErrInvalid},
		{KindVIP, "x", `{"provider":"aws-eip","allocation_id":"eipalloc-2","home_node":"n3","candidates":["n1","n2"]}`, "spec.candidates", ErrInvalid},
		{KindVIP, "x", `{"provider":"aws-eip","allocation_id":"eipalloc-1"}`, "spec.allocation_id", ErrInvalid}, // a bad spec, not a lost race: 400
		{KindVIP, "x", `{"provider":"linux","address":"10.0.0.100/32"}`, "spec.address", ErrInvalid},
		// vip: aws-private-ip and aws-route
		{KindVIP, "x", `{"provider":"aws-private-ip"}`, "spec.private_ip", ErrInvalid},
		{KindVIP, "x", `{"provider":"aws-private-ip","private_ip":"10.0.1"}`, "spec.private_ip", ErrInvalid},
		{KindVIP, "x", `{"provider":"aws-private-ip","private_ip":"fd00::1"}`, "spec.private_ip", ErrInvalid},
		{KindVIP, "x", `{"provider":"aws-private-ip","private_ip":"8.8.8.8"}`, "spec.private_ip", ErrInvalid},
		{KindVIP, "x", `{"provider":"aws-private-ip","private_ip":"10.0.1.101","address":"10.0.1.101"}`, "spec.address", ErrInvalid},
		{KindVIP, "x", `{"provider":"aws-private-ip","private_ip":"10.0.1.101","cidr":"10.9.0.0/16"}`, "spec.cidr", ErrInvalid},
		{KindVIP, "x", `{"provider":"aws-private-ip","private_ip":"10.0.1.100"}`, "spec.private_ip", ErrInvalid}, // used by p1
		{KindVIP, "x", `{"provider":"aws-private-ip","private_ip":"10.0.1.101","enis":{"n1":"eth0"}}`, "spec.enis.n1", ErrInvalid},
		{KindVIP, "x", `{"provider":"aws-private-ip","private_ip":"10.0.1.101","enis":{"n 1":"eni-1"}}`, "spec.enis.n 1", ErrInvalid},
		{KindVIP, "x", `{"provider":"aws-private-ip","private_ip":"10.0.1.101","enis":{"n9":"eni-9"}}`, "spec.enis.n9", ErrInvalid},
		{KindVIP, "x", `{"provider":"aws-route","cidr":"10.200.0.11/32"}`, "spec.route_table_ids", ErrInvalid},
		{KindVIP, "x", `{"provider":"aws-route","route_table_ids":["rtb-1"]}`, "spec.cidr", ErrInvalid},
		{KindVIP, "x", `{"provider":"aws-route","route_table_ids":["route-1"],"cidr":"10.200.0.11/32"}`, "spec.route_table_ids[0]", ErrInvalid},
		{KindVIP, "x", `{"provider":"aws-route","route_table_ids":["rtb-1","rtb-1"],"cidr":"10.200.0.11/32"}`, "spec.route_table_ids[1]", ErrInvalid},
		{KindVIP, "x", `{"provider":"aws-route","route_table_ids":["rtb-1"],"cidr":"10.200.0.11"}`, "spec.cidr", ErrInvalid},
		{KindVIP, "x", `{"provider":"aws-route","route_table_ids":["rtb-1"],"cidr":"10.200.0.11/24"}`, "spec.cidr", ErrInvalid},
		{KindVIP, "x", `{"provider":"aws-route","route_table_ids":["rtb-3","rtb-2"],"cidr":"10.200.0.10/32"}`, "spec.cidr", ErrInvalid}, // r1's route in rtb-2
		{KindVIP, "x", `{"provider":"aws-route","route_table_ids":["rtb-3"],"cidr":"10.200.0.11/32","private_ip":"10.0.1.9"}`, "spec.private_ip", ErrInvalid},
		{KindVIP, "x", `{"provider":"aws-eip","allocation_id":"eipalloc-5","private_ip":"10.0.1.9"}`, "spec.private_ip", ErrInvalid},
		{KindVIP, "x", `{"provider":"linux","address":"10.0.0.9/24","route_table_ids":["rtb-1"]}`, "spec.route_table_ids", ErrInvalid},
		{KindVIP, "x", `{"provider":"none","cidr":"10.0.0.0/8"}`, "spec.cidr", ErrInvalid},
		{KindVIP, "x", `{"provider":"none","enis":{"n1":"eni-1"}}`, "spec.enis", ErrInvalid},
	}
	base := validationBase(t)
	before := snapshotBytes(t, base)
	for i, tt := range tests {
		t.Run(fmt.Sprintf("%d_%s_%s", i, tt.kind, tt.field), func(t *testing.T) {
			cmd := PutCommand(obj(tt.kind, tt.name, tt.spec), nil)
			next, err := Next(base, base.Index+1, cmd)
			wantFieldError(t, err, tt.field, tt.err)
			if next != nil {
				t.Fatalf("Next returned a document with its error")
			}
			// The same object in a manifest is refused at documents[1].
			mcmd := ApplyCommand([]Object{obj(KindPool, "extra", `{}`), obj(tt.kind, tt.name, tt.spec)})
			_, err = Next(base, base.Index+1, mcmd)
			wantFieldError(t, err, "documents[1]."+tt.field, tt.err)
			if !bytes.Equal(snapshotBytes(t, base), before) {
				t.Fatalf("a rejected command changed the published document")
			}
		})
	}
}

func TestValidationAccepts(t *testing.T) {
	const route = `"listener":"web","action":{"split":[{"pool":"app","weight":1}]}`
	tests := []struct {
		kind Kind
		name string
		spec string
	}{
		{KindListener, "a", `{"port":1}`},
		{KindListener, "a.b_c-d", `{"port":65535,"protocol":"https","tls":{"cert_file":"c","key_file":"k"},"edge":true,"limits":{"max_conns":10,"read_timeout":"5s"}}`},
		{KindListener, strings.Repeat("a", 63), `{"port":81,"protocol":"http"}`},
		{KindRoute, "r", `{` + route + `,"match":{"hosts":["*.example.com","App.Example.com","10.0.0.1"],"methods":["GET","PURGE"],"path":{"regex":"/a/[0-9]+"},"headers":[{"name":"x-a","regex":"^b"},{"name":"x-b","invert":true}],"query":[{"name":"q","value":"1"}]}}`},
		{KindRoute, "r", `{` + route + `,"priority":-5,"retries":{"attempts":5,"on":["connect-failure","reset","timeout","503","429"],"budget_percent":100},"timeouts":{"connect":"1s","request":"2500ms","idle":1000}}`},
		{KindRoute, "r", `{` + route + `,"match":{"path":{"prefix":"/api"}},"rewrite":{"path_prefix":"/","host":"internal"},"headers_add":{"X-A":"1"},"headers_remove":["x-b"],"response_headers_add":{"Server":"rafter"},"max_body":0}`},
		{KindRoute, "r", `{"listener":"web","action":{"split":[{"pool":"app","weight":0},{"pool":"other","weight":10000}]}}`},
		{KindRoute, "r", `{"listener":"web","action":{"redirect":{"scheme":"https","code":308,"port":443,"path":"/x","host":"a.com"}}}`},
		{KindRoute, "r", `{"listener":"web","action":{"redirect":{}}}`},
		{KindRoute, "r", `{"listener":"web","action":{"respond":{"status":204,"headers":{"X-A":"b"},"body":"hi"}}}`},
		{KindPool, "p", `{}`},
		{KindPool, "p", `{"balancer":"hash","hash":{"cookie":"sid"}}`},
		{KindPool, "p", `{"balancer":"least_request","zone_aware":true,"zone_min_healthy_percent":100,"panic_threshold":0,"health_check":{"path":"/h","interval":"500ms","timeout":"200ms","rise":1,"fall":100,"expect":204},"outlier":{"consecutive_5xx":5,"base_ejection":"30s","max_ejected_percent":100}}`},
		{KindPool, "p", `{"backends":[{"addr":"10.0.0.1:80","weight":0,"drain":true},{"addr":"[::1]:8080","weight":1000},{"addr":"backend.internal:443","zone":"us-east-1a","lease":7}]}`},
		{KindPool, "p", `{"discovery":{"ec2":{"tags":{"app":"x"},"port":8080,"refresh":"30s"}}}`},
		{KindPool, "p", `{"backends":[{"addr":"10.0.0.1:8080","zone":"us-east-1a","source":"ec2"}],"discovery":{"ec2":{"tags":{"app":"x"},"port":8080}}}`},
		{KindVIP, "v", `{"provider":"none"}`},
		{KindVIP, "v", `{"provider":"aws-eip","allocation_id":"eipalloc-9","home_node":"n1","candidates":["n1","n3"]}`},
		{KindVIP, "v", `{"provider":"linux","address":"10.0.0.101/24","interface":"eth0","home_node":"n2","failback":false}`},
		{KindVIP, "v", `{"provider":"aws-private-ip","private_ip":"10.0.1.101","home_node":"n1","candidates":["n1","n2"],"enis":{"n2":"eni-0b2"}}`},
		{KindVIP, "v", `{"provider":"aws-route","route_table_ids":["rtb-0a1","rtb-0b2"],"cidr":"fd00:200::/64","home_node":"n2"}`},
		{KindVIP, "v", `{"provider":"aws-route","route_table_ids":["rtb-3"],"cidr":"10.200.0.10/32"}`}, // r1's CIDR in another table
		{KindVIP, "r1", `{"provider":"aws-route","route_table_ids":["rtb-1"],"cidr":"10.200.0.10/32","home_node":"n2"}`},
		// Updating a VIP in place does not conflict with itself.
		{KindVIP, "edge-a", `{"provider":"aws-eip","allocation_id":"eipalloc-1","home_node":"n2"}`},
	}
	base := validationBase(t)
	for i, tt := range tests {
		t.Run(fmt.Sprintf("%d_%s", i, tt.kind), func(t *testing.T) {
			next, err := Next(base, base.Index+1, PutCommand(obj(tt.kind, tt.name, tt.spec), nil))
			if err != nil {
				t.Fatalf("refused a valid %s: %v", tt.kind, err)
			}
			if _, ok := next.Get(tt.kind, tt.name); !ok {
				t.Fatalf("%s %q not stored", tt.kind, tt.name)
			}
		})
	}
}

func TestVIPNodesUncheckedWithoutMembers(t *testing.T) {
	// A document that knows no members (a fresh cluster, a test) takes any
	// node names; members are checked once some are known.
	_, err := Next(Empty(), 1, PutCommand(obj(KindVIP, "v", `{"provider":"none","home_node":"n9","candidates":["n9"]}`), nil))
	if err != nil {
		t.Fatal(err)
	}
}

func TestFieldErrorString(t *testing.T) {
	err := &FieldError{Field: "spec.port", Message: "bad", Err: ErrInvalid}
	if got := err.Error(); got != "spec.port: bad" {
		t.Fatalf("Error() = %q", got)
	}
	if got := (&FieldError{Message: "bad"}).Error(); got != "bad" {
		t.Fatalf("Error() = %q", got)
	}
}
