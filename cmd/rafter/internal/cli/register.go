package cli

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rafterlb/rafter/client"
	"github.com/rafterlb/rafter/cluster/tlsutil"
)

// registerOpts are `rafter register`'s flags. --addr is the backend here,
// so the admin API addresses come from --api or RAFTER_ADDR.
type registerOpts struct {
	api                    string
	token                  string
	tlsCA, tlsCert, tlsKey string
	pool, addr, zone       string
	weight                 int
	ttl                    time.Duration
}

func newRegisterCmd(s Streams) *cobra.Command {
	o := &registerOpts{}
	cmd := &cobra.Command{
		Use:   "register --pool POOL --addr HOST:PORT [--zone ZONE] [--ttl 30s] [--weight N]",
		Short: "Register a backend in a pool and keep it registered until stopped",
		Long: "Register a backend under a TTL lease and keep the lease alive (every TTL/3)\n" +
			"until SIGTERM or SIGINT, then revoke it: the backend drains, then leaves the pool.\n" +
			"Admin addresses come from --api or RAFTER_ADDR, comma separated; on errors the\n" +
			"next one is tried, and a lost lease is replaced by a new registration. Suits a\n" +
			"sidecar container or a systemd unit (Type=simple, KillSignal=SIGTERM).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRegister(cmd.Context(), s, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.pool, "pool", "", "pool to join (required)")
	f.StringVar(&o.addr, "addr", "", "this backend's address, host:port (required)")
	f.StringVar(&o.zone, "zone", "", "this backend's availability zone")
	f.IntVar(&o.weight, "weight", 1, "balancing weight, 0..1000")
	f.DurationVar(&o.ttl, "ttl", 30*time.Second, "lease TTL (2s..24h): how long the backend stays after its keepalives stop")
	f.StringVar(&o.api, "api", "", "admin API addresses, comma separated (env RAFTER_ADDR, default "+client.DefaultAddr+")")
	f.StringVar(&o.token, "token", "", "bearer token (env RAFTER_TOKEN)")
	f.StringVar(&o.tlsCA, "tls-ca", "", "CA certificate to verify an https admin API (env RAFTER_TLS_CA)")
	f.StringVar(&o.tlsCert, "tls-cert", "", "client certificate (env RAFTER_TLS_CERT)")
	f.StringVar(&o.tlsKey, "tls-key", "", "client certificate key (env RAFTER_TLS_KEY)")
	return cmd
}

func runRegister(ctx context.Context, s Streams, o *registerOpts) error {
	pick := func(v, env string) string {
		if v != "" {
			return v
		}
		return s.Getenv(env)
	}
	if o.pool == "" {
		return fmt.Errorf("--pool: required")
	}
	if o.addr == "" {
		return fmt.Errorf("--addr: required (this backend's host:port)")
	}
	var tc *tls.Config
	ca, cert, key := pick(o.tlsCA, "RAFTER_TLS_CA"), pick(o.tlsCert, "RAFTER_TLS_CERT"), pick(o.tlsKey, "RAFTER_TLS_KEY")
	if ca != "" || cert != "" || key != "" {
		c, err := tlsutil.ClientConfig(ca, cert, key)
		if err != nil {
			return fmt.Errorf("--tls-ca/--tls-cert/--tls-key: %w", err)
		}
		tc = c
	}
	token := pick(o.token, "RAFTER_TOKEN")
	var clients []*client.Client
	for _, a := range strings.Split(pick(o.api, "RAFTER_ADDR"), ",") {
		if a = strings.TrimSpace(a); a != "" {
			clients = append(clients, client.New(a, token, tc))
		}
	}
	if len(clients) == 0 {
		clients = append(clients, client.New("", token, tc))
	}
	if o.weight < 1 || o.weight > 1000 {
		// 0 would mean "no new traffic", which is not what registering is for.
		return fmt.Errorf("--weight: %d is out of range 1..1000", o.weight)
	}
	log := slog.New(slog.NewTextHandler(s.Err, nil))
	reg, err := client.NewRegistrar(client.RegistrarConfig{
		Clients: clients,
		Pool:    o.pool,
		Addr:    o.addr,
		Zone:    o.zone,
		Weight:  o.weight,
		TTL:     o.ttl,
		Logger:  log,
	})
	if err != nil {
		return flagError(err)
	}
	fmt.Fprintf(s.Out, "registering %s in pool %s (ttl %v); stop with SIGTERM or Ctrl-C to deregister\n", o.addr, o.pool, o.ttl)
	return reg.Run(ctx)
}

// flagError names the flag behind a registrar configuration error.
func flagError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "registrar: ")
	if f, rest, ok := strings.Cut(msg, ": "); ok {
		if f == "clients" {
			f = "api"
		}
		return fmt.Errorf("--%s: %s", f, rest)
	}
	return err
}
