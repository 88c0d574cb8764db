package awsec2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/rafterlb/rafter/internal/conf"
)

// Sentinel errors; test with errors.Is.
var (
	ErrNotFound     = errors.New("not found")      // an allocation, association, instance or interface that does not exist
	ErrUnauthorized = errors.New("not authorized") // the credentials lack the permission
)

// The actions CheckPermissions knows how to probe.
const (
	ActionAssociateAddress    = "AssociateAddress"
	ActionDisassociateAddress = "DisassociateAddress"
	ActionDescribeAddresses   = "DescribeAddresses"
	ActionDescribeInstances   = "DescribeInstances"
)

// StaticCredentials replace the SDK's default credential chain (tests).
type StaticCredentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
}

// Options configures a Client.
type Options struct {
	// Region such as "us-east-1". Empty: the SDK's default chain
	// (AWS_REGION, shared config).
	Region string
	// Endpoint is the base endpoint. Empty: the SDK's default resolution,
	// which honours AWS_ENDPOINT_URL_EC2 and AWS_ENDPOINT_URL.
	Endpoint string
	// Credentials, when set, are used instead of the default chain
	// (environment, shared files, instance role through IMDSv2).
	Credentials *StaticCredentials
	// MaxAttempts bounds tries per call, the first included (default 6).
	MaxAttempts int
	// BaseDelay is the backoff after the first failed try of a 5xx error
	// (default 100ms); ThrottleDelay the same for throttling (default
	// 500ms). Each later retry doubles the bound, capped by MaxBackoff
	// (default 10s); the delay is drawn uniformly below the bound (full
	// jitter) so that nodes do not retry in step.
	BaseDelay     time.Duration
	ThrottleDelay time.Duration
	MaxBackoff    time.Duration
	// PageSize is DescribeInstances' MaxResults (5..1000, default 1000).
	PageSize int
	Logger   *slog.Logger
}

// DefaultOptions returns the production defaults.
func DefaultOptions() Options {
	return Options{
		MaxAttempts:   6,
		BaseDelay:     100 * time.Millisecond,
		ThrottleDelay: 500 * time.Millisecond,
		MaxBackoff:    10 * time.Second,
		PageSize:      1000,
	}
}

// withDefaults fills zero fields from DefaultOptions.
func (o Options) withDefaults() Options {
	d := DefaultOptions()
	conf.Default(&o.MaxAttempts, d.MaxAttempts)
	conf.Default(&o.BaseDelay, d.BaseDelay)
	conf.Default(&o.ThrottleDelay, d.ThrottleDelay)
	conf.Default(&o.MaxBackoff, d.MaxBackoff)
	conf.Default(&o.PageSize, d.PageSize)
	conf.Logger(&o.Logger)
	return o
}

// Validate reports the first invalid field by its name.
func (o Options) Validate() error {
	switch {
	case o.MaxAttempts < 0 || o.MaxAttempts > 20:
		return fmt.Errorf("aws.max_attempts: %d out of range 1..20", o.MaxAttempts)
	case o.BaseDelay < 0:
		return fmt.Errorf("aws.base_delay: negative")
	case o.ThrottleDelay < 0:
		return fmt.Errorf("aws.throttle_delay: negative")
	case o.MaxBackoff < 0:
		return fmt.Errorf("aws.max_backoff: negative")
	case o.PageSize != 0 && (o.PageSize < 5 || o.PageSize > 1000):
		return fmt.Errorf("aws.page_size: %d out of range 5..1000", o.PageSize)
	case o.Credentials != nil && (o.Credentials.AccessKeyID == "" || o.Credentials.SecretAccessKey == ""):
		return fmt.Errorf("aws.credentials: access key id and secret are both required")
	case o.Endpoint != "" && !strings.HasPrefix(o.Endpoint, "http://") && !strings.HasPrefix(o.Endpoint, "https://"):
		return fmt.Errorf("aws.endpoint: %q is not an http(s) URL", o.Endpoint)
	}
	return nil
}

// Instance is a running EC2 instance as discovery needs it.
type Instance struct {
	ID        string
	PrivateIP string
	Zone      string
	State     string
	Tags      map[string]string
}

