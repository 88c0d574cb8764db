package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// SchemaVersion names the layout of the results JSON; bump on incompatible change.
const SchemaVersion = "rafter-bench/v2"

// Result is everything one run produced; it is the JSON file.
type Result struct {
	Schema     string            `json:"schema"`
	StartedAt  time.Time         `json:"started_at"`
	FinishedAt time.Time         `json:"finished_at"`
	GitSHA     string            `json:"git_sha"`
	Machine    Machine           `json:"machine"`
	Versions   map[string]string `json:"versions"`
	Config     Config            `json:"config"`
	Proxies    []ProxyInfo       `json:"proxies"`
	// Slices are every raw slice in the order run, discarded ones included.
	Slices  []Slice  `json:"slices"`
	Groups  []Group  `json:"groups"`
	Figures []Figure `json:"figures"`
	Ratios  []Ratio  `json:"ratios"`
	Cluster *Cluster `json:"cluster,omitempty"`
	// Comparisons are TLS handshakes per certificate kind and 2-core scaling.
	Comparisons []Comparison `json:"comparisons,omitempty"`
	// IdleConns is memory per idle keep-alive client connection, per proxy.
	IdleConns []IdleConns `json:"idle_conns,omitempty"`
	// Headline is the summary table, one row per figure.
	Headline []Row    `json:"headline,omitempty"`
	Notes    []string `json:"notes"`
	Chart    string   `json:"chart,omitempty"`
	Elapsed  float64  `json:"elapsed_seconds"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUModel  string `json:"cpu_model"`
	CPUs      int    `json:"cpus"`
	Kernel    string `json:"kernel"`
	OS        string `json:"os"`
	GoVersion string `json:"go_version"`
}

// ProxyInfo is one proxy as it ran (or why it did not).
type ProxyInfo struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Skipped proxies took no part; Reason says why.
	Skipped      bool   `json:"skipped"`
	Reason       string `json:"reason,omitempty"`
	RSSIdleBytes int64  `json:"rss_idle_bytes"`
	// ConfigText is the configuration it ran with.
	ConfigText string `json:"config_text"`
}

// Cluster is the three-node figures.
type Cluster struct {
	Nodes int `json:"nodes"`
	// Propagation: time from a write's acknowledgement until every node serves it.
	Propagation *LatencySummary `json:"propagation,omitempty"`
	Apply       *ApplySummary   `json:"apply,omitempty"`
	// Routes: the large manifest's apply and propagation.
	Routes *RouteScale `json:"routes,omitempty"`
	Err    string      `json:"error,omitempty"`
}

// LatencySummary is a set of timed events.
type LatencySummary struct {
	Count    int     `json:"count"`
	Timeouts int     `json:"timeouts"`
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`
	MaxMs    float64 `json:"max_ms"`
	// RawMs is every sample in the order taken.
	RawMs []float64 `json:"raw_ms"`
}

// ApplySummary is Raft apply throughput through the admin API.
type ApplySummary struct {
	Workers      int     `json:"workers"`
	Writes       int64   `json:"writes"`
	Errors       int64   `json:"errors"`
	Seconds      float64 `json:"seconds"`
	WritesPerSec float64 `json:"writes_per_sec"`
	P50Ms        float64 `json:"p50_ms"`
	P99Ms        float64 `json:"p99_ms"`
}

// Analyze applies the discard rule to r.Slices and fills Groups, Figures
// and Ratios. It is deterministic in the slices alone.
func (r *Result) Analyze() {
	cfg := r.Config
	rule := RefusalRule{MinKeptRounds: cfg.MinKeptRounds, MaxDiscardFraction: cfg.MaxDiscardFraction}
	paced := map[int]float64{}
	for _, g := range r.Groups {
		if g.Phase == Latency {
			paced[g.BodyBytes] = g.PacedRPS
		}
	}
	active := r.activeProxies()
	r.Groups, r.Figures, r.Ratios = nil, nil, nil
	for i := range r.Comparisons {
		r.Comparisons[i].Analyze(cfg.DiscardTolerance, rule)
	}
	for _, body := range cfg.BodySizes {
		for _, ph := range []Phase{Saturation, Latency} {
			idx := r.sliceIndexes(ph, body)
			if len(idx) == 0 {
				continue
			}
			ss := make([]Slice, len(idx))
			for i, j := range idx {
				r.Slices[j].Discarded = false
				ss[i] = r.Slices[j]
			}
			g := DiscardRounds(ss, cfg.Reference, cfg.DiscardTolerance)
			for i, j := range idx {
				r.Slices[j].Discarded = ss[i].Discarded
			}
			if ph == Latency {
				g.PacedRPS = paced[body]
			}
			r.Groups = append(r.Groups, g)
			for _, m := range Metrics() {
				if m.Phase() != ph {
					continue
				}
				for _, p := range active {
					if p == cfg.Reference {
						continue
					}
					r.Ratios = append(r.Ratios, ComputeRatio(ss, g, rule, m, p, cfg.Reference))
				}
			}
		}
		for _, p := range active {
			r.Figures = append(r.Figures, r.figure(p, body, paced[body]))
		}
	}
}

