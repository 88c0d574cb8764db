// Command floorproxy is the fasthttp floor of the benchmark harness
// (bench.FloorHandler): the least a fasthttp reverse proxy does, run by
// rafter-bench as the proxy "fasthttp".
package main

import (
	"flag"
	"log"
	"time"

	"github.com/rafterlb/rafter/bench"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve")
	backend := flag.String("backend", "", "backend host:port")
	timeout := flag.Duration("timeout", 30*time.Second, "read and write timeout, both sides")
	idle := flag.Duration("idle", 60*time.Second, "keep-alive idle timeout for clients")
	maxConns := flag.Int("max-conns", 4096, "most client and backend connections")
	flag.Parse()
	if *backend == "" {
		log.Fatal("floorproxy: --backend is required")
	}
	srv := bench.FloorServer(*backend, *timeout, *idle, *maxConns)
	if err := srv.ListenAndServe(*listen); err != nil {
		log.Fatal(err)
	}
}
