package fsm

import (
	"errors"
	"reflect"
	"testing"
)

func FuzzParseManifest(f *testing.F) {
	seeds := []string{
		sampleManifest,
		"",
		"---\n",
		`{"kind":"pool","name":"a","spec":{"backends":[{"addr":"10.0.0.1:80","weight":2}]}}`,
		`[{"kind":"listener","name":"a","spec":{"port":80,"limits":{"read_timeout":"1s"}}},{"kind":"route","name":"r","spec":{"listener":"a","action":{"respond":{"status":200,"body":"ok"}}}}]`,
		"kind: route\nname: r\nspec:\n  listener: web\n  match: {hosts: ['*.a.com'], path: {regex: '^/x$'}, methods: [GET], headers: [{name: X-A, value: b}], query: [{name: q}]}\n  action: {redirect: {code: 301, path: /y}}\n  retries: {attempts: 2, on: ['503', reset]}\n",
		"kind: pool\nname: h\nspec: {balancer: hash, hash: {cookie: s}, health_check: {path: /h, interval: 3s}, outlier: {consecutive_5xx: 3}}\n",
		"kind: vip\nname: v\nspec: {provider: linux, address: 10.0.0.1/24, candidates: [n1, n2], home_node: n1}\n",
		"kind: listener\nname: b\nspec: {port: \"80\"}\n",
		"kind: pool\nname: a\nspec: &a {}\n---\nkind: pool\nname: b\nspec: *a\n",
		"kind: route\nname: r\nspec: {listener: l, action: {respond: {status: 200, body: \"a\\u0000b\\u2028\", headers: {X: 'yes'}}}}\n",
		"kind: certificate\nname: c\nspec: {acme: {domains: [a.example.com, '*.b.example.com'], issuer: le}}\n",
		"kind: certificate\nname: c\nspec: {cert: \"-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----\\n\", key: x}\n",
		"kind: listener\nname: t\nspec: {port: 443, protocol: https, tls: {certificates: [c], default: c, policy: {min_version: '1.3'}, hsts: {max_age: 600}}}\n",
		"kind: listener\nname: p\nspec: {port: 80, https_redirect: {port: 443, code: 308}}\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := ParseManifest(data)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error is not an invalid *FieldError: %v", err)
			}
			return
		}
		for _, format := range []string{"yaml", "json"} {
			out, err := MarshalManifest(objs, format)
			if err != nil {
				t.Fatalf("marshal %s: %v", format, err)
			}
			back, err := ParseManifest(out)
			if err != nil {
				t.Fatalf("parse of exported %s: %v\n%s", format, err, out)
			}
			if !reflect.DeepEqual(back, objs) {
				t.Fatalf("%s round trip differs:\n%s", format, out)
			}
		}
		// Accepted objects never make Next panic, whatever their references.
		_, _ = Next(Empty(), 1, ApplyCommand(objs))
	})
}

func FuzzDecodeCommand(f *testing.F) {
	for _, cmd := range commandLog() {
		b, err := EncodeCommand(cmd)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"type":"restore","v":1,"config":{"routes":{"r":null},"pools":{"p":{"name":"p","spec":{}}}}}`))
	f.Add([]byte(`{"type":"restore","v":1,"config":{"assignments":{"a":null},"zones":{"z":null}}}`))
	f.Add([]byte(`{"type":"assign","v":1,"assignment":{"vip":"v","holder":"n1"},"time":"2025-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"type":"put","v":1,"objects":[{"kind":"pool","name":"p","spec":null}]}`))
	f.Add([]byte(`{"type":"lease_grant","v":1,"ttl":"30s","time":"2025-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"type":"lease_revoke","v":1,"id":3,"drain":true,"time":"2025-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"type":"lease_expire","v":1,"ids":[3,4],"time":"2025-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"type":"backend_register","v":1,"pool":"app","backend":{"addr":"10.0.0.9:80","lease":3}}`))
	f.Add([]byte(`{"type":"backend_deregister","v":1,"pool":"app","backend":{"addr":"10.0.0.9:80"}}`))
	f.Add([]byte(`{"type":"certificate_issue","v":1,"name":"c","spec_index":3,"cert":"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n","encrypted_key":"rs1:0123456789abcdef:AA","time":"2025-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"type":"certificate_issue","v":1,"name":"c","spec_index":3,"error":"rate limited","time":"2025-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"type":"ticket_keys_rotate","v":1,"key":"rs1:0123456789abcdef:AA","prev":0,"time":"2025-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"type":"put","v":1,"objects":[{"kind":"certificate","name":"c","spec":{"acme":{"domains":["a.example.com"],"issuer":"le"}}}]}`))
	f.Add([]byte(`{"type":"restore","v":1,"config":{"leases":{"7":{"id":7,"ttl":"1m","granted_at":"2025-01-01T00:00:00Z"}},"pools":{"p":{"name":"p","spec":{"backends":[{"addr":"10.0.0.1:80","lease":7}]}}}}}`))
	base := Empty()
	for i, cmd := range commandLog() {
		if next, err := Next(base, uint64(i+1), cmd); err == nil {
			base = next
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cmd, err := DecodeCommand(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnsupportedVersion) && !errors.Is(err, ErrCorruptEntry) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if _, err := EncodeCommand(cmd); err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		for _, c := range []*Config{Empty(), base} {
			next, err := Next(c, c.Index+1, cmd)
			if err != nil {
				continue
			}
			// Whatever Next accepts can be snapshotted and read back.
			b := snapshotBytes(t, next)
			if _, err := ReadSnapshot(bytesReader(b)); err != nil {
				t.Fatalf("snapshot of an accepted document: %v", err)
			}
		}
	})
}
