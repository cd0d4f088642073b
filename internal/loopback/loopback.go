// Package loopback reserves TCP ports for child processes that cannot
// listen on port 0 and report the port back: redis-server, nginx, Caddy,
// or a Gatehouse whose callback URL must name its port before it starts.
// Whatever can listen on 127.0.0.1:0 and read the address should.
//
// A reservation is a socket bound to 127.0.0.1:P with SO_REUSEADDR that
// never listens. Linux then never hands P out when another socket binds
// port 0 on 127.0.0.1 or connects (an automatic choice skips bound
// ports), while a program that binds P itself with SO_REUSEADDR (Go's net
// package, redis-server, nginx and Caddy all set it) can listen on it. So
// the port stays the child's from the moment the kernel chose it, also
// across restarts, until Close.
//
// A fresh port (Reserve) is held on every other address too, 0.0.0.0:P
// and [::]:P, the same way: a child that listens on every address (a
// Gatehouse with PORT=P) fails while any socket uses P on any address,
// and a port the kernel chose for 127.0.0.1 may be in use on another one
// (a connection's local port, a port-0 bind on [::1] or the host's own
// address). One such run died with "address already in use".
package loopback

import (
	"errors"
	"fmt"
	"strconv"
	"syscall"
)

// Port is a reserved port.
type Port struct {
	Port int
	fd   int
	more []int // the holds on every other address (Reserve)
}

// Reserve asks the kernel for a free port on 127.0.0.1 and holds it there
// and on every other address. A port in use on another address is let go
// and another one asked for.
func Reserve() (*Port, error) {
	for range 32 {
		p, err := ReservePort(0)
		if err != nil {
			return nil, err
		}
		if err := p.holdEverywhere(); err == nil {
			return p, nil
		}
		p.Close()
	}
	return nil, errors.New("reserve a loopback port: no port free on every address in 32 tries")
}

// holdEverywhere binds 0.0.0.0:P and, where there is IPv6, [::]:P (IPv6
// only: the IPv4 side is the first socket's) like the reservation itself.
func (p *Port) holdEverywhere() error {
	v4, err := hold(syscall.AF_INET, &syscall.SockaddrInet4{Port: p.Port})
	if err != nil {
		return err
	}
	p.more = append(p.more, v4)
	v6, err := hold(syscall.AF_INET6, &syscall.SockaddrInet6{Port: p.Port})
	if errors.Is(err, syscall.EAFNOSUPPORT) { // no IPv6 here
		return nil
	}
	if err != nil {
		return err
	}
	p.more = append(p.more, v6)
	return nil
}

// hold binds a socket of family to addr with SO_REUSEADDR (and
// IPV6_V6ONLY for IPv6) that never listens. Close-on-exec: the child binds
// the port itself and must not inherit the reservation.
func hold(family int, addr syscall.Sockaddr) (int, error) {
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		syscall.Close(fd)
		return -1, fmt.Errorf("SO_REUSEADDR: %w", err)
	}
	if family == syscall.AF_INET6 {
		if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, 1); err != nil {
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

// ReservePort holds a given loopback port, one that was just in use: a
// server taken off the network to cause an outage keeps its port for
// coming back (the kernel may hand out a closed port at once).
func ReservePort(port int) (*Port, error) {
	fd, err := hold(syscall.AF_INET, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
	if err != nil {
		return nil, fmt.Errorf("reserve a loopback port: %w", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("reserve a loopback port: %w", err)
	}
	return &Port{Port: sa.(*syscall.SockaddrInet4).Port, fd: fd}, nil
}

// Addr is "127.0.0.1:PORT".
func (p *Port) Addr() string { return "127.0.0.1:" + strconv.Itoa(p.Port) }

// String is the port number.
func (p *Port) String() string { return strconv.Itoa(p.Port) }

// Close releases the port; calling it again does nothing.
func (p *Port) Close() error {
	for _, fd := range p.more {
		syscall.Close(fd)
	}
	p.more = nil
	if p.fd < 0 {
		return nil
	}
	err := syscall.Close(p.fd)
	p.fd = -1
	return err
}
