package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"go.yaml.in/yaml/v3"

	"github.com/rafterlb/rafter/client"
	"github.com/rafterlb/rafter/fsm"
)

func jsonToYAML(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var generic any
	if err := json.Unmarshal(b, &generic); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(generic); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

func writeStatus(w io.Writer, st client.Status) error {
	leader := st.Leader
	switch {
	case leader == "":
		leader = "none (no quorum or election running)"
	case st.LeaderAddr != "":
		leader += " (" + st.LeaderAddr + ")"
	}
	tw := newTable(w)
	fmt.Fprintf(tw, "Node:\t%s (zone %s)\n", st.NodeID, dash(st.Zone))
	fmt.Fprintf(tw, "State:\t%s, term %d\n", st.State, st.Term)
	fmt.Fprintf(tw, "Leader:\t%s\n", leader)
	fmt.Fprintf(tw, "Index:\tcommit %d, applied %d\n", st.CommitIndex, st.AppliedIndex)
	voters, proxies := 0, 0
	for _, m := range st.Members {
		if m.Suffrage == "Voter" {
			voters++
		} else {
			proxies++
		}
	}
	fmt.Fprintf(tw, "Members:\t%d voters (quorum %d), %d proxies\n", voters, voters/2+1, proxies)
	if st.Error != "" {
		fmt.Fprintf(tw, "Error:\t%s\n", st.Error)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = newTable(w)
	fmt.Fprintln(tw, "MEMBER\tZONE\tRAFT\tADMIN\tSUFFRAGE\tROLE\tHEALTH")
	for _, m := range st.Members {
		role := "follower"
		switch {
		case m.Leader:
			role = "leader"
		case m.Suffrage == "Nonvoter":
			role = "proxy" // a non-voter: it follows the log but never votes
		}
		health := m.Health
		switch {
		case health != "":
		case m.Healthy:
			health = "healthy"
		default:
			health = "unhealthy"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, dash(m.Zone), dash(m.RaftAddr), dash(m.AdminAddr), dash(m.Suffrage), role, health)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// writeObjects prints a table whose columns fit the kind.
func writeObjects(w io.Writer, kind fsm.Kind, objs []fsm.Object) error {
	tw := newTable(w)
	var err error
	switch kind {
	case fsm.KindListener:
		fmt.Fprintln(tw, "NAME\tPORT\tPROTOCOL\tINDEX")
		for _, o := range objs {
			var s fsm.ListenerSpec
			if err = json.Unmarshal(o.Spec, &s); err != nil {
				break
			}
			proto := s.Protocol
			if proto == "" {
				proto = "http"
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d\n", o.Name, s.Port, proto, o.ModifyIndex)
		}
	case fsm.KindRoute:
		fmt.Fprintln(tw, "NAME\tLISTENER\tHOSTS\tPATH\tACTION\tINDEX")
		for _, o := range objs {
			var s fsm.RouteSpec
			if err = json.Unmarshal(o.Spec, &s); err != nil {
				break
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", o.Name, s.Listener, joinOr(s.Match.Hosts, "*"), pathString(s.Match.Path), actionString(s.Action), o.ModifyIndex)
		}
	case fsm.KindPool:
		fmt.Fprintln(tw, "NAME\tBALANCER\tBACKENDS\tZONES\tHEALTH CHECK\tINDEX")
		for _, o := range objs {
			var s fsm.PoolSpec
			if err = json.Unmarshal(o.Spec, &s); err != nil {
				break
			}
			bal := s.Balancer
			if bal == "" {
				bal = fsm.BalancerRoundRobin
			}
			if s.ZoneAware {
				bal += " (zone-aware)"
			}
			zones := map[string]bool{}
			for _, b := range s.Backends {
				if b.Zone != "" {
					zones[b.Zone] = true
				}
			}
			zl := make([]string, 0, len(zones))
			for z := range zones {
				zl = append(zl, z)
			}
			sort.Strings(zl)
			hc := "-"
			if s.HealthCheck != nil {
				hc = s.HealthCheck.Path
			}
			backends := strconv.Itoa(len(s.Backends))
			if s.Discovery != nil && s.Discovery.EC2 != nil {
				backends += " + ec2"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", o.Name, bal, backends, joinOr(zl, "-"), hc, o.ModifyIndex)
		}
	case fsm.KindVIP:
		fmt.Fprintln(tw, "NAME\tPROVIDER\tADDRESS\tHOME\tCANDIDATES\tINDEX")
		for _, o := range objs {
			var s fsm.VIPSpec
			if err = json.Unmarshal(o.Spec, &s); err != nil {
				break
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", o.Name, s.Provider, dash(vipAddress(s)), dash(s.HomeNode), joinOr(s.Candidates, "all"), o.ModifyIndex)
		}
	case fsm.KindRollout:
		fmt.Fprintln(tw, "NAME\tROUTE\tSTABLE\tCANARY\tSTEPS\tINTERVAL\tINDEX")
		for _, o := range objs {
			var s fsm.RolloutSpec
			if err = json.Unmarshal(o.Spec, &s); err != nil {
				break
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%v\t%d\n", o.Name, s.Route, s.Stable, s.Canary, s.Steps, s.Interval.D(), o.ModifyIndex)
		}
	default:
		return fmt.Errorf("no table for kind %q", kind)
	}
	if err != nil {
		return fmt.Errorf("decoding %s spec: %w", kind, err)
	}
	return tw.Flush()
}

func pathString(p fsm.PathMatch) string {
	switch {
	case p.Exact != "":
		return "=" + p.Exact
	case p.Regex != "":
		return "~" + p.Regex
	case p.Prefix != "":
		return p.Prefix + "*"
	}
	return "/*"
}

func actionString(a fsm.RouteAction) string {
	switch {
	case len(a.Split) == 1:
		return "pool " + a.Split[0].Pool
	case len(a.Split) > 1:
		parts := make([]string, len(a.Split))
		for i, p := range a.Split {
			parts[i] = fmt.Sprintf("%s=%d", p.Pool, p.Weight)
		}
		return "split " + strings.Join(parts, ",")
	case a.Redirect != nil:
		r := a.Redirect
		code := r.Code
		if code == 0 {
			code = 302
		}
		target := ""
		if r.Scheme != "" {
			target += r.Scheme + "://"
		}
		target += r.Host
		if r.Port != 0 {
			target += ":" + strconv.Itoa(r.Port)
		}
		target += r.Path
		return fmt.Sprintf("redirect %d %s", code, dash(target))
	case a.Respond != nil:
		return fmt.Sprintf("respond %d", a.Respond.Status)
	}
	return "-"
}
