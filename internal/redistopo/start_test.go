package redistopo

import (
	"errors"
	"net"
	"strconv"
	"testing"

	"github.com/keygate/keygate/internal/testport"
)

// TestNodeDetectsTakenPort: a node whose port is taken is reported as
// testport.ErrInUse (so startNode retries on another port); what holds
// the port is never mistaken for the node.
func TestNodeDetectsTakenPort(t *testing.T) {
	need(t, "redis-server")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	n := newNode(t, l.Addr().(*net.TCPAddr).Port)
	n.args = append([]string{"--port", strconv.Itoa(n.Port)}, dataArgs(n)...)
	if err := n.start(); !errors.Is(err, testport.ErrInUse) {
		t.Fatalf("node on a taken port: %v, want ErrInUse", err)
	}
	ok := startNode(t, false, func(n *Node) {
		n.args = append([]string{"--port", strconv.Itoa(n.Port)}, dataArgs(n)...)
	})
	if _, err := ok.Do("ping"); err != nil {
		t.Fatal(err)
	}
}
