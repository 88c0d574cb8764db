package bench

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"
)

// Variant names of the fixed-answer proxies: kind and how many cores.
const (
	HAProxy1 = "haproxy-1"
	HAProxy2 = "haproxy-2"
	Rafter1  = "rafter-1"
	Rafter2  = "rafter-2"
)

// Comparison names.
const (
	CompareScaling = "scaling"
	compareTLS     = "tls-"
)

// TLSComparisonName is the comparison of handshakes with certificate kind.
func TLSComparisonName(kind string) string { return compareTLS + kind }

// scalingNotes say how the 2-core comparison is arranged, for the results.
func scalingNotes() []string {
	return []string{
		"1-core variants: the proxy alone on core 0 (GOMAXPROCS=1 / nbthread 1), wrk -t1 on core 1.",
		"2-core variants: the proxy on cores 0-1 (GOMAXPROCS=2 / nbthread 2) and wrk -t2 on the same two cores: the machine has two, so wrk takes part of them and the ratio is a lower bound of the proxy's scaling.",
		"Every answer is the proxy's own (rafter `respond` route, HAProxy `http-request return`): no backend shares the cores.",
	}
}

// runExtras starts the fixed-answer proxies (HAProxy and rafter, each at 1
// and 2 cores; the 1-core ones also have an https listener per certificate
// kind), then runs the TLS handshake comparisons and the scaling one.
func runExtras(ctx context.Context, cfg Config, m *realMeasurer, rafterBin, dir string, now Clock, log *slog.Logger) []Comparison {
	rule := RefusalRule{MinKeptRounds: cfg.MinKeptRounds, MaxDiscardFraction: cfg.MaxDiscardFraction}
	var certs []CertFiles
	roots := x509.NewCertPool()
	var errs []string
	kinds := []string{CertECDSA, CertRSA}
	if cfg.ScalingOnly {
		kinds = nil
	}
	for _, kind := range kinds {
		c, err := WriteCert(dir, kind)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		cert, _ := x509.ParseCertificate(c.CertDER)
		roots.AddCert(cert)
		certs = append(certs, c)
	}
	tlsComps := make([]Comparison, len(certs))
	for i, c := range certs {
		tlsComps[i] = Comparison{Name: TLSComparisonName(c.Kind), Phase: Handshake, Reference: HAProxy1,
			Variants: []string{HAProxy1, Rafter1}, Pairs: [][2]string{{Rafter1, HAProxy1}},
			Notes: []string{fmt.Sprintf("Full TLS 1.3 handshakes (X25519, no resumption) from %d client goroutines on core %d; proxy on core %d with one thread.",
				cfg.HandshakeWorkers, cfg.LoadCore, cfg.ProxyCore)}}
	}
	scaling := Comparison{Name: CompareScaling, Phase: Scaling, Reference: HAProxy1,
		Variants: []string{HAProxy1, HAProxy2, Rafter1, Rafter2},
		Pairs:    [][2]string{{Rafter2, Rafter1}, {HAProxy2, HAProxy1}, {Rafter1, HAProxy1}, {Rafter2, HAProxy2}},
		Notes:    scalingNotes()}
	failAll := func(err string) []Comparison {
		out := append(tlsComps, scaling)
		for i := range out {
			out[i].Err = err
		}
		return out
	}
	if len(errs) > 0 {
		return failAll(fmt.Sprint(errs))
	}
	if rafterBin == "" {
		return failAll("no rafter binary")
	}

	oneCPU, twoCPUs := strconv.Itoa(cfg.ProxyCore), strconv.Itoa(min(cfg.ProxyCore, cfg.LoadCore))+","+strconv.Itoa(max(cfg.ProxyCore, cfg.LoadCore))
	if !cfg.Pin {
		oneCPU, twoCPUs = "", ""
	}
	type live struct {
		lp   *liveProxy
		tls  map[string]string // certificate kind -> https address
		wrk  Wrk
		cpus string
	}
	procs := map[string]*live{}
	defer func() {
		for _, p := range procs {
			p.lp.proc.Stop(5 * time.Second)
		}
	}()
	for _, v := range []struct {
		name, kind string
		threads    int
	}{{HAProxy1, HAProxy, 1}, {HAProxy2, HAProxy, 2}, {Rafter1, Rafter, 1}, {Rafter2, Rafter, 2}} {
		ports, err := commonFreePorts([]string{"127.0.0.1"}, 1+len(certs))
		if err != nil {
			return failAll(err.Error())
		}
		addr := func(i int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[i])) }
		s := RespondSetup{Threads: v.threads, Listen: addr(0), IdleTimeout: cfg.IdleTimeout.D(), MaxConns: 4096}
		l := &live{tls: map[string]string{}, wrk: Wrk{Bin: cfg.WrkBin, Core: -1, Connections: cfg.Connections, Threads: v.threads}}
		if v.threads == 1 {
			for i, c := range certs {
				s.TLS = append(s.TLS, TLSBind{Listen: addr(i + 1), Cert: c})
				l.tls[c.Kind] = addr(i + 1)
			}
			l.cpus = oneCPU
			if cfg.Pin {
				l.wrk.Core = cfg.LoadCore
			}
		} else {
			l.cpus, l.wrk.CPUList = twoCPUs, twoCPUs
		}
		lp, err := startRespond(ctx, cfg, v.kind, v.name, l.cpus, rafterBin, filepath.Join(dir, v.name), s, roots, log)
		if err != nil {
			return failAll(err.Error())
		}
		l.lp = lp
		procs[v.name] = l
	}
	for name, p := range procs {
		if _, err := p.wrk.Run(ctx, "http://"+p.lp.listen+"/", cfg.Warmup.D()); err != nil {
			log.Warn("warmup failed", "proxy", name, "err", err)
		}
	}

	var out []Comparison
	for i, c := range certs {
		comp := RunComparison(ctx, tlsComps[i], cfg.ExtraRounds, func(ctx context.Context, spec SliceSpec) (Measurement, error) {
			p := procs[spec.Proxy]
			h := Handshaker{Addr: p.tls[c.Kind], ServerName: "bench.test", Roots: roots, Workers: cfg.HandshakeWorkers, Timeout: 5 * time.Second, SourceIPs: 250}
			var r HandshakeResult
			cpu, rss, err := m.around(ctx, p.lp, func() error {
				var err error
				r, err = h.Run(ctx, cfg.HandshakeSlice.D(), cfg.MaxHandshakes)
				return err
			})
			return handshakeMeasurement(r, cpu, rss, err)
		}, now, log)
		comp.Analyze(cfg.DiscardTolerance, rule)
		out = append(out, comp)
		log.Info("handshakes done", "cert", c.Kind)
	}
	scaling = RunComparison(ctx, scaling, cfg.ExtraRounds, func(ctx context.Context, spec SliceSpec) (Measurement, error) {
		p := procs[spec.Proxy]
		return m.saturate(ctx, p.lp, p.wrk, "http://"+p.lp.listen+"/", cfg.ScalingSlice.D())
	}, now, log)
	scaling.Analyze(cfg.DiscardTolerance, rule)
	return append(out, scaling)
}

// handshakeMeasurement turns a handshake run and the proxy's CPU over it
// into a slice's figures: RPS is handshakes per second, CPUPerReqUs the
// proxy's CPU per completed handshake.
func handshakeMeasurement(r HandshakeResult, cpu time.Duration, rss int64, err error) (Measurement, error) {
	x := Measurement{Requests: r.Done, Errors: r.Errors, Seconds: r.Seconds, CPUSeconds: cpu.Seconds(), RSSBytes: rss}
	if r.Seconds > 0 {
		x.RPS = float64(r.Done) / r.Seconds
	}
	if r.Done > 0 {
		x.CPUPerReqUs = cpu.Seconds() * 1e6 / float64(r.Done)
	}
	if err != nil {
		return x, err
	}
	if r.Errors*100 > r.Done {
		return x, fmt.Errorf("%d failed handshakes in %d (%s)", r.Errors, r.Done+r.Errors, r.FirstErr)
	}
	return x, nil
}
