package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"

	"github.com/rafterlb/rafter/client"
	"github.com/rafterlb/rafter/cluster/tlsutil"
)

// Streams are the process's standard streams and environment, passed in so
// that tests run commands without touching the real ones.
type Streams struct {
	In       io.Reader
	Out, Err io.Writer
	Getenv   func(string) string
}

// OSStreams are the real ones.
func OSStreams() Streams {
	return Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr, Getenv: os.Getenv}
}

// NewRoot builds the `rafter` command with every API command; main adds
// the commands that run nodes (agent, dev) through extra.
func NewRoot(s Streams, extra ...*cobra.Command) *cobra.Command {
	if s.Getenv == nil {
		s.Getenv = func(string) string { return "" }
	}
	root := &cobra.Command{
		Use:           "rafter",
		Short:         "rafter: a highly available L7 load balancer whose nodes share configuration through Raft",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.Err)
	root.AddCommand(
		newStatusCmd(s),
		newApplyCmd(s),
		newGetCmd(s),
		newDeleteCmd(s),
		newNodeCmd(s),
		newSnapshotCmd(s),
		newZoneCmd(s),
		newVIPCmd(s),
		newRolloutCmd(s),
		newRegisterCmd(s),
		newTLSCmd(s),
		newKeygenCmd(s),
		newCertificateCmd(s),
		newVersionCmd(s),
	)
	root.AddCommand(extra...)
	return root
}

// Execute runs the root command with args (without the program name) and
// returns the error to print; it is what main and tests call.
func Execute(ctx context.Context, root *cobra.Command, args []string) error {
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

// apiOpts are the flags every API command takes.
type apiOpts struct {
	addr, token            string
	tlsCA, tlsCert, tlsKey string
	timeout                time.Duration
}

func addAPIFlags(cmd *cobra.Command, s Streams) *apiOpts {
	o := &apiOpts{}
	f := cmd.Flags()
	f.StringVar(&o.addr, "addr", "", "admin API address (env RAFTER_ADDR, default "+client.DefaultAddr+")")
	f.StringVar(&o.token, "token", "", "bearer token (env RAFTER_TOKEN)")
	f.StringVar(&o.tlsCA, "tls-ca", "", "CA certificate to verify an https admin API (env RAFTER_TLS_CA)")
	f.StringVar(&o.tlsCert, "tls-cert", "", "client certificate (env RAFTER_TLS_CERT)")
	f.StringVar(&o.tlsKey, "tls-key", "", "client certificate key (env RAFTER_TLS_KEY)")
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "give up on the API after this long")
	return o
}

func (o *apiOpts) client(s Streams) (*client.Client, error) {
	pick := func(v, env string) string {
		if v != "" {
			return v
		}
		return s.Getenv(env)
	}
	addr := pick(o.addr, "RAFTER_ADDR")
	ca, cert, key := pick(o.tlsCA, "RAFTER_TLS_CA"), pick(o.tlsCert, "RAFTER_TLS_CERT"), pick(o.tlsKey, "RAFTER_TLS_KEY")
	var tc *tls.Config
	if ca != "" || cert != "" || key != "" {
		c, err := tlsutil.ClientConfig(ca, cert, key)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca/--tls-cert/--tls-key: %w", err)
		}
		tc = c
	}
	return client.New(addr, pick(o.token, "RAFTER_TOKEN"), tc), nil
}

func (o *apiOpts) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	if o.timeout <= 0 {
		return context.WithCancel(parent)
	}
	return context.WithTimeout(parent, o.timeout)
}

// withClient wraps an API command's body: client construction, timeout,
// and one readable line for a deadline.
func withClient(s Streams, o *apiOpts, fn func(ctx context.Context, c *client.Client, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := o.client(s)
		if err != nil {
			return err
		}
		ctx, cancel := o.ctx(cmd.Context())
		defer cancel()
		err = fn(ctx, c, args)
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%s did not answer within %v: %w", c.Addr(), o.timeout, err)
		}
		return err
	}
}

func newVersionCmd(s Streams) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this binary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(s.Out, Version())
			return err
		},
	}
}

// Version describes this binary from its build information.
func Version() string {
	v, rev, dirty := "(devel)", "", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, st := range bi.Settings {
			switch st.Key {
			case "vcs.revision":
				rev = st.Value
			case "vcs.modified":
				dirty = st.Value == "true"
			}
		}
	}
	out := fmt.Sprintf("rafter %s %s %s/%s", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		out += " rev " + rev
		if dirty {
			out += "+dirty"
		}
	}
	return out
}
