package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/seal"
	"github.com/gatehouse/gatehouse/internal/session"
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
		opts, err := redis.ParseURL(u)
		if err == nil {
			err = ping(opts)
		}
		if err != nil {
			t.Fatalf("GATEHOUSE_TEST_REDIS=%s is not reachable: %v (scripts/test.sh starts it)", u, err)
		}
		return u, prefix
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true but GATEHOUSE_TEST_REDIS is not set: run the tests through scripts/test.sh")
	}
	return StartRedisServer(t).URL(), prefix
}

// RedisStore is a session.RedisStore on redisURL with prefix, sealed with
// secret (testenv's SESSION_SECRET when empty, so it reads the apps'
// sessions), on a client closed when the test ends.
func RedisStore(t testing.TB, redisURL, prefix, secret string) *session.RedisStore {
	t.Helper()
	if secret == "" {
		secret = sessionSecret
	}
	client, err := session.NewRedisClient(redisURL, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	sealer, err := seal.New(secret, "", "session")
	if err != nil {
		t.Fatal(err)
	}
	return session.NewRedisStore(client, sealer, session.CookieOptions{}, time.Now, prefix)
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
// can stop and start again (a real outage). It listens on a unix socket in
// a directory of its own, never on a TCP port another process could hold.
type RedisServer struct {
	t      testing.TB
	bin    string
	dir    string
	socket string
	args   []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartRedisServer starts a private redis-server without persistence:
// GATEHOUSE_TEST_REDIS_SERVER names the binary, else PATH. extra arguments
// are added to the command line (e.g. "--requirepass", "x").
func StartRedisServer(t testing.TB, extra ...string) *RedisServer {
	t.Helper()
	bin := os.Getenv("GATEHOUSE_TEST_REDIS_SERVER")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("redis-server"); err != nil {
			t.Fatal("redis-server not found (set GATEHOUSE_TEST_REDIS_SERVER, or run scripts/test.sh, which installs it)")
		}
	}
	// Not t.TempDir(): a unix socket's path must stay under ~100 bytes.
	dir, err := os.MkdirTemp("", "redis-")
	if err != nil {
		t.Fatal(err)
	}
	s := &RedisServer{t: t, bin: bin, dir: dir, socket: filepath.Join(dir, "redis.sock"), args: extra}
	t.Cleanup(func() { s.Stop(); _ = os.RemoveAll(dir) })
	s.Start()
	return s
}

// URL is the server's unix:// URL (with the password given as
// --requirepass, if any).
func (s *RedisServer) URL() string { return s.URLWithPassword(s.password()) }

// URLWithPassword is the server's unix:// URL carrying password.
func (s *RedisServer) URLWithPassword(password string) string {
	u := url.URL{Scheme: "unix", Path: s.socket}
	if password != "" {
		u.User = url.UserPassword("", password)
	}
	return u.String()
}

// Start starts the server (again) and waits until it answers.
func (s *RedisServer) Start() {
	s.t.Helper()
	args := append([]string{"--port", "0", "--unixsocket", s.socket, "--unixsocketperm", "700",
		"--save", "", "--appendonly", "no", "--dir", s.dir, "--loglevel", "warning"}, s.args...)
	cmd := exec.Command(s.bin, args...)
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	opts := &redis.Options{Network: "unix", Addr: s.socket, Password: s.password()}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := ping(opts)
		if err == nil {
			return
		}
		select {
		case <-exited:
			s.t.Fatalf("redis-server exited at start: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server did not answer within 10s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
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
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// Command runs one Redis command on the server and returns its reply as
// text (for INFO and assertions).
func (s *RedisServer) Command(args ...string) (string, error) {
	c := redis.NewClient(&redis.Options{Network: "unix", Addr: s.socket, Password: s.password()})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	cmd := make([]any, len(args))
	for i, a := range args {
		cmd[i] = a
	}
	return c.Do(ctx, cmd...).Text()
}

func ping(opts *redis.Options) error {
	opts.MaxRetries, opts.DialTimeout = -1, time.Second
	c := redis.NewClient(opts)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
