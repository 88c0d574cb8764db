// Package testutil holds what tests of several packages share: waiting for
// a condition with a deadline instead of sleeping for ordering. It imports
// no other rafter package, so any test may use it.
package testutil
