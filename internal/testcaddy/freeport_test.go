package testcaddy

import (
	"net"
	"strconv"
	"testing"
)

// TestFreePortIsReserved: between FreePort and the moment a Caddy binds
// the port, no other process can take it (issue 23: a test's Caddy failed
// with "bind: address already in use" when another test run shared the
// machine).
func TestFreePortIsReserved(t *testing.T) {
	port := FreePort(t)
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err == nil {
		l.Close()
		t.Fatalf("another listener took port %d between FreePort and the server's start", port)
	}
}
