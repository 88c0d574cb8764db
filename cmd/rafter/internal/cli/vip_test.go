package cli

import "testing"

const vipsJSON = `{"index":50,"items":[
{"kind":"vip","name":"eip1","modify_index":7,"spec":{"provider":"aws-eip","allocation_id":"eipalloc-1","home_node":"n1"},
 "assignment":{"holder":"n2","token":48,"since":"2025-01-01T00:00:00Z","reason":"holder_unreachable","settled":true}},
{"kind":"vip","name":"web","modify_index":8,"spec":{"provider":"linux","address":"10.0.0.100/24","home_node":"n3"}},
{"kind":"vip","name":"x1","modify_index":9,"spec":{"provider":"aws-private-ip","private_ip":"10.0.1.100","home_node":"n1"}},
{"kind":"vip","name":"x2","modify_index":10,"spec":{"provider":"aws-route","route_table_ids":["rtb-1"],"cidr":"10.200.0.10/32","home_node":"n2"}}]}`

func TestVIPCommands(t *testing.T) {
	tests := []struct {
		name    string
		answers map[string]answer
		args    []string
		wantOut []string // substrings of stdout, in order
		wantErr string
		wantReq string
	}{
		{
			name:    "status table",
			answers: map[string]answer{"GET /v1/vips": {200, vipsJSON}},
			args:    []string{"vip", "status"},
			wantOut: []string{"NAME", "PROVIDER", "ADDRESS", "HOME", "HOLDER", "TOKEN", "SINCE", "REASON", "SETTLED",
				"eip1", "aws-eip", "eipalloc-1", "n1", "n2", "48", "ago", "holder_unreachable", "yes",
				"web", "linux", "10.0.0.100/24", "n3", "-", "-", "-", "-", "-",
				"x1", "aws-private-ip", "10.0.1.100", "n1", "x2", "aws-route", "10.200.0.10/32", "n2"},
			wantReq: "GET /v1/vips?",
		},
		{
			name:    "status json",
			answers: map[string]answer{"GET /v1/vips": {200, vipsJSON}},
			args:    []string{"vip", "status", "-o", "json"},
			wantOut: []string{`"name": "eip1"`, `"holder": "n2"`, `"token": 48`, `"name": "web"`},
		},
		{
			name:    "move",
			answers: map[string]answer{"POST /v1/vips/web/move": {200, `{"assignment":{"vip":"web","holder":"n2","token":51,"since":"2025-01-01T00:00:00Z","reason":"operator"},"index":51}`}},
			args:    []string{"vip", "move", "web", "--to", "n2"},
			wantOut: []string{"vip web assigned to n2 (token 51)\n"},
			wantReq: `POST /v1/vips/web/move? {"to":"n2"}`,
		},
		{
			name:    "move needs --to",
			args:    []string{"vip", "move", "web"},
			wantErr: "--to: required: the node to move the VIP to",
		},
		{
			name:    "move to a non-member",
			answers: map[string]answer{"POST /v1/vips/web/move": {400, `{"error":{"code":"invalid","message":"node \"n9\" is not a cluster member","field":"to"}}`}},
			args:    []string{"vip", "move", "web", "--to", "n9"},
			wantErr: `400 invalid: to: node "n9" is not a cluster member`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, reqs, err := runAgainst(t, tt.answers, tt.args)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v\nout:\n%s", err, out)
			}
			wantInOrder(t, out, tt.wantOut)
			if tt.wantReq != "" && (len(reqs) == 0 || reqs[0] != tt.wantReq) {
				t.Fatalf("requests %q, want first %q", reqs, tt.wantReq)
			}
		})
	}
}
