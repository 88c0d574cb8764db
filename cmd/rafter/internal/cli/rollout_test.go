package cli

import (
	"strings"
	"testing"
)

const rolloutJSON = `{"kind":"rollout","name":"r1","modify_index":7,
"spec":{"route":"app","stable":"v1","canary":"v2","steps":[10,50,100],"interval":"2s"},
"status":{"state":"progressing","step":1,"weight":50,"token":9,"term":3,"history":[
{"step":0,"weight":10,"result":"passed","index":9,"term":3,
 "figures":{"requests":250,"errors":1,"error_rate":0.004,"p99":"5ms","stable_requests":2250,"stable_errors":0,"share":10,"window":"1.5s","nodes":3}}]}}`

func TestRolloutCommands(t *testing.T) {
	tests := []struct {
		name     string
		answers  map[string]answer
		args     []string
		wantOut  []string
		wantErr  string
		wantReqs []string
	}{
		{
			name:    "start",
			answers: map[string]answer{"PUT /v1/rollouts/r1": {200, `{"index":12}`}},
			args: []string{"rollout", "start", "r1", "--route", "app", "--stable", "v1", "--canary", "v2",
				"--steps", "10,50,100", "--interval", "2s", "--min-requests", "50", "--max-p99", "250ms", "--sticky-cookie", "sid"},
			wantOut: []string{"rollout r1 started at index 12: 10% to v2\n"},
			wantReqs: []string{`PUT /v1/rollouts/r1? {"route":"app","stable":"v1","canary":"v2","steps":[10,50,100],"interval":"2s",` +
				`"min_requests":50,"max_error_rate":0.01,"max_p99":"250ms","sticky":{"cookie":"sid"}}`},
		},
		{
			name:    "start without a canary",
			args:    []string{"rollout", "start", "r1", "--route", "app", "--stable", "v1"},
			wantErr: "--canary: required",
		},
		{
			name:    "start with bad steps",
			args:    []string{"rollout", "start", "r1", "--route", "app", "--stable", "v1", "--canary", "v2", "--steps", "10,x"},
			wantErr: `--steps: "x" is not a percentage`,
		},
		{
			name: "start refused by the API",
			answers: map[string]answer{"PUT /v1/rollouts/r1": {400,
				`{"error":{"code":"invalid","message":"the last step must be 100, got 50","field":"spec.steps[1]"}}`}},
			args:    []string{"rollout", "start", "r1", "--route", "app", "--stable", "v1", "--canary", "v2", "--steps", "10,50"},
			wantErr: "400 invalid: spec.steps[1]: the last step must be 100, got 50",
		},
		{
			name:    "status of one",
			answers: map[string]answer{"GET /v1/rollouts/r1": {200, rolloutJSON}},
			args:    []string{"rollout", "status", "r1"},
			wantOut: []string{"NAME", "STATE", "STEP", "SHARE", "r1", "app", "v1", "v2", "progressing", "2/3", "50%",
				"STEP", "WEIGHT", "RESULT", "REQUESTS", "1", "10%", "passed", "250", "1", "0.0040", "5ms", "10.0%", "3", "3"},
		},
		{
			name:    "status of all as json",
			answers: map[string]answer{"GET /v1/rollouts": {200, `{"index":9,"items":[` + rolloutJSON + `]}`}},
			args:    []string{"rollout", "status", "-o", "json"},
			wantOut: []string{`"name": "r1"`, `"state": "progressing"`, `"weight": 50`},
		},
		{
			name:     "pause",
			answers:  map[string]answer{"POST /v1/rollouts/r1/pause": {200, `{"index":13,"status":{"state":"paused","step":1,"weight":50,"token":13}}`}},
			args:     []string{"rollout", "pause", "r1"},
			wantOut:  []string{"rollout r1: pause at index 13 (paused, canary at 50%)\n"},
			wantReqs: []string{"POST /v1/rollouts/r1/pause?"},
		},
		{
			name:    "abort after the end",
			answers: map[string]answer{"POST /v1/rollouts/r1/abort": {409, `{"error":{"code":"conflict","message":"rollout \"r1\" has ended (succeeded)","field":"action"}}`}},
			args:    []string{"rollout", "abort", "r1"},
			wantErr: `409 conflict: action: rollout "r1" has ended (succeeded)`,
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
			for i, w := range tt.wantReqs {
				if i >= len(reqs) || strings.TrimSpace(reqs[i]) != w {
					t.Fatalf("request %d = %q, want %q", i, at(reqs, i), w)
				}
			}
		})
	}
}
