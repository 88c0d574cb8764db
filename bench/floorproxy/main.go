// Command floorproxy runs the floors of the benchmark harness: the
// fasthttp floor (bench.FloorHandler), the least a fasthttp reverse proxy
// does, run by rafter-bench as the proxy "fasthttp"; and with --raw the
// raw Go floor (bench.ServeRawFloor), run as the proxy "go".
package main

import (
	"flag"
	"log"
	"net"
	"time"

	"github.com/rafterlb/rafter/bench"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve")
	backend := flag.String("backend", "", "backend host:port")
	timeout := flag.Duration("timeout", 30*time.Second, "read and write timeout, both sides")
	idle := flag.Duration("idle", 60*time.Second, "keep-alive idle timeout for clients")
	maxConns := flag.Int("max-conns", 4096, "most client and backend connections")
	raw := flag.Bool("raw", false, "serve the raw Go floor instead of the fasthttp one")
	flag.Parse()
	if *backend == "" {
		log.Fatal("floorproxy: --backend is required")
	}
	if *raw {
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			log.Fatal(err)
		}
		log.Fatal(bench.ServeRawFloor(ln, *backend, *timeout, *idle))
	}
	srv := bench.FloorServer(*backend, *timeout, *idle, *maxConns)
	if err := srv.ListenAndServe(*listen); err != nil {
		log.Fatal(err)
	}
}
