package dataplane

import "time"

// Ceilings the data plane applies to configured numbers before it turns
// them into buffer sizes, deadlines or weights. fsm validation bounds them
// too; these keep a value that slipped through (or a validation bound that
// was raised) from panicking the node or overflowing a computation.
const (
	// maxHeaderBytesCeiling bounds the per-connection read buffer, which
	// fasthttp allocates in full for every connection.
	maxHeaderBytesCeiling = 1 << 20
	// maxTimeoutCeiling bounds every timeout: time.Now().Add of a larger
	// value could overflow into the past.
	maxTimeoutCeiling = 7 * 24 * time.Hour
	maxConnsCeiling   = 1 << 20
	// maxWeightCeiling keeps sums of weights far from overflowing.
	maxWeightCeiling = 1 << 20
)

func clampInt(v, hi int) int { return min(v, hi) }

func clampDuration(d time.Duration) time.Duration { return min(d, maxTimeoutCeiling) }
