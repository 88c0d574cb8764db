package dataplane

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"testing"

	"github.com/rafterlb/rafter/fsm"
)

// BenchmarkSNIPick: the per-handshake lookup over a listener with 64
// certificates of 16 names each allocates nothing.
func BenchmarkSNIPick(b *testing.B) {
	loaded := map[string]*tls.Certificate{}
	var names []string
	for i := range 64 {
		var dns []string
		for j := range 15 {
			dns = append(dns, fmt.Sprintf("h%d.s%d.example.com", j, i))
		}
		dns = append(dns, fmt.Sprintf("*.w%d.example.com", i))
		n := fmt.Sprintf("c%d", i)
		loaded[n] = &tls.Certificate{Leaf: &x509.Certificate{DNSNames: dns}}
		names = append(names, n)
	}
	t := buildSNI(&fsm.ListenerTLS{Certificates: names}, loaded)
	for _, sni := range []string{"h7.s40.example.com", "a.b.w63.example.com", "nothing.example.org"} {
		b.Run(sni, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if t.pick(sni) == nil {
					b.Fatal("no certificate")
				}
			}
		})
	}
}
