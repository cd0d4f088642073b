// Package loopback reserves loopback TCP ports for child processes that
// cannot listen on port 0 and report the port back: redis-server, nginx,
// Caddy, or a Gatehouse whose callback URL must name its port before it
// starts. Whatever can listen on 127.0.0.1:0 and read the address should.
//
// A reservation is a socket bound to P on every local address ([::] with
// IPv4 too, or 0.0.0.0 where there is no IPv6) with SO_REUSEADDR that
// never listens. Linux then never hands P out when another socket binds
// port 0, on any address, or connects (an automatic choice skips bound
// ports), while a program that binds P itself with SO_REUSEADDR (Go's net
// package, redis-server, nginx and Caddy all set it) can listen on it,
// on 127.0.0.1 or on every address (a Gatehouse with PORT=P). So the port
// stays the child's from the moment the kernel chose it, also across
// restarts, until Close. (Held on 127.0.0.1 only, P could go to a socket
// bound to another address, [::1] or the host's own, and then a child
// listening on every address failed with "address already in use".)
package loopback

import (
	"errors"
	"fmt"
	"strconv"
	"syscall"
)

// Port is a reserved loopback port.
type Port struct {
	Port int
	fd   int
}

// Reserve asks the kernel for a free loopback port and holds it.
func Reserve() (*Port, error) { return ReservePort(0) }

// ReservePort holds a given loopback port, one that was just in use: a
// server taken off the network to cause an outage keeps its port for
// coming back (the kernel may hand out a closed port at once).
func ReservePort(port int) (*Port, error) {
	fd, err := reserve(syscall.AF_INET6, &syscall.SockaddrInet6{Port: port})
	if errors.Is(err, syscall.EAFNOSUPPORT) || errors.Is(err, syscall.EADDRNOTAVAIL) { // no IPv6 here
		fd, err = reserve(syscall.AF_INET, &syscall.SockaddrInet4{Port: port})
	}
	if err != nil {
		return nil, fmt.Errorf("reserve a loopback port: %w", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("reserve a loopback port: %w", err)
	}
	switch a := sa.(type) {
	case *syscall.SockaddrInet6:
		return &Port{Port: a.Port, fd: fd}, nil
	case *syscall.SockaddrInet4:
		return &Port{Port: a.Port, fd: fd}, nil
	}
	syscall.Close(fd)
	return nil, fmt.Errorf("reserve a loopback port: bound to %T", sa)
}

// reserve binds a socket of family to addr (a wildcard address) with
// SO_REUSEADDR, for IPv6 with IPv4 too (IPV6_V6ONLY off).
func reserve(family int, addr syscall.Sockaddr) (int, error) {
	// Close-on-exec: the child binds the port itself and must not inherit
	// the reservation.
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		syscall.Close(fd)
		return -1, fmt.Errorf("SO_REUSEADDR: %w", err)
	}
	if family == syscall.AF_INET6 {
		if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, 0); err != nil {
			syscall.Close(fd)
			return -1, fmt.Errorf("IPV6_V6ONLY: %w", err)
		}
	}
	if err := syscall.Bind(fd, addr); err != nil {
		syscall.Close(fd)
		return -1, fmt.Errorf("bind: %w", err)
	}
	return fd, nil
}

// Addr is "127.0.0.1:PORT".
func (p *Port) Addr() string { return "127.0.0.1:" + strconv.Itoa(p.Port) }

// String is the port number.
func (p *Port) String() string { return strconv.Itoa(p.Port) }

// Close releases the port; calling it again does nothing.
func (p *Port) Close() error {
	if p.fd < 0 {
		return nil
	}
	err := syscall.Close(p.fd)
	p.fd = -1
	return err
}
