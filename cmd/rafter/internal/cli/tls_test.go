package cli

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rafterlb/rafter/cluster/tlsutil"
)

// The admin API requires a client certificate with TLS on; the CLI
// presents the cli.pem that `rafter tls init` writes, taken from the
// environment.
func TestCLIPresentsClientCertificate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	out, err := runCLI(t, "", "", "tls", "init", "--dir", dir, "--nodes", "n1=127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"cli.pem", "cli-key.pem", "RAFTER_TLS_CERT="} {
		if !strings.Contains(out, want) {
			t.Errorf("tls init output does not mention %s:\n%s", want, out)
		}
	}
	srvTLS, err := tlsutil.AdminServerConfig(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "n1.pem"), filepath.Join(dir, "n1-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, statusJSON)
	}))
	srv.TLS = srvTLS
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	t.Cleanup(srv.Close)

	run := func(env map[string]string) (string, error) {
		var out, errOut bytes.Buffer
		env["RAFTER_ADDR"] = srv.URL
		s := Streams{In: strings.NewReader(""), Out: &out, Err: &errOut, Getenv: func(k string) string { return env[k] }}
		err := Execute(context.Background(), NewRoot(s), []string{"status"})
		return out.String(), err
	}
	ca := filepath.Join(dir, "ca.pem")
	if out, err := run(map[string]string{"RAFTER_TLS_CA": ca,
		"RAFTER_TLS_CERT": filepath.Join(dir, tlsutil.CLIFile), "RAFTER_TLS_KEY": filepath.Join(dir, tlsutil.CLIKeyFile)}); err != nil || !strings.Contains(out, "n1") {
		t.Fatalf("status with cli.pem: %v\n%s", err, out)
	}
	if _, err := run(map[string]string{"RAFTER_TLS_CA": ca}); err == nil {
		t.Fatal("status without a client certificate succeeded")
	}
}
