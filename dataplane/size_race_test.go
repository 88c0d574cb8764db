//go:build race

package dataplane

// The race detector slows byte copying down by an order of magnitude and
// adds its own shadow memory, so under -race the streaming test moves a
// smaller body; the 1 GiB figure is checked by the plain `go test` run.
const streamTestBytes = 64 << 20
