package testutil

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
)

// portSpan is how far below the ephemeral range FreePorts looks.
const portSpan = 12000

// FreePorts finds n distinct ports that are free on every one of ips, for
// processes that bind the same port on several addresses, as separate
// hosts would. They are drawn from below the kernel's ephemeral range: a
// port taken from inside it ("listen on :0", then close) may be handed to
// another test's listener or to an outgoing connection before the process
// binds it, which is a real race when packages' tests run in parallel.
func FreePorts(ips []string, n int) ([]int, error) {
	if len(ips) == 0 || n < 1 {
		return nil, errors.New("FreePorts: no address or no port asked for")
	}
	hi := ephemeralLow()
	lo := max(1024, hi-portSpan)
	var got []int
	for tries := 0; tries < 200*n && len(got) < n; tries++ {
		port := lo + rand.IntN(hi-lo)
		if !slices.Contains(got, port) && freeOnAll(ips, port) {
			got = append(got, port)
		}
	}
	if len(got) < n {
		return nil, fmt.Errorf("no %d ports free on every one of %v", n, ips)
	}
	return got, nil
}

func freeOnAll(ips []string, port int) bool {
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for _, ip := range ips {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err != nil {
			return false
		}
		held = append(held, l)
	}
	return true
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux's
// default when the range cannot be read).
func ephemeralLow() int {
	const linuxDefault = 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return linuxDefault
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return linuxDefault
	}
	low, err := strconv.Atoi(f[0])
	if err != nil || low <= 1024+1000 {
		return linuxDefault
	}
	return low
}