// Address is an Elastic IP and where it is associated ("" fields when not).
type Address struct {
	AllocationID       string
	PublicIP           string
	AssociationID      string
	NetworkInterfaceID string
	PrivateIP          string
	InstanceID         string
}

// Client calls EC2. It is safe for concurrent use.
type Client struct {
	ec2      *ec2.Client
	log      *slog.Logger
	pageSize int32
}

// New builds a client. It does not call AWS.
func New(ctx context.Context, o Options) (*Client, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("awsec2: %w", err)
	}
	o = o.withDefaults()
	backoff := jitterBackoff{base: o.BaseDelay, throttle: o.ThrottleDelay, max: o.MaxBackoff}
	loads := []func(*config.LoadOptions) error{
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(so *retry.StandardOptions) {
				so.MaxAttempts = o.MaxAttempts
				so.MaxBackoff = o.MaxBackoff
				so.Backoff = backoff
			})
		}),
	}
	if o.Region != "" {
		loads = append(loads, config.WithRegion(o.Region))
	}
	if o.Endpoint != "" {
		loads = append(loads, config.WithBaseEndpoint(o.Endpoint))
	}
	if c := o.Credentials; c != nil {
		loads = append(loads, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, c.SessionToken)))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loads...)
	if err != nil {
		return nil, fmt.Errorf("awsec2: loading AWS config: %w", err)
	}
	if cfg.Region == "" {
		return nil, fmt.Errorf("awsec2: aws.region: no region given and none in the environment (set --aws-region or AWS_REGION)")
	}
	return &Client{ec2: ec2.NewFromConfig(cfg), log: o.Logger, pageSize: int32(o.PageSize)}, nil
}

// jitterBackoff is exponential backoff with full jitter; throttling starts
// from a longer base because EC2's request-rate bucket refills slowly.
type jitterBackoff struct {
	base, throttle, max time.Duration
}

// BackoffDelay implements retry.BackoffDelayer; attempt is 1 for the first
// retry.
func (b jitterBackoff) BackoffDelay(attempt int, err error) (time.Duration, error) {
	base := b.base
	if retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) == aws.TrueTernary {
		base = b.throttle
	}
	bound := base
	for i := 1; i < attempt && bound < b.max; i++ {
		bound *= 2
	}
	bound = min(bound, b.max)
	if bound <= 0 {
		return 0, nil
	}
	return rand.N(bound) + 1, nil
}

