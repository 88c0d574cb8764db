package fsm

import (
	"bytes"
	"fmt"
	"io"
	"testing"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// bigConfig holds routes routes over one listener and pools pools sharing
// backends backends.
func bigConfig(b testing.TB, routes, pools, backends int) *Config {
	b.Helper()
	objs := []Object{obj(KindListener, "web", `{"port":8080}`)}
	per := backends / pools
	for p := range pools {
		var bes bytes.Buffer
		for i := range per {
			if i > 0 {
				bes.WriteByte(',')
			}
			fmt.Fprintf(&bes, `{"addr":"10.%d.%d.%d:8080","zone":"z%d","weight":%d}`, p/250, p%250, i%250+1+i/250, i%3, 1+i%5)
		}
		objs = append(objs, obj(KindPool, fmt.Sprintf("pool-%04d", p), `{"balancer":"least_request","health_check":{"path":"/healthz"},"backends":[`+bes.String()+`]}`))
	}
	for r := range routes {
		objs = append(objs, obj(KindRoute, fmt.Sprintf("route-%05d", r), fmt.Sprintf(
			`{"listener":"web","match":{"hosts":["svc%d.example.com"],"path":{"prefix":"/api/%d"}},"action":{"split":[{"pool":"pool-%04d","weight":100}]},"retries":{"attempts":1,"on":["connect-failure"]}}`,
			r, r, r%pools)))
	}
	c, err := Next(Empty(), 1, ApplyCommand(objs))
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkNextPut is one route update in a document of 10,000 routes: the
// cost of a typical write on the leader (pre-check) and on every follower.
func BenchmarkNextPut(b *testing.B) {
	c := bigConfig(b, 10000, 100, 1000)
	cmds := make([]*Command, 64)
	for i := range cmds {
		cmds[i] = PutCommand(obj(KindRoute, fmt.Sprintf("route-%05d", i*97), fmt.Sprintf(
			`{"listener":"web","priority":%d,"action":{"split":[{"pool":"pool-0001","weight":1}]}}`, i)), nil)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := Next(c, c.Index+1, cmds[i%len(cmds)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSnapshot10k writes and reads a document of 10,000 routes and
// 10,000 backends.
func BenchmarkSnapshot10k(b *testing.B) {
	c := bigConfig(b, 10000, 100, 10000)
	var buf bytes.Buffer
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		buf.Reset()
		if err := WriteSnapshot(&buf, c); err != nil {
			b.Fatal(err)
		}
		if _, err := ReadSnapshot(bytes.NewReader(buf.Bytes())); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(buf.Len()), "bytes")
}
