//go:build !linux

package agent

// trimExecutablePages does nothing where fault-around is not known to
// inflate the resident set.
func trimExecutablePages() {}
