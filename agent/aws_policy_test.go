package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestTerraformPolicyIsWhatTheAgentChecks keeps the instance role of
// deploy/terraform/aws equal to the EC2 actions the agent checks at start
// with every AWS feature on: no more (least privilege), no less (the agent
// would refuse to start).
func TestTerraformPolicyIsWhatTheAgentChecks(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "deploy", "terraform", "aws", "iam-policy.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Statement []struct {
			Effect   string
			Action   []string
			Resource any
		}
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("iam-policy.json: %v", err)
	}
	var inPolicy []string
	for i, st := range doc.Statement {
		if st.Effect != "Allow" {
			t.Errorf("statement %d: effect %q, want Allow", i, st.Effect)
		}
		for _, a := range st.Action {
			name, ok := strings.CutPrefix(a, "ec2:")
			if !ok {
				t.Errorf("statement %d: %q is not an EC2 action", i, a)
				continue
			}
			inPolicy = append(inPolicy, name)
		}
	}
	inCode := ec2Actions(Config{Discovery: true, VIP: true, VIPProviders: awsVIPProviders()})
	slices.Sort(inPolicy)
	slices.Sort(inCode)
	if !slices.Equal(slices.Compact(inPolicy), inCode) || len(slices.Compact(inPolicy)) != len(inPolicy) {
		t.Fatalf("iam-policy.json allows %v; the agent checks %v (agent/aws.go ec2Actions)", inPolicy, inCode)
	}
	tf, err := os.ReadFile(filepath.Join("..", "deploy", "terraform", "aws", "main.tf"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(tf), `file("${path.module}/iam-policy.json")`) {
		t.Error("main.tf does not read its role policy from iam-policy.json")
	}
}

// TestEC2ActionsFollowProviders: the agent asks for the permissions of
// the providers it moves, so a role for Elastic IPs only keeps working.
func TestEC2ActionsFollowProviders(t *testing.T) {
	tests := []struct {
		providers []string
		want      []string
	}{
		{[]string{"aws-eip"}, []string{"AssociateAddress", "DescribeAddresses"}},
		{[]string{"aws-private-ip"}, []string{"AssignPrivateIpAddresses", "DescribeNetworkInterfaces"}},
		{[]string{"aws-route"}, []string{"CreateRoute", "DescribeRouteTables", "ReplaceRoute"}},
	}
	for _, tt := range tests {
		got := ec2Actions(Config{VIP: true, VIPProviders: tt.providers})
		slices.Sort(got)
		if !slices.Equal(got, tt.want) {
			t.Errorf("%v: %v, want %v", tt.providers, got, tt.want)
		}
	}
	if got := ec2Actions(DefaultConfig()); len(got) != 0 {
		t.Errorf("no AWS feature on: %v", got)
	}
}
