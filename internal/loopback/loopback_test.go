package loopback_test

import (
	"errors"
	"net"
	"syscall"
	"testing"

	"github.com/gatehouse/gatehouse/internal/loopback"
)

// bindPlain binds 127.0.0.1:port without SO_REUSEADDR, as a program that
// does not expect to share a port would: it fails while anything holds it.
func bindPlain(t *testing.T, port int) error {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	return syscall.Bind(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
}

func TestReserve_HoldsThePortButTheChildCanListenOnIt(t *testing.T) {
	t.Parallel()
	p, err := loopback.Reserve()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Port <= 0 || p.Addr() != "127.0.0.1:"+p.String() {
		t.Fatalf("reserved %d, addr %q", p.Port, p.Addr())
	}
	if err := bindPlain(t, p.Port); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("binding the reserved port = %v, want EADDRINUSE: the reservation holds nothing", err)
	}
	// What the child does (Go sets SO_REUSEADDR), twice: a restart too.
	for range 2 {
		ln, err := net.Listen("tcp", p.Addr())
		if err != nil {
			t.Fatalf("the child cannot listen on its reserved port: %v", err)
		}
		ln.Close()
	}
	// The kernel's own choices skip it (Linux: bound ports are taken for
	// automatic choices).
	for range 2000 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		got := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if got == p.Port {
			t.Fatalf("the kernel handed out the reserved port %d", got)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bindPlain(t, p.Port); err != nil {
		t.Fatalf("after Close the port is still held: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

// The port is held on every local address, not only on 127.0.0.1: a child
// that listens on every address (a Gatehouse with PORT=P) fails while any
// socket has P on any address, so the kernel must hand P to none. An
// explicit bind without SO_REUSEADDR meets the same conflicts as the
// kernel's automatic choice, so it shows where the port is held.
func TestReserve_HoldsThePortOnEveryAddress(t *testing.T) {
	t.Parallel()
	p, err := loopback.Reserve()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	addrs := []struct {
		name   string
		family int
		sa     syscall.Sockaddr
	}{
		{"127.0.0.2", syscall.AF_INET, &syscall.SockaddrInet4{Port: p.Port, Addr: [4]byte{127, 0, 0, 2}}},
		{"0.0.0.0", syscall.AF_INET, &syscall.SockaddrInet4{Port: p.Port}},
	}
	if ln, err := net.Listen("tcp6", "[::1]:0"); err == nil { // IPv6 here
		ln.Close()
		addrs = append(addrs, struct {
			name   string
			family int
			sa     syscall.Sockaddr
		}{"[::1]", syscall.AF_INET6, &syscall.SockaddrInet6{Port: p.Port, Addr: [16]byte{15: 1}}})
	}
	for _, a := range addrs {
		fd, err := syscall.Socket(a.family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		err = syscall.Bind(fd, a.sa)
		syscall.Close(fd)
		if !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("binding %s:%d = %v, want EADDRINUSE: the kernel may hand the port out there", a.name, p.Port, err)
		}
	}
	// And the child still gets it, on every address as on loopback.
	for _, addr := range []string{":" + p.String(), p.Addr()} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("the child cannot listen on %s: %v", addr, err)
		}
		ln.Close()
	}
}

// A server stopped for an outage keeps its port: reserved while it is
// down, listened on again when it comes back.
func TestReservePort_KeepsAPortJustClosed(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	p, err := loopback.ReservePort(port)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Port != port {
		t.Fatalf("reserved %d, want %d", p.Port, port)
	}
	if err := bindPlain(t, port); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("binding the reserved port = %v, want EADDRINUSE", err)
	}
	if _, err := net.Dial("tcp", p.Addr()); err == nil {
		t.Fatal("a reserved port accepted a connection: a reservation never listens")
	}
	ln, err = net.Listen("tcp", p.Addr())
	if err != nil {
		t.Fatalf("listening again on the reserved port: %v", err)
	}
	ln.Close()
}
