package testenv

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
)

// Redis returns the URL of a real Redis for the test and a key prefix of
// its own, so that tests sharing one server never see each other's keys.
// It is GATEHOUSE_TEST_REDIS (scripts/test.sh starts one) or else a
// redis-server started for this test. There is no skipping: a test that
// needs Redis fails when none can be reached or started, in CI and out.
func Redis(t testing.TB) (redisURL, prefix string) {
	t.Helper()
	prefix = "test:" + randomHex(6) + ":"
	if u := os.Getenv("GATEHOUSE_TEST_REDIS"); u != "" {
		if err := pingRedis(u); err != nil {
			t.Fatalf("GATEHOUSE_TEST_REDIS=%s is not reachable: %v (scripts/test.sh starts it)", u, err)
		}
		return u, prefix
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true but GATEHOUSE_TEST_REDIS is not set: run the tests through scripts/test.sh")
	}
	return StartRedisServer(t).URL(), prefix
}

// UseRedis returns a config modifier for SESSION_STORE=redis on url with prefix.
func UseRedis(redisURL, prefix string) func(*config.Config) {
	return func(c *config.Config) {
		c.SessionStore = "redis"
		c.RedisURL = redisURL
		c.RedisKeyPrefix = prefix
	}
}

// RedisServer is a redis-server process owned by one test, which the test
// can stop and start again on the same port (a real outage).
type RedisServer struct {
	t    testing.TB
	bin  string
	port int
	dir  string
	args []string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// StartRedisServer starts a private redis-server without persistence on a
// free loopback port: GATEHOUSE_TEST_REDIS_SERVER names the binary, else
// PATH. extra arguments are added to the command line (e.g.
// "--requirepass", "x").
func StartRedisServer(t testing.TB, extra ...string) *RedisServer {
	t.Helper()
	bin := os.Getenv("GATEHOUSE_TEST_REDIS_SERVER")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("redis-server"); err != nil {
			t.Fatal("redis-server not found (set GATEHOUSE_TEST_REDIS_SERVER, or run scripts/test.sh, which installs it)")
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s := &RedisServer{t: t, bin: bin, port: port, dir: t.TempDir(), args: extra}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// URL is the server's redis:// URL.
func (s *RedisServer) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", s.port) }

// Addr is host:port.
func (s *RedisServer) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

// Start starts the server (again) and waits until it answers.
func (s *RedisServer) Start() {
	s.t.Helper()
	args := append([]string{"--port", fmt.Sprint(s.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--loglevel", "warning"}, s.args...)
	var err error
	for range 50 { // the port may still be in TIME_WAIT or taken by the old process
		cmd := exec.Command(s.bin, args...)
		if err = cmd.Start(); err != nil {
			s.t.Fatalf("start redis-server: %v", err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		if err = s.waitReady(done); err == nil {
			s.mu.Lock()
			s.cmd = cmd
			s.mu.Unlock()
			return
		}
		_ = cmd.Process.Kill()
		<-done
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("redis-server on port %d did not come up: %v", s.port, err)
}

func (s *RedisServer) waitReady(exited <-chan struct{}) error {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited")
		default:
		}
		if err := rawPing(s.Addr(), s.password()); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("no PONG within 5s")
}

func (s *RedisServer) password() string {
	for i, a := range s.args {
		if a == "--requirepass" && i+1 < len(s.args) {
			return s.args[i+1]
		}
	}
	return ""
}

// Stop kills the server (SIGKILL: as abrupt as a crashed pod) and waits
// until it is gone.
func (s *RedisServer) Stop() {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	for range 100 {
		if rawPing(s.Addr(), s.password()) != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Command runs one Redis command on the server and returns its reply
// line(s) as text (for INFO and assertions without a client).
func (s *RedisServer) Command(args ...string) (string, error) {
	return rawCommand(s.Addr(), s.password(), args...)
}

func pingRedis(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	pw, _ := u.User.Password()
	return rawPing(u.Host, pw)
}

func rawPing(addr, password string) error {
	reply, err := rawCommand(addr, password, "PING")
	if err != nil {
		return err
	}
	if reply != "PONG" {
		return fmt.Errorf("PING answered %q", reply)
	}
	return nil
}

// rawCommand speaks just enough RESP for PING and INFO.
func rawCommand(addr, password string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	r := bufio.NewReader(conn)
	if password != "" {
		if _, err := read(conn, r, "AUTH", password); err != nil {
			return "", err
		}
	}
	return read(conn, r, args...)
}

func read(conn net.Conn, r *bufio.Reader, args ...string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "+"), strings.HasPrefix(line, ":"):
		return line[1:], nil
	case strings.HasPrefix(line, "-"):
		return "", fmt.Errorf("redis: %s", line[1:])
	case strings.HasPrefix(line, "$"):
		var n int
		if _, err := fmt.Sscan(line[1:], &n); err != nil || n < 0 {
			return "", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("redis: unexpected reply %q", line)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
