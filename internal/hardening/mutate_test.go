package hardening

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"sort"
	"strings"

	"github.com/rafterlb/rafter/fsm"
)

// validSpecs are specs fsm accepts in fuzzBase (and in the fuzz cluster
// once listener web and pools app and other exist): the starting points
// of every mutation.
var validSpecs = []struct {
	kind fsm.Kind
	spec string
}{
	{fsm.KindListener, `{"port":8081}`},
	{fsm.KindListener, `{"port":8082,"edge":true,"limits":{"max_header_bytes":1048576,"max_body_bytes":17179869184,"read_timeout":"24h","write_timeout":"1s","idle_timeout":"90s","max_conns":1000000}}`},
	{fsm.KindListener, `{"port":8443,"protocol":"https","tls":{"cert_file":"/nonexistent/c.pem","key_file":"/nonexistent/k.pem"}}`},
	{fsm.KindListener, `{"port":8444,"protocol":"https","tls":{"cert_file":"/nonexistent/c.pem","key_file":"/nonexistent/k.pem",
		"policy":{"min_version":"1.2","cipher_suites":["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"]},"hsts":{"max_age":63072000,"include_subdomains":true,"preload":true}}}`},
	{fsm.KindListener, `{"port":8083,"https_redirect":{"port":65535,"code":307}}`},
	{fsm.KindCertificate, `{"acme":{"domains":["app.example.com","*.example.com"],"issuer":"letsencrypt"}}`},
	{fsm.KindPool, `{"backends":[{"addr":"10.0.0.9:80","weight":1000,"zone":"zone-1"},{"addr":"backend.internal:443","drain":true}]}`},
	{fsm.KindPool, `{"balancer":"hash","hash":{"header":"x-user"},"zone_aware":true,"zone_min_healthy_percent":100,"panic_threshold":50,
		"health_check":{"path":"/healthz","expect":204,"host":"h.example.com","interval":"100ms","timeout":"100ms","rise":100,"fall":1},
		"outlier":{"consecutive_5xx":10000,"consecutive_connect_errors":1,"base_ejection":"1h","max_ejected_percent":100},
		"max_conns_per_backend":100000,"max_conn_wait":"5m","backends":[{"addr":"10.0.0.10:8080","weight":0}],
		"discovery":{"ec2":{"tags":{"app":"x"},"port":8080,"refresh":"24h"}}}`},
	{fsm.KindRoute, `{"listener":"web","priority":1000000,
		"match":{"hosts":["app.example.com","*.example.com"],"path":{"prefix":"/api"},"methods":["GET","POST"],
			"headers":[{"name":"X-A","regex":"b|c"},{"name":"x-gone","invert":true}],"query":[{"name":"q","value":"1"}]},
		"action":{"split":[{"pool":"app","weight":10000},{"pool":"other","weight":0}]},"rewrite":{"path_prefix":"/","host":"internal"},
		"headers_add":{"X-Added":"1"},"headers_remove":["x-secret"],"response_headers_add":{"Server":"rafter"},"response_headers_remove":["x-powered-by"],
		"timeouts":{"connect":"5m","request":"24h","idle":"1s"},"retries":{"attempts":5,"on":["connect-failure","reset","timeout","503"],"budget_percent":100},
		"max_body":17179869184}`},
	{fsm.KindRoute, `{"listener":"web","match":{"path":{"regex":"/r/[a-z0-9-]{1,64}/[0-9]+"}},"action":{"redirect":{"scheme":"https","host":"a.example.com","port":443,"path":"/x","code":308}}}`},
	{fsm.KindRoute, `{"listener":"web","priority":-1000000,"match":{"path":{"exact":"/ping"}},"action":{"respond":{"status":200,"body":"pong","headers":{"Content-Type":"text/plain"}}}}`},
	{fsm.KindVIP, `{"provider":"none"}`},
	{fsm.KindVIP, `{"provider":"aws-eip","allocation_id":"eipalloc-0123","home_node":"node1"}`},
	{fsm.KindVIP, `{"provider":"linux","address":"10.0.0.100/24","interface":"eth0"}`},
	{fsm.KindRoute, `{"listener":"web","action":{"split":[{"pool":"app","weight":3},{"pool":"other","weight":7}],"sticky":{"cookie":"sid"}}}`},
	{fsm.KindRollout, `{"route":"app","stable":"app","canary":"other","steps":[1,50,100],"interval":"1s","min_requests":1000000000,
		"max_error_rate":1,"max_p99":"1h","sticky":{"header":"x-user"}}`},
	{fsm.KindRollout, `{"route":"app","stable":"app","canary":"other","steps":[100],"interval":"24h","max_p99_ratio":1000}`},
}

