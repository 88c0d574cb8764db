package upstreamtls

import (
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rafterlb/rafter/fsm"
	"github.com/rafterlb/rafter/internal/testutil"
)

func TestLoad(t *testing.T) {
	pki := testutil.NewPKI(t)
	dir := t.TempDir()
	big := filepath.Join(dir, "big.pem")
	if err := os.WriteFile(big, []byte(strings.Repeat(string(pki.CAPEM), maxCAFile/len(pki.CAPEM)+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	// A DER SEQUENCE that passes the structural check of validation but
	// is no certificate: the data plane refuses it when loading.
	notCert := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x03, 0x02, 0x01, 0x01}}))
	if _, err := fsm.CheckCAPEM([]byte(notCert)); err != nil {
		t.Fatalf("structural check refused a DER sequence: %v", err)
	}
	tests := []struct {
		name string
		spec fsm.PoolTLS
		err  string // substring; "" means success
	}{
		{"inline ca", fsm.PoolTLS{CA: string(pki.CAPEM)}, ""},
		{"ca file and client cert", fsm.PoolTLS{CAFile: pki.CAFile, CertFile: pki.ClientCertFile, KeyFile: pki.ClientKeyFile, ServerName: "b.internal"}, ""},
		{"system roots", fsm.PoolTLS{}, ""},
		{"missing ca file", fsm.PoolTLS{CAFile: filepath.Join(dir, "nope.pem")}, "tls.ca_file"},
		{"ca file too large", fsm.PoolTLS{CAFile: big}, "larger than"},
		{"not a certificate", fsm.PoolTLS{CA: notCert}, "tls.ca: certificate 0"},
		{"key not matching", fsm.PoolTLS{CertFile: pki.ClientCertFile, KeyFile: pki.CAFile}, "tls.cert_file/key_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(&tt.spec)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want one mentioning %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (tt.spec.CA != "" || tt.spec.CAFile != "") != (cfg.RootCAs != nil) {
				t.Errorf("roots %v for %+v", cfg.RootCAs, tt.spec)
			}
			if (tt.spec.CertFile != "") != (len(cfg.Certificates) == 1) {
				t.Errorf("%d client certificates", len(cfg.Certificates))
			}
			if cfg.ServerName != tt.spec.ServerName || cfg.MinVersion == 0 || cfg.InsecureSkipVerify {
				t.Errorf("config %+v", cfg)
			}
		})
	}
}

func TestForBackend(t *testing.T) {
	base, err := Load(&fsm.PoolTLS{})
	if err != nil {
		t.Fatal(err)
	}
	a, b := ForBackend(base, "10.0.0.1:8443"), ForBackend(base, "api.internal:443")
	if a.ServerName != "10.0.0.1" || b.ServerName != "api.internal" {
		t.Errorf("server names %q, %q", a.ServerName, b.ServerName)
	}
	if a.ClientSessionCache == nil || a.ClientSessionCache == b.ClientSessionCache || base.ClientSessionCache != nil {
		t.Errorf("each backend needs a session cache of its own")
	}
	named, _ := Load(&fsm.PoolTLS{ServerName: "pay.internal"})
	if got := ForBackend(named, "10.0.0.1:8443").ServerName; got != "pay.internal" {
		t.Errorf("server_name overridden: %q", got)
	}
}
