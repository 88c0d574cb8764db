package fsm

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"
)

// testCAPEM is one self-signed certificate in PEM.
func testCAPEM(t testing.TB) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func TestPoolTLSAndProxyProtocolValidation(t *testing.T) {
	ca := testCAPEM(t)
	keyPEM := "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
	garbled := strings.Replace(ca, "MII", "XII", 1)
	bad := []struct {
		kind        Kind
		spec, field string
	}{
		{KindPool, `{"send_proxy_protocol":"v3"}`, "spec.send_proxy_protocol"},
		{KindPool, `{"tls":{"ca":"hello"}}`, "spec.tls.ca"},
		{KindPool, `{"tls":{"ca":` + jsonString(keyPEM) + `}}`, "spec.tls.ca"},
		{KindPool, `{"tls":{"ca":` + jsonString(garbled) + `}}`, "spec.tls.ca"},
		{KindPool, `{"tls":{"ca":` + jsonString(ca+"trailing") + `}}`, "spec.tls.ca"},
		{KindPool, `{"tls":{"ca":` + jsonString(strings.Repeat(ca, maxCAPEMLen/len(ca)+1)) + `}}`, "spec.tls.ca"},
		{KindPool, `{"tls":{"ca":` + jsonString(ca) + `,"ca_file":"/etc/ca.pem"}}`, "spec.tls.ca_file"},
		{KindPool, `{"tls":{"ca_file":"/etc/ca.pem","insecure_skip_verify":true}}`, "spec.tls.insecure_skip_verify"},
		{KindPool, `{"tls":{"cert_file":"/c.pem"}}`, "spec.tls.key_file"},
		{KindPool, `{"tls":{"key_file":"/k.pem"}}`, "spec.tls.cert_file"},
		{KindPool, `{"tls":{"cert_file":"/c.pem\n","key_file":"/k.pem"}}`, "spec.tls.cert_file"},
		{KindPool, `{"tls":{"ca_file":"` + strings.Repeat("a", maxFileLen+1) + `"}}`, "spec.tls.ca_file"},
		{KindPool, `{"tls":{"server_name":"bad name"}}`, "spec.tls.server_name"},
		{KindPool, `{"tls":{"server_name":"a.com:443"}}`, "spec.tls.server_name"},
		{KindPool, `{"tls":{"server_name":"` + strings.Repeat("a", 300) + `"}}`, "spec.tls.server_name"},
		{KindPool, `{"tls":{"bogus":1}}`, "spec.tls.bogus"},
		{KindListener, `{"port":80,"proxy_protocol":{}}`, "spec.proxy_protocol.trusted"},
		{KindListener, `{"port":80,"proxy_protocol":{"trusted":[]}}`, "spec.proxy_protocol.trusted"},
		{KindListener, `{"port":80,"proxy_protocol":{"trusted":["10.0.0.0/8","nope"]}}`, "spec.proxy_protocol.trusted[1]"},
		{KindListener, `{"port":80,"proxy_protocol":{"trusted":["10.0.0.0/33"]}}`, "spec.proxy_protocol.trusted[0]"},
		{KindListener, `{"port":80,"proxy_protocol":{"trusted":["fe80::1%eth0"]}}`, "spec.proxy_protocol.trusted[0]"},
		{KindListener, `{"port":80,"proxy_protocol":{"trusted":["10.0.0.0/8"],"timeout":"2m"}}`, "spec.proxy_protocol.timeout"},
		{KindListener, `{"port":80,"proxy_protocol":{"trusted":["10.0.0.0/8"],"timeout":"1ms"}}`, "spec.proxy_protocol.timeout"},
		{KindListener, `{"port":80,"proxy_protocol":{"trusted":["10.0.0.0/8"],"timeout":"-1s"}}`, "spec.proxy_protocol.timeout"},
		{KindListener, `{"port":80,"proxy_protocol":{"trusted":["10.0.0.0/8"],"v2":true}}`, "spec.proxy_protocol.v2"},
	}
	many := make([]string, maxTrustedCIDRs+1)
	for i := range many {
		many[i] = fmt.Sprintf("%q", fmt.Sprintf("10.%d.%d.0/24", i/256, i%256))
	}
	bad = append(bad, struct {
		kind        Kind
		spec, field string
	}{KindListener, `{"port":80,"proxy_protocol":{"trusted":[` + strings.Join(many, ",") + `]}}`, "spec.proxy_protocol.trusted"})

	base := validationBase(t)
	for i, tt := range bad {
		t.Run(fmt.Sprintf("bad%d_%s", i, tt.field), func(t *testing.T) {
			_, err := Next(base, base.Index+1, PutCommand(obj(tt.kind, "x", tt.spec), nil))
			wantFieldError(t, err, tt.field, ErrInvalid)
		})
	}

	good := []struct {
		kind Kind
		spec string
	}{
		{KindPool, `{"send_proxy_protocol":"v1"}`},
		{KindPool, `{"send_proxy_protocol":"v2","tls":{}}`},
		{KindPool, `{"tls":{"ca":` + jsonString(ca+ca) + `,"server_name":"api.internal","cert_file":"/c.pem","key_file":"/k.pem"}}`},
		{KindPool, `{"tls":{"ca_file":"/etc/ca.pem","server_name":"10.0.0.1"}}`},
		{KindPool, `{"tls":{"insecure_skip_verify":true}}`},
		{KindListener, `{"port":80,"proxy_protocol":{"trusted":["10.0.0.0/8","192.168.1.7","::1","fd00::/8"],"required":true,"timeout":"3s"}}`},
		{KindListener, `{"port":443,"protocol":"https","tls":{"cert_file":"c","key_file":"k"},"proxy_protocol":{"trusted":["0.0.0.0/0"]}}`},
	}
	for i, tt := range good {
		t.Run(fmt.Sprintf("good%d", i), func(t *testing.T) {
			next, err := Next(base, base.Index+1, PutCommand(obj(tt.kind, "x", tt.spec), nil))
			if err != nil {
				t.Fatalf("refused a valid %s: %v", tt.kind, err)
			}
			if _, ok := next.Get(tt.kind, "x"); !ok {
				t.Fatalf("not stored")
			}
		})
	}
}

func TestParseTrusted(t *testing.T) {
	for in, want := range map[string]string{
		"10.1.2.3/8": "10.0.0.0/8", "10.1.2.3": "10.1.2.3/32", "::1": "::1/128", "fd00::1/8": "fd00::/8",
	} {
		got, err := ParseTrusted(in)
		if err != nil || got.String() != want {
			t.Errorf("ParseTrusted(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
}
