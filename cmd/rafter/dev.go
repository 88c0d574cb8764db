package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rafterlb/rafter/agent"
	"github.com/rafterlb/rafter/client"
	"github.com/rafterlb/rafter/cmd/rafter/internal/cli"
	"github.com/rafterlb/rafter/secrets"
)

// devOptions are `rafter dev`'s flags.
type devOptions struct {
	Dir       string // state directory; "" = a new temporary one
	Keep      bool   // keep the state directory on exit
	AdminPort int
	RaftPort  int
	HTTPPort  int // the demo listener's port
	AccessLog string
	LogLevel  string
	// SecretsKeyFile is every node's --secrets-key-file; "" writes a new
	// one into the state directory.
	SecretsKeyFile string
}

func defaultDevOptions() devOptions {
	return devOptions{AdminPort: 7700, RaftPort: 7701, HTTPPort: 8080, AccessLog: "off", LogLevel: "warn"}
}

func newDevCmd(s cli.Streams) *cobra.Command {
	o := defaultDevOptions()
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a three-node cluster on 127.0.0.1-3 with demo backends (what `make run` starts)",
		Long: "Start three nodes in this process on 127.0.0.1, 127.0.0.2 and 127.0.0.3 (zones a, b,\n" +
			"c; admin port 7700, Raft port 7701 on each), three demo backends, and apply a sample\n" +
			"manifest: listener web on port 8080, pool demo, route demo. While it runs, type\n" +
			"`stop n2` to kill a node and `start n2` to bring it back. Ctrl-C stops everything;\n" +
			"the state directory is removed unless --keep.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDev(cmd.Context(), o, s)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Dir, "dir", o.Dir, "state directory (default: a new temporary directory)")
	f.BoolVar(&o.Keep, "keep", o.Keep, "keep the state directory on exit")
	f.IntVar(&o.AdminPort, "admin-port", o.AdminPort, "admin API port on every node")
	f.IntVar(&o.RaftPort, "raft-port", o.RaftPort, "Raft port on every node")
	f.IntVar(&o.HTTPPort, "http-port", o.HTTPPort, "port of the demo listener")
	f.StringVar(&o.AccessLog, "access-log", o.AccessLog, "access log of every node: off, stdout or a file path")
	f.StringVar(&o.LogLevel, "log-level", o.LogLevel, "debug, info, warn or error (logs go to stderr)")
	f.StringVar(&o.SecretsKeyFile, "secrets-key-file", o.SecretsKeyFile, "the nodes' secrets key (default: a new one in the state directory)")
	return cmd
}

func runDev(ctx context.Context, o devOptions, s cli.Streams) (err error) {
	dir := o.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "rafter-dev-"); err != nil {
			return err
		}
	}
	if !o.Keep {
		defer func() {
			if rerr := os.RemoveAll(dir); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}()
	}

	backends, err := agent.StartDemoBackends(len(agent.DevZones))
	if err != nil {
		return err
	}
	defer backends.Close()

	var join []string
	for i := range agent.DevZones {
		join = append(join, net.JoinHostPort(agent.DevIP(i), strconv.Itoa(o.AdminPort)))
	}
	keyFile := o.SecretsKeyFile
	if keyFile == "" {
		keyFile = filepath.Join(dir, "secrets.key")
		if _, err := os.Stat(keyFile); errors.Is(err, os.ErrNotExist) {
			if _, err := secrets.WriteKeyFile(keyFile); err != nil {
				return err
			}
		}
	}
	cfgs := agent.DevConfigs(dir, o.AdminPort, o.RaftPort, join)
	for i := range cfgs {
		cfgs[i].SecretsKeyFile = keyFile
		cfgs[i].AccessLog, cfgs[i].LogLevel = o.AccessLog, o.LogLevel
		cfgs[i].Stdout, cfgs[i].Stderr = s.Out, s.Err
	}
	// One logger for all nodes: each line names its node.
	log := slog.New(slog.NewJSONHandler(s.Err, &slog.HandlerOptions{Level: cfgs[0].SlogLevel()}))
	for i := range cfgs {
		cfgs[i].Logger = log
	}

	dc := agent.NewDevCluster(cfgs)
	if err := dc.StartAll(ctx); err != nil {
		return errors.Join(err, dc.StopAll())
	}
	defer func() { err = errors.Join(err, dc.StopAll()) }()

	c := client.New("http://"+join[0], "", nil)
	manifest := agent.DemoManifest(o.HTTPPort, backends.Addrs)
	if err := agent.ApplyWhenLeader(ctx, c, manifest, 60*time.Second); err != nil {
		return fmt.Errorf("applying the demo manifest: %w", err)
	}
	fmt.Fprint(s.Out, tryThis(o, dir, join))

	// Commands typed on stdin stop and start nodes. The reader goroutine
	// may stay blocked in Read until the process exits: stdin cannot be
	// interrupted, and nothing waits for it.
	lines := make(chan string)
	if s.In != nil {
		go readLines(s.In, lines)
	}
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(s.Out, "stopping the dev cluster...")
			return nil
		case e := <-dc.Exits():
			return fmt.Errorf("node %s stopped unexpectedly: %w", e.ID, e.Err)
		case line, ok := <-lines:
			if !ok {
				lines = nil
				continue
			}
			devCommand(ctx, dc, s.Out, line)
		}
	}
}

func readLines(r io.Reader, out chan<- string) {
	defer close(out)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		out <- sc.Text()
	}
}

func devCommand(ctx context.Context, dc *agent.DevCluster, w io.Writer, line string) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return
	}
	switch {
	case len(f) == 2 && (f[0] == "stop" || f[0] == "kill"):
		if err := dc.Stop(f[1]); err != nil {
			fmt.Fprintln(w, "error:", err)
			return
		}
		fmt.Fprintf(w, "%s stopped (type `start %s` to bring it back)\n", f[1], f[1])
	case len(f) == 2 && f[0] == "start":
		if err := dc.Start(ctx, f[1]); err != nil {
			fmt.Fprintln(w, "error:", err)
			return
		}
		fmt.Fprintf(w, "%s started\n", f[1])
	default:
		fmt.Fprintln(w, "commands: stop NODE, start NODE (nodes n1, n2, n3); Ctrl-C quits")
	}
}
