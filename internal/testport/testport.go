// Package testport hands tests loopback TCP ports without the race of
// "pick a free port, close it, let a child process bind it later": in the
// gap, any other process on the machine (another test binary of the same
// run, a second `go test` sharing the box, an outgoing connection's
// ephemeral source port) may take it, and the child fails with "bind:
// address already in use", or worse, a readiness probe reaches the other
// process.
//
// Reserve closes the gap for children that bind with SO_REUSEPORT, as
// Caddy does for every TCP listener (its admin endpoint included): the
// test process keeps a socket bound to the port on every address, with
// SO_REUSEPORT, but not listening, until the test ends. The kernel then gives the port to nobody
// else (neither to another bind, nor as an ephemeral port), while a child
// of the same user that sets SO_REUSEPORT binds it too. A socket that does
// not listen is never handed a connection, so every connection reaches the
// child.
//
// Children that cannot share a port (redis-server) take a port from Free
// and must be started with Start, which retries on another port when the
// child could not bind, and checks that what answers is the child itself.
package testport

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
)

// Reserve returns a TCP port that stays reserved, on every address, for the
// rest of the test: only a process of the same user that binds it with
// SO_REUSEPORT (Caddy, nginx with "listen … reuseport") can listen on it,
// on 127.0.0.1 or on all interfaces. On systems
// without SO_REUSEPORT it is a port that was free a moment ago.
func Reserve(t testing.TB) int {
	t.Helper()
	port, release, err := reserve()
	if err != nil {
		t.Fatalf("reserving a port: %v", err)
	}
	t.Cleanup(func() { _ = release() })
	return port
}

// ReservePort is Reserve for programs that are not tests (the benchmark
// harness): the caller releases the port when its child is done with it.
func ReservePort() (port int, release func() error, err error) { return reserve() }

// Hold keeps port from being taken while the child that owns it is
// stopped (a fault test restarting its redis-server): release it right
// before the child binds again. It is best effort: a port that something
// else already holds is not held (release is then a no-op).
func Hold(port int) (release func()) {
	_, rel, err := bindReusePort6(port)
	if err != nil {
		if _, rel, err = bindReusePort(port); err != nil {
			return func() {}
		}
	}
	return func() { _ = rel() }
}

// Free returns a port on 127.0.0.1 that was free a moment ago. A child
// process that binds it may still find it taken: start such children with
// Start, which retries.
func Free(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ErrInUse is what a Start function returns when its child could not bind
// its port (it exited saying so, or someone else answered there).
var ErrInUse = errors.New("port in use")

// InUse reports whether a child's output says that its bind failed.
func InUse(output string) bool {
	return strings.Contains(output, "Address already in use") || strings.Contains(output, "address already in use")
}

// Start runs start on ports from pick (Free when nil) until it succeeds,
// at most 10 times: start returns an error wrapping ErrInUse when its child
// could not bind the port, and should then have stopped the child; any
// other error fails the test at once.
func Start(t testing.TB, pick func(t testing.TB) int, start func(port int) error) int {
	t.Helper()
	if pick == nil {
		pick = Free
	}
	var last error
	for range 10 {
		port := pick(t)
		err := start(port)
		if err == nil {
			return port
		}
		if !errors.Is(err, ErrInUse) {
			t.Fatal(err)
		}
		last = err
	}
	t.Fatal(fmt.Errorf("no port to bind after 10 tries: %w", last))
	return 0
}
