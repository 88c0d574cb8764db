// Package awsec2 is rafter's one door to the EC2 API: listing instances for
// tag discovery, moving Elastic IPs and checking permissions with DryRun.
// It is the only rafter package that imports the AWS SDK, so the SDK's
// (slow to compile) code stays out of everything else; consumers declare the
// small interface they need and are handed a *Client by the agent wiring.
//
// Calls are retried by the SDK's standard retryer, tuned here: throttling
// (RequestLimitExceeded) and 5xx answers back off exponentially with full
// jitter up to Options.MaxAttempts.
//
// It must not import any other rafter package except fsm and internal/conf
// (it imports only internal/conf today), and nothing in dataplane may
// import it.
package awsec2
