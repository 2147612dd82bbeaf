//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package testport

import "net"

// reserve, without SO_REUSEPORT, only finds a port that is free now.
func reserve() (int, func() error, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, nil, err
	}
	return port, func() error { return nil }, nil
}

// bindReusePort cannot hold a port without SO_REUSEPORT.
func bindReusePort(port int) (int, func() error, error) {
	return port, func() error { return nil }, nil
}

// bindReusePort6 cannot either.
func bindReusePort6(port int) (int, func() error, error) { return bindReusePort(port) }
