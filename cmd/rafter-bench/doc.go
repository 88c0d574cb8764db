// Command rafter-bench runs rafter's benchmark suite (package bench) side by
// side with HAProxy and nginx and prints a Markdown summary. It only parses
// flags; everything else is in package bench.
package main
