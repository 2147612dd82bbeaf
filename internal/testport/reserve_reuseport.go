//go:build linux || darwin || freebsd || netbsd || openbsd

package testport

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// reserve binds a TCP socket with SO_REUSEPORT, without listening, to the
// wildcard address on a port the kernel picks, and returns the port and how
// to let it go. The wildcard matters: a child's listener on ":port" (Caddy's
// for a site address with a host, all interfaces, IPv6 and IPv4) overlaps
// every address on the port, so a reservation of 127.0.0.1 alone would
// leave the port to a socket on another address (an outgoing connection's
// source port on the host's public address, say), and the child's bind
// would fail. A dual-stack [::] socket covers both families (0.0.0.0 where
// IPv6 is off). The kernel picks, for an automatic bind of a wildcard, only
// a port no socket of any address holds, and never hands a port with a
// bound socket to another automatic bind, reuseport or not.
func reserve() (int, func() error, error) {
	if port, release, err := bindReusePort6(0); err == nil {
		return port, release, nil
	}
	return bindReusePort(0)
}

// bindReusePort binds an IPv4 TCP socket with SO_REUSEPORT to 0.0.0.0:port
// (0: the kernel picks) without listening.
func bindReusePort(port int) (int, func() error, error) {
	return bindReuse(unix.AF_INET, &unix.SockaddrInet4{Port: port})
}

// bindReusePort6 is bindReusePort with a dual-stack IPv6 socket on [::].
func bindReusePort6(port int) (int, func() error, error) {
	return bindReuse(unix.AF_INET6, &unix.SockaddrInet6{Port: port})
}

func bindReuse(family int, sa unix.Sockaddr) (int, func() error, error) {
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, nil, fmt.Errorf("socket: %w", err)
	}
	release := func() error { return unix.Close(fd) }
	fail := func(what string, err error) (int, func() error, error) {
		_ = release()
		return 0, nil, fmt.Errorf("%s: %w", what, err)
	}
	if family == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
			return fail("clearing IPV6_V6ONLY", err)
		}
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return fail("setting SO_REUSEPORT", err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	var port int
	switch a := got.(type) {
	case *unix.SockaddrInet4:
		port = a.Port
	case *unix.SockaddrInet6:
		port = a.Port
	}
	if port == 0 {
		return fail("getsockname", fmt.Errorf("unexpected address %v", got))
	}
	return port, release, nil
}