// maxSpecBytes and maxSpecNodes bound a generated spec, to keep the run
// within its budget.
const (
	maxSpecBytes = 64 << 10
	maxSpecNodes = 5000
)

// fits reports whether v has at most *budget values, counting them down
// and stopping as soon as the budget is spent.
func fits(v any, budget *int) bool {
	*budget--
	if *budget < 0 {
		return false
	}
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			if !fits(e, budget) {
				return false
			}
		}
	case []any:
		for _, e := range x {
			if !fits(e, budget) {
				return false
			}
		}
	}
	return true
}

// names are the object names operations pick from: few, so that puts,
// deletes and references collide often.
var names = []string{"web", "app", "other", "r1", "r2", "p1", "l1", "v1"}

// fieldNames are keys a mutation may add: real ones in the wrong place,
// and junk.
var fieldNames = []string{
	"port", "limits", "max_header_bytes", "max_body_bytes", "max_conns", "read_timeout", "regex", "weight",
	"split", "pool", "backends", "addr", "hosts", "priority", "status", "body", "interval", "timeout", "rise",
	"health_check", "match", "path", "prefix", "action", "respond", "retries", "attempts", "Port", "", "\u0000", "x-unknown",
}

var regexes = []string{
	`/api/[0-9]+`, `.*`, `(?i)ab+c`, `\pL{1,100}`, `\pL{1,1000}`, strings.Repeat(`\pL{1,1000}`, 372),
	strings.Repeat(`\pL{1,100}`, 10), `(a`, `(?=x)`, `[[:alpha:]]{1,100}`, `((a{1,30}){1,30})`, `\b`, `^$`, ``,
	`\x{10FFFF}`, `(?s).`, `a{0}`, `|`, `()*`, `(((((((((((a)))))))))))*`, `[^\x00-\x{10FFFF}]`,
}

// mutator makes random, partly malformed admin input from validSpecs.
type mutator struct{ r *rand.Rand }

func (m *mutator) pick(n int) int { return m.r.IntN(n) }

// value is a replacement for any JSON value.
func (m *mutator) value() any {
	switch m.pick(8) {
	case 0: // numbers at and beyond every kind of edge
		nums := []string{"0", "-1", "1", "65535", "65536", "7000", "8400", "8080", "100", "101", "10000", "10001",
			"1048576", "1048577", "4611686018427387904", "9223372036854775807", "9223372036854775808",
			"-9223372036854775808", "1e308", "-1e308", "1.5", "1e3", "17179869185"}
		return json.Number(nums[m.pick(len(nums))])
	case 1:
		return json.Number(fmt.Sprint(m.r.Int64N(1<<40) - 1<<39))
	case 2: // durations
		ds := []string{"1ns", "-1s", "0s", "24h", "24h1ns", "2562047h", "100ms", "99ms", "1h", "5m1ns", "soon", "1e9"}
		return ds[m.pick(len(ds))]
	case 3: // strings
		ss := []string{"", "/", "/" + strings.Repeat("a", 5000), "X-A", "a\r\nb", "\x00", "\u2028", "*.example.com",
			"10.0.0.1:80", "[::1]:8080", "web", "app", "other", "https", "hash", "linux", "aws-eip", "none",
			strings.Repeat("é", 3000), "node1", "eipalloc-1", "10.0.0.100/24", "GET", "connect-failure"}
		return ss[m.pick(len(ss))]
	case 4:
		return regexes[m.pick(len(regexes))]
	case 5:
		switch m.pick(4) {
		case 0:
			return nil
		case 1:
			return m.pick(2) == 0
		case 2:
			return map[string]any{}
		default:
			return []any{}
		}
	case 6: // deep nesting
		var v any = json.Number("1")
		for range 1 + m.pick(1000) {
			if m.pick(2) == 0 {
				v = []any{v}
			} else {
				v = map[string]any{"a": v}
			}
		}
		return v
	default: // a valid part of another spec
		var v map[string]any
		s := validSpecs[m.pick(len(validSpecs))]
		if err := decode([]byte(s.spec), &v); err != nil {
			panic(err)
		}
		keys := sortedKeys(v)
		return v[keys[m.pick(len(keys))]]
	}
}

