package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rafterlb/rafter/internal/testutil"
)

// RespondBody is what the fixed-answer listeners send.
const RespondBody = "ok"

// TLSBind is one https listener of a fixed-answer proxy.
type TLSBind struct {
	Listen string // 127.0.0.1:port
	Cert   CertFiles
}

// RespondSetup is a proxy that answers every request itself (HAProxy
// `http-request return`, rafter's `respond` route): no backend, so the
// proxy is all that is measured. TLS adds https listeners with the same answer.
type RespondSetup struct {
	Threads     int // HAProxy nbthread; rafter GOMAXPROCS
	Listen      string
	TLS         []TLSBind
	IdleTimeout time.Duration
	MaxConns    int
}

// HAProxyRespondConfig renders haproxy.cfg for s.
func HAProxyRespondConfig(s RespondSetup) string {
	var b strings.Builder
	fmt.Fprintf(&b, `global
    nbthread %d
    maxconn %d

defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive %s

frontend plain
    bind %s
    http-request return status 200 content-type text/plain string %q
`, s.Threads, s.MaxConns, secs(s.IdleTimeout), s.Listen, RespondBody)
	for _, t := range s.TLS {
		fmt.Fprintf(&b, `
frontend tls_%s
    bind %s ssl crt %s
    http-request return status 200 content-type text/plain string %q
`, strings.ReplaceAll(t.Cert.Kind, "-", "_"), t.Listen, t.Cert.Combined, RespondBody)
	}
	return b.String()
}

// RafterRespondManifest renders the manifest for s: a listener and a
// catch-all respond route per address.
func RafterRespondManifest(s RespondSetup) string {
	var b strings.Builder
	listener := func(name, listen, tls string) {
		_, port, _ := net.SplitHostPort(listen)
		fmt.Fprintf(&b, `kind: listener
name: %[1]s
spec:
  port: %[2]s%[3]s
  limits: {idle_timeout: %[4]s, max_conns: %[5]d}
---
kind: route
name: %[1]s
spec:
  listener: %[1]s
  match: {path: {prefix: /}}
  action:
    respond: {status: 200, body: %[6]q}
`, name, port, tls, secs(s.IdleTimeout), s.MaxConns, RespondBody)
	}
	listener("plain", s.Listen, "")
	for _, t := range s.TLS {
		b.WriteString("---\n")
		listener("tls-"+t.Cert.Kind, t.Listen, fmt.Sprintf("\n  protocol: https\n  tls: {cert_file: %q, key_file: %q}", t.Cert.CertFile, t.Cert.KeyFile))
	}
	return b.String()
}

// startRespond starts proxy kind (HAProxy or Rafter) with s on cpus and
// waits until every listener answers.
func startRespond(ctx context.Context, cfg Config, kind, name, cpus, rafterBin, dir string, s RespondSetup, roots *x509.CertPool, log *slog.Logger) (*liveProxy, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	lp := &liveProxy{name: name, listen: s.Listen, log: filepath.Join(dir, name+".log")}
	spec := ProcSpec{Name: name, Core: -1, CPUList: cpus, Log: lp.log}
	var afterStart func() error
	switch kind {
	case HAProxy:
		path := filepath.Join(dir, "haproxy.cfg")
		if err := os.WriteFile(path, []byte(HAProxyRespondConfig(s)), 0o644); err != nil {
			return nil, err
		}
		spec.Path, spec.Args = cfg.HAProxyBin, []string{"-db", "-f", path}
	case Rafter:
		ports, err := commonFreePorts([]string{"127.0.0.1"}, 2)
		if err != nil {
			return nil, err
		}
		spec.Path = rafterBin
		spec.Args = []string{"agent", "--node-id", "n1", "--zone", "a", "--data-dir", filepath.Join(dir, "data"),
			"--bind", "127.0.0.1", "--admin-port", strconv.Itoa(ports[0]), "--raft-port", strconv.Itoa(ports[1]),
			"--bootstrap-expect", "1", "--access-log", "off", "--log-level", "warn"}
		spec.Env = []string{"GOMAXPROCS=" + strconv.Itoa(s.Threads)}
		admin := "http://127.0.0.1:" + strconv.Itoa(ports[0])
		afterStart = func() error {
			if _, err := waitLeader(ctx, admin, 1, 30*time.Second); err != nil {
				return err
			}
			return applyManifest(ctx, admin, RafterRespondManifest(s), 20*time.Second)
		}
	default:
		return nil, fmt.Errorf("unknown proxy %q", kind)
	}
	proc, err := StartProc(spec)
	if err != nil {
		return nil, err
	}
	lp.proc = proc
	fail := func(err error) (*liveProxy, error) {
		proc.Stop(3 * time.Second)
		return nil, fmt.Errorf("%s: %w; log: %s", name, err, testutil.LogTail(lp.log, 600))
	}
	if afterStart != nil {
		if err := afterStart(); err != nil {
			return fail(err)
		}
	}
	urls := []string{"http://" + s.Listen + "/"}
	for _, t := range s.TLS {
		urls = append(urls, "https://"+t.Listen+"/")
	}
	for _, u := range urls {
		if err := waitAnswer(ctx, u, roots, 15*time.Second); err != nil {
			return fail(err)
		}
	}
	log.Info("fixed-answer proxy serving", "proxy", name, "listen", s.Listen, "cpus", cpus, "pid", proc.PID())
	return lp, nil
}

// waitAnswer polls url until it answers 200 with RespondBody.
func waitAnswer(ctx context.Context, url string, roots *x509.CertPool, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "bench.test"}}
	c := &http.Client{Timeout: time.Second, Transport: tr}
	defer tr.CloseIdleConnections()
	last := errors.New("no answer")
	for i := 0; i < 1000; i++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.Do(req)
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && string(b) == RespondBody {
				return nil
			}
			err = fmt.Errorf("status %d, body %q", resp.StatusCode, b)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not answering within %v: %v", url, within, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not answering: %v", url, last)
}
