package agent

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafterlb/rafter/cluster"
	"github.com/rafterlb/rafter/cluster/awsec2"
	"github.com/rafterlb/rafter/cluster/discovery"
	"github.com/rafterlb/rafter/fsm"
)

// ec2Actions are the EC2 actions the enabled features call.
func ec2Actions(cfg Config) []string {
	var out []string
	if cfg.Discovery {
		out = append(out, awsec2.ActionDescribeInstances)
	}
	if !cfg.VIP {
		return out
	}
	for _, p := range cfg.VIPProviders {
		switch p {
		case fsm.ProviderAWSEIP:
			out = append(out, awsec2.ActionAssociateAddress, awsec2.ActionDescribeAddresses)
		case fsm.ProviderAWSPrivateIP:
			out = append(out, awsec2.ActionAssignPrivateIPAddresses, awsec2.ActionDescribeNetworkInterfaces)
		case fsm.ProviderAWSRoute:
			out = append(out, awsec2.ActionReplaceRoute, awsec2.ActionCreateRoute, awsec2.ActionDescribeRouteTables)
		}
	}
	return out
}

// ec2CheckTimeout bounds building the client and probing its permissions.
const ec2CheckTimeout = 30 * time.Second

// newEC2Client returns nil when neither --discovery nor --vip is set, else
// a client whose credentials were shown to allow every action needed.
func newEC2Client(ctx context.Context, cfg Config, log *slog.Logger) (*awsec2.Client, error) {
	if !cfg.AWS() {
		return nil, nil
	}
	cctx, cancel := context.WithTimeout(ctx, ec2CheckTimeout)
	defer cancel()
	o := awsec2.DefaultOptions()
	o.Region = cfg.AWSRegion
	o.Endpoint = cfg.AWSEndpoint
	o.Logger = log
	c, err := awsec2.New(cctx, o)
	if err != nil {
		return nil, fmt.Errorf("--aws-region/--aws-endpoint: EC2 client: %w", err)
	}
	actions := ec2Actions(cfg)
	missing, err := c.CheckPermissions(cctx, actions)
	if err != nil {
		return nil, fmt.Errorf("checking EC2 permissions for %s: %w", strings.Join(actions, ", "), err)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("the AWS credentials lack EC2 permissions needed by --discovery/--vip: %s", strings.Join(missing, ", "))
	}
	return c, nil
}

// awsDeps is what startAWS wires the EC2 features to.
type awsDeps struct {
	Client     *awsec2.Client
	Node       *cluster.Node
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// startDiscovery starts EC2 discovery when enabled, in a goroutine owned
// by wg that stops when ctx ends.
func startDiscovery(ctx context.Context, wg *sync.WaitGroup, cfg Config, d awsDeps) error {
	if !cfg.Discovery {
		return nil
	}
	dc := discovery.DefaultConfig()
	dc.Lister = ec2Lister{d.Client}
	dc.Writer = d.Node
	dc.Logger = d.Logger.With("component", "discovery")
	dc.Registerer = d.Registerer
	disc, err := discovery.New(dc)
	if err != nil {
		return err
	}
	leadership, cancel := d.Node.WatchLeadership()
	wg.Go(func() {
		defer cancel()
		_ = disc.Run(ctx, leadership)
	})
	return nil
}

// ec2Lister adapts the EC2 client to discovery.Lister.
type ec2Lister struct{ c *awsec2.Client }

func (l ec2Lister) ListInstances(ctx context.Context, tags map[string]string) ([]discovery.Instance, error) {
	ins, err := l.c.ListInstances(ctx, tags)
	if err != nil {
		return nil, err
	}
	out := make([]discovery.Instance, len(ins))
	for i, in := range ins {
		out[i] = discovery.Instance{ID: in.ID, PrivateIP: in.PrivateIP, Zone: in.Zone, Tags: in.Tags}
	}
	return out, nil
}