// mutate changes one place in v, descending at random, and returns the result.
func (m *mutator) mutate(v any) any {
	switch x := v.(type) {
	case map[string]any:
		keys := sortedKeys(x)
		if len(keys) > 0 && m.pick(4) != 0 {
			k := keys[m.pick(len(keys))]
			x[k] = m.mutate(x[k])
			return x
		}
		switch m.pick(3) {
		case 0:
			if len(keys) > 0 {
				delete(x, keys[m.pick(len(keys))])
			}
		case 1:
			x[fieldNames[m.pick(len(fieldNames))]] = m.value()
		default:
			return m.value()
		}
		return x
	case []any:
		if len(x) > 0 && m.pick(4) != 0 {
			i := m.pick(len(x))
			x[i] = m.mutate(x[i])
			return x
		}
		switch m.pick(3) {
		case 0:
			if len(x) > 0 { // grow past the list bounds
				n := 1 + m.pick(400)
				for i := range n {
					x = append(x, x[i%len(x)])
				}
			}
			return x
		case 1:
			return []any{}
		default:
			return m.value()
		}
	default:
		return m.value()
	}
}

// spec returns a mutated spec of kind (any kind when kind is "").
func (m *mutator) spec(kind fsm.Kind) (fsm.Kind, []byte) {
	var cands []int
	for i, s := range validSpecs {
		if kind == "" || s.kind == kind {
			cands = append(cands, i)
		}
	}
	s := validSpecs[cands[m.pick(len(cands))]]
	var b []byte
	for {
		var v any
		if err := decode([]byte(s.spec), &v); err != nil {
			panic(err)
		}
		for range m.pick(4) { // zero mutations now and then: valid input too
			v = m.mutate(v)
		}
		// Copies of copies grow without bound, and megabytes of nesting
		// cost seconds to encode and decode under -race while finding
		// nothing more than kilobytes do.
		budget := maxSpecNodes
		if !fits(v, &budget) {
			continue
		}
		var err error
		if b, err = json.Marshal(v); err != nil {
			panic(err)
		}
		if len(b) <= maxSpecBytes {
			break
		}
	}
	switch m.pick(12) { // malformed bytes
	case 0:
		b = b[:m.pick(len(b)+1)]
	case 1:
		i := m.pick(len(b) + 1)
		b = append(b[:i:i], append([]byte{byte(m.pick(256))}, b[i:]...)...)
	}
	return s.kind, b
}

func (m *mutator) name() string {
	switch m.pick(20) {
	case 0:
		odd := []string{"", "Bad", "a b", strings.Repeat("a", 64), "a/b", "..", "-x", "x\x00"}
		return odd[m.pick(len(odd))]
	default:
		return names[m.pick(len(names))]
	}
}

// op returns one admin API request: a put, a delete or a manifest apply.
func (m *mutator) op() (method, target string, body []byte) {
	cas := ""
	if m.pick(8) == 0 {
		cas = fmt.Sprintf("?cas=%d", m.pick(50))
	}
	switch m.pick(6) {
	case 0:
		kind := fsm.Kinds[m.pick(len(fsm.Kinds))]
		return "DELETE", "/v1/" + string(kind) + "s/" + url.PathEscape(m.name()) + cas, nil
	case 1:
		var docs []json.RawMessage
		for range 1 + m.pick(4) {
			kind, spec := m.spec("")
			head, _ := json.Marshal(map[string]string{"kind": string(kind), "name": m.name()})
			docs = append(docs, json.RawMessage(fmt.Sprintf(`%s,"spec":%s}`, head[:len(head)-1], spec)))
		}
		b := []byte("[")
		for i, d := range docs {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, d...)
		}
		return "POST", "/v1/apply", append(b, ']')
	default:
		kind, spec := m.spec("")
		return "PUT", "/v1/" + string(kind) + "s/" + url.PathEscape(m.name()) + cas, spec
	}
}

func decode(b []byte, v any) error {
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	return d.Decode(v)
}

func sortedKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
