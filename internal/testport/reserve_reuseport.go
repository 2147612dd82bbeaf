//go:build linux || darwin || freebsd || netbsd || openbsd

package testport

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// reserve binds a TCP socket with SO_REUSEPORT to 127.0.0.1 on a port the
// kernel picks, without listening, and returns the port and how to let it go.
// The kernel never picks a port with a bound socket for another socket's
// automatic bind, reuseport or not, so the port is nobody else's.
func reserve() (int, func() error, error) { return bindReusePort(0) }

// bindReusePort binds a TCP socket with SO_REUSEPORT to 127.0.0.1:port
// (0: the kernel picks) without listening.
func bindReusePort(port int) (int, func() error, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, nil, fmt.Errorf("socket: %w", err)
	}
	release := func() error { return unix.Close(fd) }
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		_ = release()
		return 0, nil, fmt.Errorf("setting SO_REUSEPORT: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port}); err != nil {
		_ = release()
		return 0, nil, fmt.Errorf("bind: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		_ = release()
		return 0, nil, fmt.Errorf("getsockname: %w", err)
	}
	in4, ok := sa.(*unix.SockaddrInet4)
	if !ok || in4.Port == 0 {
		_ = release()
		return 0, nil, fmt.Errorf("getsockname: unexpected address %v", sa)
	}
	return in4.Port, release, nil
}