func (r *Result) figure(p string, body int, paced float64) Figure {
	f := Figure{Proxy: p, BodyBytes: body, PacedRPS: paced}
	var ss []Slice
	for _, s := range r.Slices {
		if s.Proxy == p && s.BodyBytes == body {
			ss = append(ss, s)
			f.Errors += s.Errors
		}
	}
	med := func(m Metric) float64 {
		v, ok := MedianFigure(ss, p, m)
		if !ok {
			if v, ok = medianOver(ss, p, m, true); ok {
				f.FromDiscarded = true
			}
		}
		return v
	}
	f.RPS = med(MetricRPS)
	f.CPUPerReqUs = med(MetricCPU)
	f.RSSLoadBytes = int64(med(MetricRSS))
	f.P50Ms = med(MetricP50)
	f.P99Ms = med(MetricP99)
	f.P999Ms = med(MetricP999)
	f.SatP99Ms = med(MetricSatP99)
	for _, pi := range r.Proxies {
		if pi.Name == p {
			f.RSSIdleBytes = pi.RSSIdleBytes
		}
	}
	return f
}

func (r *Result) activeProxies() []string {
	var out []string
	for _, p := range r.Config.Proxies {
		skipped := false
		for _, pi := range r.Proxies {
			if pi.Name == p && pi.Skipped {
				skipped = true
			}
		}
		if !skipped {
			out = append(out, p)
		}
	}
	return out
}

func (r *Result) sliceIndexes(ph Phase, body int) []int {
	var idx []int
	for i, s := range r.Slices {
		if s.Phase == ph && s.BodyBytes == body {
			idx = append(idx, i)
		}
	}
	return idx
}

// Ratio looks up a computed ratio.
func (r *Result) Ratio(proxy string, m Metric, body int) (Ratio, bool) {
	for _, x := range r.Ratios {
		if x.Proxy == proxy && x.Metric == m && x.BodyBytes == body {
			return x, true
		}
	}
	return Ratio{}, false
}

// ErrSchema marks a results document that does not follow SchemaVersion.
var ErrSchema = errors.New("results do not match schema " + SchemaVersion)

// Validate checks the invariants a reader of the JSON relies on.
func (r *Result) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrSchema, fmt.Sprintf(format, a...))
	}
	if r.Schema != SchemaVersion {
		return bad("schema is %q", r.Schema)
	}
	if r.GitSHA == "" {
		return bad("git_sha is empty")
	}
	if r.StartedAt.IsZero() || r.FinishedAt.Before(r.StartedAt) {
		return bad("started_at/finished_at out of order")
	}
	known := map[string]bool{}
	for _, p := range r.Proxies {
		known[p.Name] = true
		if p.Skipped && p.Reason == "" {
			return bad("proxies[%s]: skipped without a reason", p.Name)
		}
	}
	if !known[r.Config.Reference] {
		return bad("reference %q not among proxies", r.Config.Reference)
	}
	for i, s := range r.Slices {
		if !known[s.Proxy] {
			return bad("slices[%d]: unknown proxy %q", i, s.Proxy)
		}
		if s.Phase != Saturation && s.Phase != Latency {
			return bad("slices[%d]: phase %q", i, s.Phase)
		}
	}
	for i, x := range r.Ratios {
		if !known[x.Proxy] || x.Reference != r.Config.Reference {
			return bad("ratios[%d]: proxy %q over %q", i, x.Proxy, x.Reference)
		}
		if !slices.Contains(Metrics(), x.Metric) {
			return bad("ratios[%d]: metric %q", i, x.Metric)
		}
		if x.Refused && x.Reason == "" {
			return bad("ratios[%d]: refused without a reason", i)
		}
		if !x.Refused && !(x.Value > 0) {
			return bad("ratios[%d]: value %v without refusal", i, x.Value)
		}
	}
	return nil
}

// BaseName is <date>-<git-sha>, the name of the JSON and PNG files.
func (r *Result) BaseName() string {
	return r.StartedAt.UTC().Format("2006-01-02T150405Z") + "-" + r.GitSHA
}

// WriteJSON writes r into dir as BaseName().json and returns the path.
func (r *Result) WriteJSON(dir string) (string, error) {
	if err := r.Validate(); err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encoding results: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("results dir: %w", err)
	}
	path := filepath.Join(dir, r.BaseName()+".json")
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("writing results: %w", err)
	}
	return path, nil
}

// ReadResult decodes and validates a results file; unknown fields are an error
// so a schema change cannot pass unnoticed.
func ReadResult(b []byte) (*Result, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var r Result
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSchema, err)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}