// ListInstances lists the running instances carrying every tag (key=value),
// all pages. An error on any page fails the whole listing: callers must not
// mistake a partial listing for the fleet.
func (c *Client) ListInstances(ctx context.Context, tags map[string]string) ([]Instance, error) {
	filters := []types.Filter{{Name: aws.String("instance-state-name"), Values: []string{"running"}}}
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		filters = append(filters, types.Filter{Name: aws.String("tag:" + k), Values: []string{tags[k]}})
	}
	p := ec2.NewDescribeInstancesPaginator(c.ec2, &ec2.DescribeInstancesInput{Filters: filters, MaxResults: aws.Int32(c.pageSize)})
	var out []Instance
	for page := 1; p.HasMorePages(); page++ {
		res, err := p.NextPage(ctx)
		if err != nil {
			return nil, wrap(fmt.Sprintf("DescribeInstances page %d", page), err)
		}
		for _, r := range res.Reservations {
			for _, in := range r.Instances {
				i := Instance{
					ID:        aws.ToString(in.InstanceId),
					PrivateIP: aws.ToString(in.PrivateIpAddress),
					Tags:      make(map[string]string, len(in.Tags)),
				}
				if in.Placement != nil {
					i.Zone = aws.ToString(in.Placement.AvailabilityZone)
				}
				if in.State != nil {
					i.State = string(in.State.Name)
				}
				for _, t := range in.Tags {
					i.Tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
				}
				// The filter already asks for running instances; checking
				// again keeps a lagging state change from adding a backend.
				if i.State == "running" {
					out = append(out, i)
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b Instance) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// AssociateAddress moves an Elastic IP to the network interface (and its
// private address; "" for the primary one), taking it from wherever it is.
func (c *Client) AssociateAddress(ctx context.Context, allocationID, eni, privateIP string) (string, error) {
	in := &ec2.AssociateAddressInput{
		AllocationId:       aws.String(allocationID),
		NetworkInterfaceId: aws.String(eni),
		AllowReassociation: aws.Bool(true),
	}
	if privateIP != "" {
		in.PrivateIpAddress = aws.String(privateIP)
	}
	res, err := c.ec2.AssociateAddress(ctx, in)
	if err != nil {
		return "", wrap("AssociateAddress", err)
	}
	return aws.ToString(res.AssociationId), nil
}

// DisassociateAddress removes an association.
func (c *Client) DisassociateAddress(ctx context.Context, associationID string) error {
	_, err := c.ec2.DisassociateAddress(ctx, &ec2.DisassociateAddressInput{AssociationId: aws.String(associationID)})
	return wrap("DisassociateAddress", err)
}

// DescribeAddress returns what EC2 says of one Elastic IP now; after a move
// it may show the previous state for a while (eventual consistency).
func (c *Client) DescribeAddress(ctx context.Context, allocationID string) (Address, error) {
	res, err := c.ec2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{AllocationIds: []string{allocationID}})
	if err != nil {
		return Address{}, wrap("DescribeAddresses", err)
	}
	for _, a := range res.Addresses {
		if aws.ToString(a.AllocationId) == allocationID {
			return Address{
				AllocationID:       allocationID,
				PublicIP:           aws.ToString(a.PublicIp),
				AssociationID:      aws.ToString(a.AssociationId),
				NetworkInterfaceID: aws.ToString(a.NetworkInterfaceId),
				PrivateIP:          aws.ToString(a.PrivateIpAddress),
				InstanceID:         aws.ToString(a.InstanceId),
			}, nil
		}
	}
	return Address{}, fmt.Errorf("awsec2: DescribeAddresses %s: %w", allocationID, ErrNotFound)
}

// CheckPermissions probes each action with DryRun and returns those the
// credentials may not perform. An answer that is neither DryRunOperation
// nor UnauthorizedOperation is an error: permission is then unknown.
func (c *Client) CheckPermissions(ctx context.Context, actions []string) ([]string, error) {
	var missing []string
	for _, a := range actions {
		var err error
		// The ids are placeholders: EC2 decides a DryRun on permissions.
		switch a {
		case ActionAssociateAddress:
			_, err = c.ec2.AssociateAddress(ctx, &ec2.AssociateAddressInput{DryRun: aws.Bool(true),
				AllocationId: aws.String("eipalloc-00000000000000000"), NetworkInterfaceId: aws.String("eni-00000000000000000"), AllowReassociation: aws.Bool(true)})
		case ActionDisassociateAddress:
			_, err = c.ec2.DisassociateAddress(ctx, &ec2.DisassociateAddressInput{DryRun: aws.Bool(true), AssociationId: aws.String("eipassoc-00000000000000000")})
		case ActionDescribeAddresses:
			_, err = c.ec2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{DryRun: aws.Bool(true)})
		case ActionDescribeInstances:
			_, err = c.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{DryRun: aws.Bool(true)})
		default:
			var known bool
			if known, err = c.probePrivate(ctx, a); !known {
				return nil, fmt.Errorf("awsec2: CheckPermissions: unknown action %q", a)
			}
		}
		switch code := errorCode(err); {
		case code == "DryRunOperation":
		case code == "UnauthorizedOperation" || code == "AccessDenied" || code == "AccessDeniedException":
			c.log.Warn("missing EC2 permission", "action", a)
			missing = append(missing, a)
		case err == nil:
			return nil, fmt.Errorf("awsec2: CheckPermissions %s: DryRun was not honoured", a)
		default:
			return nil, wrap("CheckPermissions "+a, err)
		}
	}
	return missing, nil
}

func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// wrap names the operation and adds a sentinel for the codes callers act on.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	code := errorCode(err)
	switch {
	case strings.HasSuffix(code, ".NotFound"):
		return fmt.Errorf("awsec2: %s: %w: %w", op, ErrNotFound, err)
	case code == "UnauthorizedOperation" || code == "AccessDenied":
		return fmt.Errorf("awsec2: %s: %w: %w", op, ErrUnauthorized, err)
	}
	return fmt.Errorf("awsec2: %s: %w", op, err)
}
