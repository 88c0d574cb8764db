// Package testutil holds what tests of several packages share: waiting for
// a condition with a deadline instead of sleeping for ordering (Eventually,
// Poll), a fake clock, and the harness for tests that run real rafter
// processes: building the binary once (BuildRafter, RunWithRafter), ports
// free on several addresses at once (FreePorts), a child process with its
// output in a log file (Process), and the admin API as those tests speak it
// (Admin, Response, Status).
//
// Of rafter it imports only internal/adminhttp, which imports nothing of
// rafter, so any test may use it; the parts that do not take a testing.TB
// also serve the benchmark harness.
package testutil
