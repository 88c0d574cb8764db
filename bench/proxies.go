package bench

import (
	"fmt"
	"strings"
	"time"
)

// ProxySetup is what every proxy is told, so all three are configured from
// the same facts: one listener, one backend, the same timeouts, keep-alive
// on both sides, no access log.
type ProxySetup struct {
	Listen  string // 127.0.0.1:port the proxy serves
	Backend string // 127.0.0.1:port of the backend
	Dir     string // private directory for config, pid and temp files

	ConnectTimeout time.Duration
	RequestTimeout time.Duration
	IdleTimeout    time.Duration
	// MaxConns bounds client and backend connections alike.
	MaxConns int
}

func secs(d time.Duration) string {
	return fmt.Sprintf("%ds", max(1, int(d.Round(time.Second)/time.Second)))
}

// HAProxyConfig renders haproxy.cfg: one thread, keep-alive both sides with
// idle backend connections shared (http-reuse always), X-Forwarded-For as
// rafter adds it, no log lines anywhere.
func HAProxyConfig(s ProxySetup) string {
	var b strings.Builder
	fmt.Fprintf(&b, `global
    nbthread 1
    maxconn %[1]d
    tune.bufsize 16384

defaults
    mode http
    option http-keep-alive
    option forwardfor
    http-reuse always
    timeout connect %[2]s
    timeout client %[3]s
    timeout server %[3]s
    timeout http-request %[3]s
    timeout http-keep-alive %[4]s
    timeout queue %[2]s

frontend bench
    bind %[5]s
    default_backend app

backend app
    server b1 %[6]s maxconn %[1]d
`, s.MaxConns, secs(s.ConnectTimeout), secs(s.RequestTimeout), secs(s.IdleTimeout), s.Listen, s.Backend)
	return b.String()
}

// NginxConfig renders nginx.conf: one worker, HTTP/1.1 keep-alive upstream
// pool, no access log, buffers large enough that a 64 KiB body never goes
// to a temporary file (the other proxies do not touch the disk either), and
// keepalive_requests raised so nginx does not close client connections
// every 1000 requests when the others do not.
func NginxConfig(s ProxySetup) string {
	var b strings.Builder
	fmt.Fprintf(&b, `daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events {
    worker_connections %[2]d;
    multi_accept on;
}
http {
    access_log off;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy_temp;
    fastcgi_temp_path %[1]s/fastcgi_temp;
    uwsgi_temp_path %[1]s/uwsgi_temp;
    scgi_temp_path %[1]s/scgi_temp;
    keepalive_timeout %[3]s;
    keepalive_requests 1000000;
    client_header_timeout %[4]s;
    client_body_timeout %[4]s;
    send_timeout %[4]s;
    upstream app {
        server %[5]s max_conns=%[2]d;
        keepalive %[2]d;
        keepalive_requests 1000000;
        keepalive_timeout %[3]s;
    }
    server {
        listen %[6]s;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_connect_timeout %[7]s;
            proxy_read_timeout %[4]s;
            proxy_send_timeout %[4]s;
            proxy_buffer_size 16k;
            proxy_buffers 8 16k;
            proxy_max_temp_file_size 0;
        }
    }
}
`, s.Dir, s.MaxConns, secs(s.IdleTimeout), secs(s.RequestTimeout), s.Backend, s.Listen, secs(s.ConnectTimeout))
	return b.String()
}

// RafterManifest renders the manifest applied to a single rafter node: one
// listener, one pool with the backend, one catch-all route.
func RafterManifest(s ProxySetup, listenPort int) string {
	return fmt.Sprintf(`kind: listener
name: bench
spec:
  port: %[1]d
  limits: {idle_timeout: %[2]s, max_conns: %[3]d}
---
kind: pool
name: bench
spec:
  balancer: round_robin
  backends:
    - {addr: %[4]s, weight: 1}
---
kind: route
name: bench
spec:
  listener: bench
  match: {path: {prefix: /}}
  timeouts: {connect: %[5]s, request: %[6]s}
  action:
    split: [{pool: bench, weight: 100}]
`, listenPort, secs(s.IdleTimeout), s.MaxConns, s.Backend, secs(s.ConnectTimeout), secs(s.RequestTimeout))
}

// PropagationRoute is the route spec (JSON, as PUT /v1/routes/{name} takes it)
// whose fixed answer marks write number seq.
func PropagationRoute(listener string, seq int) string {
	return fmt.Sprintf(`{"listener":%q,"match":{"path":{"prefix":"/"}},"action":{"respond":{"status":200,"body":"w%d"}}}`, listener, seq)
}
