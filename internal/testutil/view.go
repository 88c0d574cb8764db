package testutil

import (
	"encoding/json"
	"fmt"
	"slices"
)

// ClusterView is what a change that must be invisible to the cluster (an
// in-place upgrade) may not alter: the Raft members (id, Raft address,
// suffrage) and the VIP assignments (vip=holder@token), each sorted.
type ClusterView struct{ Members, VIPs []string }

// ParseClusterView reads a ClusterView from the bodies of GET /v1/status
// and GET /v1/vips.
func ParseClusterView(status, vips []byte) (ClusterView, error) {
	var v ClusterView
	var st struct {
		Members []struct {
			ID       string `json:"id"`
			RaftAddr string `json:"raft_addr"`
			Suffrage string `json:"suffrage"`
		} `json:"members"`
	}
	if err := json.Unmarshal(status, &st); err != nil {
		return v, fmt.Errorf("status: %w", err)
	}
	for _, m := range st.Members {
		v.Members = append(v.Members, m.ID+" "+m.RaftAddr+" "+m.Suffrage)
	}
	var list struct {
		Items []struct {
			Name       string `json:"name"`
			Assignment *struct {
				Holder string `json:"holder"`
				Token  uint64 `json:"token"`
			} `json:"assignment"`
		} `json:"items"`
	}
	if err := json.Unmarshal(vips, &list); err != nil {
		return v, fmt.Errorf("vips: %w", err)
	}
	for _, it := range list.Items {
		if it.Assignment != nil {
			v.VIPs = append(v.VIPs, fmt.Sprintf("%s=%s@%d", it.Name, it.Assignment.Holder, it.Assignment.Token))
		}
	}
	slices.Sort(v.Members)
	slices.Sort(v.VIPs)
	return v, nil
}
