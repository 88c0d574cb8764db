// Package sdnotify tells systemd about a service's state over the
// NOTIFY_SOCKET datagram socket (sd_notify(3)), for units with Type=notify.
// It imports nothing from rafter.
package sdnotify

import (
	"fmt"
	"net"
)

// Messages of sd_notify(3) the agent sends.
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
)

// Notify sends state to the socket named by socket (the value of
// NOTIFY_SOCKET). It reports false, and sends nothing, when socket is ""
// (not started by systemd, or a unit type other than notify). An address
// starting with '@' is in the abstract namespace.
func Notify(socket, state string) (bool, error) {
	if socket == "" {
		return false, nil
	}
	addr := &net.UnixAddr{Name: socket, Net: "unixgram"}
	if socket[0] == '@' {
		addr.Name = "\x00" + socket[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		return false, fmt.Errorf("sd_notify %s: %w", socket, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("sd_notify %s: %w", socket, err)
	}
	return true, nil
}
