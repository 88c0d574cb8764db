//go:build !race

package dataplane

// streamTestBytes is the body the streaming test sends each way.
const streamTestBytes = 1 << 30
