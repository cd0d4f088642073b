// Package loopback reserves loopback TCP ports for child processes that
// cannot listen on port 0 and report the port back: redis-server, nginx,
// Caddy, or a Gatehouse whose callback URL must name its port before it
// starts. Whatever can listen on 127.0.0.1:0 and read the address should.
//
// A reservation is a socket bound to 127.0.0.1:P with SO_REUSEADDR that
// never listens. Linux then never hands P out when another socket binds
// port 0 or connects (an automatic choice skips bound ports), while a
// program that binds P itself with SO_REUSEADDR (Go's net package,
// redis-server, nginx and Caddy all set it) can listen on it. So the port
// stays the child's from the moment the kernel chose it, also across
// restarts, until Close.
package loopback

import (
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
	// Close-on-exec: the child binds the port itself and must not inherit
	// the reservation.
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("reserve a loopback port: %w", err)
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("reserve a loopback port: SO_REUSEADDR: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("reserve a loopback port: bind: %w", err)
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
	if p.fd < 0 {
		return nil
	}
	err := syscall.Close(p.fd)
	p.fd = -1
	return err
}
