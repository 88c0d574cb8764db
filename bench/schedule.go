package bench

import (
	"fmt"
	"slices"
)

// Phase is what a slice measures.
type Phase string

const (
	// Saturation: wrk with a fixed number of connections, as fast as it goes.
	Saturation Phase = "saturation"
	// Latency: the paced open-loop client at a rate below saturation.
	Latency Phase = "latency"
)

// SliceSpec says what one slice runs.
type SliceSpec struct {
	Phase     Phase  `json:"phase"`
	BodyBytes int    `json:"body_bytes"`
	Round     int    `json:"round"`
	Pos       int    `json:"pos"` // position inside the round, 0-based
	Proxy     string `json:"proxy"`
}

func (s SliceSpec) String() string {
	return fmt.Sprintf("%s/%dB round %d pos %d %s", s.Phase, s.BodyBytes, s.Round, s.Pos, s.Proxy)
}

// Schedule interleaves proxies in rounds of A-B-...-B-A: the reference
// first, then the others in order, then the same sequence mirrored, so the
// reference opens and closes every round and any drift inside the round
// shows up as a difference between its two slices. Every proxy therefore
// runs exactly twice per round, once in each half, which cancels a linear
// drift for all of them alike.
func Schedule(phase Phase, body int, proxies []string, reference string, rounds int) []SliceSpec {
	order := make([]string, 0, len(proxies))
	order = append(order, reference)
	for _, p := range proxies {
		if p != reference {
			order = append(order, p)
		}
	}
	mirrored := slices.Clone(order)
	slices.Reverse(mirrored)
	round := append(slices.Clone(order), mirrored...)

	out := make([]SliceSpec, 0, rounds*len(round))
	for r := 0; r < rounds; r++ {
		for pos, p := range round {
			out = append(out, SliceSpec{Phase: phase, BodyBytes: body, Round: r, Pos: pos, Proxy: p})
		}
	}
	return out
}
