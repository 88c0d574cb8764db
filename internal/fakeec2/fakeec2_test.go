package fakeec2_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rafterlb/rafter/internal/fakeec2"
)

// post sends one query-protocol request and returns status and body.
func post(t *testing.T, s *fakeec2.Server, form url.Values) (int, string) {
	t.Helper()
	form.Set("Version", "2016-11-15")
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.PostForm(s.URL(), form)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestWireAnswers(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(*fakeec2.Server)
		form     url.Values
		status   int
		contains []string
	}{
		{"dry run allowed", nil,
			url.Values{"Action": {"DescribeInstances"}, "DryRun": {"true"}}, 412, []string{"<Code>DryRunOperation</Code>"}},
		{"dry run denied", func(s *fakeec2.Server) { s.Deny(fakeec2.ActionDescribeInstances) },
			url.Values{"Action": {"DescribeInstances"}, "DryRun": {"true"}}, 403, []string{"<Code>UnauthorizedOperation</Code>"}},
		{"throttled", func(s *fakeec2.Server) { s.Throttle("", 1) },
			url.Values{"Action": {"DescribeAddresses"}}, 503, []string{"<Code>RequestLimitExceeded</Code>"}},
		{"internal", func(s *fakeec2.Server) { s.FailInternal(fakeec2.ActionDescribeAddresses, 1) },
			url.Values{"Action": {"DescribeAddresses"}}, 500, []string{"<Code>InternalError</Code>"}},
		{"unknown action", nil,
			url.Values{"Action": {"TerminateInstances"}}, 400, []string{"<Code>InvalidAction</Code>"}},
		{"bad filter", nil,
			url.Values{"Action": {"DescribeInstances"}, "Filter.1.Name": {"vpc-id"}, "Filter.1.Value.1": {"x"}}, 400, []string{"InvalidParameterValue"}},
		{"instances", func(s *fakeec2.Server) {
			s.AddInstance(fakeec2.Instance{ID: "i-1", PrivateIP: "10.0.0.1", Zone: "us-east-1a", Tags: map[string]string{"svc": "web"}})
		}, url.Values{"Action": {"DescribeInstances"}, "Filter.1.Name": {"tag:svc"}, "Filter.1.Value.1": {"web"}}, 200,
			[]string{`xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"`, "<instanceId>i-1</instanceId>", "<availabilityZone>us-east-1a</availabilityZone>", "<name>running</name>", "<key>svc</key>"}},
		{"associate", func(s *fakeec2.Server) {
			s.AddInstance(fakeec2.Instance{ID: "i-1", PrivateIP: "10.0.0.1", Zone: "us-east-1a"})
			s.AddAddress("eipalloc-1", "203.0.113.1")
		}, url.Values{"Action": {"AssociateAddress"}, "AllocationId": {"eipalloc-1"}, "InstanceId": {"i-1"}}, 200, []string{"<associationId>eipassoc-"}},
		{"already associated", func(s *fakeec2.Server) {
			s.AddInstance(fakeec2.Instance{ID: "i-1", PrivateIP: "10.0.0.1", Zone: "us-east-1a"})
			s.AddAddress("eipalloc-1", "203.0.113.1")
			s.MoveAddress("eipalloc-1", "i-1")
		}, url.Values{"Action": {"AssociateAddress"}, "AllocationId": {"eipalloc-1"}, "InstanceId": {"i-1"}}, 400, []string{"Resource.AlreadyAssociated"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := fakeec2.New(t)
			if tc.setup != nil {
				tc.setup(s)
			}
			status, body := post(t, s, tc.form)
			if status != tc.status {
				t.Fatalf("status = %d, want %d; body %s", status, tc.status, body)
			}
			for _, want := range tc.contains {
				if !strings.Contains(body, want) {
					t.Errorf("body lacks %q: %s", want, body)
				}
			}
			if n := s.Calls(tc.form.Get("Action")); n != 1 {
				t.Errorf("calls = %d, want 1", n)
			}
		})
	}
}

func TestPagination(t *testing.T) {
	s := fakeec2.New(t)
	for _, id := range []string{"i-1", "i-2", "i-3", "i-4", "i-5", "i-6", "i-7"} {
		s.AddInstance(fakeec2.Instance{ID: id, PrivateIP: "10.0.0.1", Zone: "us-east-1a"})
	}
	s.SetState("i-7", fakeec2.StateStopped)
	form := url.Values{"Action": {"DescribeInstances"}, "MaxResults": {"5"},
		"Filter.1.Name": {"instance-state-name"}, "Filter.1.Value.1": {"running"}}
	_, body := post(t, s, form)
	if !strings.Contains(body, "<nextToken>") || strings.Count(body, "<instanceId>") != 5 {
		t.Fatalf("first page: %s", body)
	}
	tok := body[strings.Index(body, "<nextToken>")+len("<nextToken>") : strings.Index(body, "</nextToken>")]
	form.Set("NextToken", tok)
	s.FailPage(2, 1)
	if status, _ := post(t, s, form); status != 500 {
		t.Fatalf("failed page answered %d", status)
	}
	_, body = post(t, s, form)
	if strings.Contains(body, "<nextToken>") || strings.Count(body, "<instanceId>") != 1 || strings.Contains(body, "i-7") {
		t.Fatalf("second page: %s", body)
	}
}
