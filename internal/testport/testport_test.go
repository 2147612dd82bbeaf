package testport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// listenReusePort listens on addr with SO_REUSEPORT, as Caddy does.
func listenReusePort(addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
		return errors.Join(err, serr)
	}}
	return lc.Listen(context.Background(), "tcp", addr)
}

// TestReserve: nobody else binds a reserved port, a SO_REUSEPORT listener
// (Caddy) does and gets every connection; after the test the port is free.
func TestReserve(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SO_REUSEPORT semantics checked on Linux")
	}
	var port int
	t.Run("reserved", func(t *testing.T) {
		port = Reserve(t)
		addr := "127.0.0.1:" + strconv.Itoa(port)
		// No plain listener gets it, on any address (a socket on another
		// address would make a child's bind of all interfaces fail).
		for _, a := range []string{addr, "127.0.0.2:" + strconv.Itoa(port), ":" + strconv.Itoa(port), "0.0.0.0:" + strconv.Itoa(port), "[::1]:" + strconv.Itoa(port)} {
			if l, err := net.Listen("tcp", a); err == nil {
				l.Close()
				t.Fatalf("a plain listener on %s got the reserved port", a)
			}
		}
		// A SO_REUSEPORT listener on all interfaces, as Caddy's for a site
		// address with a host, binds it.
		wide, err := listenReusePort(":" + strconv.Itoa(port))
		if err != nil {
			t.Fatalf("a SO_REUSEPORT listener on all interfaces cannot bind the reserved port: %v", err)
		}
		wide.Close()
		// No automatic bind (another test's free port) gets it either.
		for range 2000 {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			got := l.Addr().(*net.TCPAddr).Port
			l.Close()
			if got == port {
				t.Fatalf("net.Listen on :0 was given the reserved port %d", port)
			}
		}
		child, err := listenReusePort(addr)
		if err != nil {
			t.Fatalf("a SO_REUSEPORT listener cannot bind the reserved port: %v", err)
		}
		defer child.Close()
		go func() {
			for {
				c, err := child.Accept()
				if err != nil {
					return
				}
				fmt.Fprint(c, "child")
				c.Close()
			}
		}()
		for i := range 50 {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			buf := make([]byte, 5)
			if _, err := c.Read(buf); err != nil || string(buf) != "child" {
				t.Fatalf("connection %d did not reach the listener: %q %v", i, buf, err)
			}
			c.Close()
		}
	})
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("the port is still held after its test ended: %v", err)
	}
	l.Close()
}

// TestStartRetries: a child that finds its port taken is started again on
// another one; other errors end the test.
func TestStartRetries(t *testing.T) {
	var tried []int
	got := Start(t, nil, func(port int) error {
		tried = append(tried, port)
		if len(tried) < 3 {
			return fmt.Errorf("child on %d: %w", port, ErrInUse)
		}
		return nil
	})
	if len(tried) != 3 || got != tried[2] {
		t.Fatalf("tried %v, got %d", tried, got)
	}
	if !InUse("# Warning: Could not create server TCP listening socket 127.0.0.1:6379: bind: Address already in use") {
		t.Fatal("redis-server's bind failure not recognized")
	}
}
