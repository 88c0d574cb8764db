// Package adminhttp sends one request to a rafter admin API the way every
// caller inside the module does: with a bearer token, reading a bounded
// answer whole. It imports nothing from rafter, so product code and test
// support may both use it.
package adminhttp
