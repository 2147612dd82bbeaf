package testredis

import (
	"errors"
	"net"
	"os/exec"
	"strconv"
	"testing"

	"github.com/keygate/keygate/internal/testport"
)

// TestStartDetectsTakenPort: a redis-server whose port is taken (by a
// plain listener, or by another redis-server that answers in its place)
// is reported as testport.ErrInUse, which makes StartServer retry on
// another port, instead of the test talking to whatever holds the port.
func TestStartDetectsTakenPort(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	other := StartServer(t)
	for _, port := range []int{taken, other.Port} {
		s := &Server{t: t, Port: port, Addr: "127.0.0.1:" + strconv.Itoa(port),
			args: []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir()}}
		t.Cleanup(s.cleanup)
		if err := s.start(); !errors.Is(err, testport.ErrInUse) {
			t.Fatalf("redis-server on taken port %d: %v, want ErrInUse", port, err)
		}
	}
	// The server that holds its port still answers as itself.
	if err := other.Client().Ping(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
}
