package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rafterlb/rafter/api"
	"github.com/rafterlb/rafter/client"
)

// getCertificates prints the certificate table: names, the domains of the
// served chain, when it expires, where it comes from, who uses it.
func getCertificates(ctx context.Context, c *client.Client, w io.Writer, names []string, now time.Time) error {
	var items []api.Item
	if len(names) == 1 {
		it, _, err := c.Certificate(ctx, names[0])
		if err != nil {
			return err
		}
		items = []api.Item{it}
	} else {
		var err error
		if items, _, err = c.Certificates(ctx); err != nil {
			return err
		}
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "NAME\tSOURCE\tDOMAINS\tNOT AFTER\tLISTENERS\tINDEX")
	for _, it := range items {
		v := it.Certificate
		if v == nil {
			v = &api.CertificateView{}
		}
		source := dash(v.Source)
		if s := acmeState(v.ACME); s != "" {
			source += " (" + s + ")"
		} else if v.Source == "acme" {
			switch {
			case v.Error != "":
				source += " (error: " + v.Error + ")"
			case !v.Issued:
				source += " (pending)"
			case v.Stale:
				source += " (renewing)"
			}
		}
		notAfter := "-"
		if !v.NotAfter.IsZero() {
			notAfter = v.NotAfter.UTC().Format(time.RFC3339)
			if now.After(v.NotAfter) {
				notAfter += " (expired)"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", it.Name, source, joinOr(v.Domains, "-"), notAfter, joinOr(v.Listeners, "-"), it.ModifyIndex)
	}
	return tw.Flush()
}

func newCertificateCmd(s Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certificate",
		Short: "Store TLS certificates https listeners name",
	}
	set := &cobra.Command{
		Use:   "set NAME --cert CHAIN.pem --key KEY.pem",
		Short: "Create or replace a certificate from PEM files",
		Long: "set stores a PEM chain (leaf first) and its private key as certificate NAME.\n" +
			"The node checks the pair (the key matches, not expired) and seals the key with the\n" +
			"cluster's secrets key (--secrets-key-file) before it enters the Raft log; no read\n" +
			"ever returns it. Listeners that name NAME serve the new chain from their next\n" +
			"handshake, without rebinding.",
		Args: cobra.ExactArgs(1),
	}
	o := addAPIFlags(set, s)
	var certFile, keyFile string
	set.Flags().StringVar(&certFile, "cert", "", "PEM certificate chain, leaf first (required)")
	set.Flags().StringVar(&keyFile, "key", "", "PEM private key (required)")
	set.RunE = withClient(s, o, func(ctx context.Context, c *client.Client, args []string) error {
		if certFile == "" || keyFile == "" {
			return fmt.Errorf("--cert and --key are required")
		}
		cert, err := readPEMFile("--cert", certFile)
		if err != nil {
			return err
		}
		key, err := readPEMFile("--key", keyFile)
		if err != nil {
			return err
		}
		idx, err := c.PutCertificate(ctx, args[0], cert, key, nil)
		if err != nil {
			return err
		}
		fmt.Fprintf(s.Out, "certificate/%s stored (index %d)\n", args[0], idx)
		return nil
	})
	cmd.AddCommand(set)
	return cmd
}

// maxPEMFile bounds what set reads; the API refuses more anyway.
const maxPEMFile = 256 << 10

func readPEMFile(flag, path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flag, err)
	}
	if st.Size() > maxPEMFile {
		return "", fmt.Errorf("%s %s: %d bytes, more than a certificate or key", flag, path, st.Size())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flag, err)
	}
	if !strings.Contains(string(b), "-----BEGIN ") {
		return "", fmt.Errorf("%s %s: not PEM", flag, path)
	}
	return string(b), nil
}
