package main

import (
	"fmt"
	"strings"

	"github.com/rafterlb/rafter/agent"
)

// tryThis is what `rafter dev` prints once its cluster serves.
func tryThis(o devOptions, dir string, admins []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nrafter dev: 3 nodes running (state in %s", dir)
	if o.Keep {
		b.WriteString(", kept on exit")
	}
	b.WriteString(")\n")
	for i, a := range admins {
		fmt.Fprintf(&b, "  n%d  zone %s  admin http://%s  proxy http://%s:%d\n", i+1, agent.DevZones[i], a, agent.DevIP(i), o.HTTPPort)
	}
	admin := admins[0]
	try := [][2]string{
		{fmt.Sprintf("curl http://127.0.0.1:%d/", o.HTTPPort), "the demo pool; each node prefers backends in its zone"},
		{fmt.Sprintf("curl http://127.0.0.2:%d/", o.HTTPPort), "same routes on every node"},
		{"open http://" + admin + "/ui/", "the dashboard (no token: sign in with an empty one)"},
		{"curl http://" + admin + "/v1/status", "Raft state as JSON"},
		{"curl http://" + admin + "/v1/health", "this node's health checks"},
		{"curl http://" + admin + "/metrics", "Prometheus metrics"},
		{"rafter status", "readable cluster status"},
		{"rafter get routes", ""},
		{"rafter get pool demo -o yaml", ""},
		{"rafter apply -f examples/demo.yaml", "more routes; run it twice: \"unchanged\""},
	}
	if admin != "127.0.0.1:7700" {
		try = append(try, [2]string{"export RAFTER_ADDR=http://" + admin, "for the rafter commands above"})
	}
	b.WriteString("\nTry this (in another terminal):\n")
	for _, l := range try {
		if l[1] == "" {
			fmt.Fprintf(&b, "  %s\n", l[0])
		} else {
			fmt.Fprintf(&b, "  %-40s # %s\n", l[0], l[1])
		}
	}
	b.WriteString(`
Here, type:
  stop n1      kill a node (the others elect a new leader and keep serving)
  start n1     bring it back (it catches up from its Raft log)
Ctrl-C stops everything.
`)
	return b.String()
}
