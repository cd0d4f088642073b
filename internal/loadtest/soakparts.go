package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/devidp"
	"github.com/gatehouse/gatehouse/internal/loopback"
)

// The parts the soak starts and breaks on purpose: an in-process provider
// that can go away and come back on the same address with its state (as
// ZITADEL restarting on its database), a redis-server with an append-only
// file written before every reply (a crash loses nothing), and Gatehouse
// processes that drain on SIGTERM. Everything listens on 127.0.0.1.

// serveLoopback serves h on 127.0.0.1:0 until stop is called.
func serveLoopback(h http.Handler) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr().String(), func() { _ = srv.Close() }, nil
}

// appClient registers Gatehouse at the provider for each of its public
// origins: the callback and the post-logout return.
func appClient(clientID string, appURLs []string) devidp.Client {
	c := devidp.Client{ID: clientID}
	for _, u := range appURLs {
		c.RedirectURIs = append(c.RedirectURIs, u+"/auth/callback")
		c.PostLogoutRedirectURIs = append(c.PostLogoutRedirectURIs, u+"/auth/logout/callback")
	}
	return c
}

// restartableProvider is the in-process OpenID provider.
type restartableProvider struct {
	url       string
	addr      string
	handler   http.Handler
	refreshes atomic.Int64
	codes     atomic.Int64

	mu   sync.Mutex
	srv  *http.Server
	held *loopback.Port // its port while it is stopped, for start
}

func startRestartableProvider(clientID string, appURLs []string, users []devidp.User, tokenTTL time.Duration) (*restartableProvider, error) {
	ln, issuer, err := devidp.Listen("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	idp, err := devidp.New(devidp.Options{Issuer: issuer, Clients: []devidp.Client{appClient(clientID, appURLs)}, Users: users, TokenTTL: tokenTTL})
	if err != nil {
		ln.Close()
		return nil, err
	}
	p := &restartableProvider{url: issuer, addr: ln.Addr().String(), handler: idp.Handler()}
	p.serve(ln)
	return p, nil
}

func (p *restartableProvider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/oauth/token") {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		r.Body = io.NopCloser(bytes.NewReader(body))
		switch form, _ := url.ParseQuery(string(body)); form.Get("grant_type") {
		case "refresh_token":
			p.refreshes.Add(1)
		case "authorization_code":
			p.codes.Add(1)
		}
	}
	p.handler.ServeHTTP(w, r)
}

func (p *restartableProvider) serve(ln net.Listener) {
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 5 * time.Second}
	p.mu.Lock()
	p.srv = srv
	p.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// stop takes the provider off the network at once: open connections are
// cut, as when its pod dies. Its port stays reserved (internal/loopback),
// so no other process on the machine is handed it meanwhile.
func (p *restartableProvider) stop() {
	p.mu.Lock()
	srv := p.srv
	p.srv = nil
	p.mu.Unlock()
	if srv == nil {
		return
	}
	_ = srv.Close()
	if _, port, err := net.SplitHostPort(p.addr); err == nil {
		if n, err := strconv.Atoi(port); err == nil {
			if held, err := loopback.ReservePort(n); err == nil {
				p.mu.Lock()
				p.held = held
				p.mu.Unlock()
			}
		}
	}
}

// start serves again on the same address (retrying while the port is
// still being released), then gives up the reservation stop made.
func (p *restartableProvider) start() error {
	var err error
	for range 100 {
		var ln net.Listener
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			p.release()
			p.serve(ln)
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("provider: listen again on %s: %w", p.addr, err)
}

// release gives up the port stop reserved (also at the end of the run).
func (p *restartableProvider) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held != nil {
		_ = p.held.Close()
		p.held = nil
	}
}

// redisProcess is a redis-server on a unix socket in a directory of its
// own (no port another process could take while it restarts), with
// appendfsync always.
type redisProcess struct {
	bin, dir string
	proc     *process
}

func startRedis(bin string) (*redisProcess, error) {
	// Not under TMPDIR of a test: a socket's path must stay under ~100 bytes.
	dir, err := os.MkdirTemp("", "gh-soak-redis-")
	if err != nil {
		return nil, err
	}
	r := &redisProcess{bin: bin, dir: dir}
	if err := r.start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return r, nil
}

func (r *redisProcess) socket() string { return filepath.Join(r.dir, "redis.sock") }

func (r *redisProcess) url() string { return "unix://" + r.socket() }

func (r *redisProcess) start() error {
	p, err := start(r.bin, []string{"--port", "0", "--unixsocket", r.socket(), "--unixsocketperm", "700", "--save", "",
		"--appendonly", "yes", "--appendfsync", "always", "--dir", r.dir, "--loglevel", "warning"}, nil)
	if err != nil {
		return err
	}
	r.proc = p
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return fmt.Errorf("redis-server exited at start: %s", p.stderr.String())
		default:
		}
		if redisPing(r.socket()) == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.stop()
	return errors.New("redis-server did not answer PING within 15s")
}

// kill stops the server as a crash would (SIGKILL).
func (r *redisProcess) kill() {
	if r.proc != nil {
		_ = r.proc.cmd.Process.Kill()
		<-r.proc.exited
	}
}

// restart starts it again on the same socket, loading its append-only file.
func (r *redisProcess) restart() error { return r.start() }

func (r *redisProcess) close() {
	if r.proc != nil {
		r.proc.stop()
	}
	os.RemoveAll(r.dir)
}

// redisPing speaks just enough RESP to ask for PONG.
func redisPing(socket string) error {
	c, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// instance is one Gatehouse process: the built binary with its own port
// and admin port, its JSON log read line by line.
type instance struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
	addr   string // public listener
	admin  string // admin listener (/metrics)
	stderr *limitedBuffer
	logs   *logCounter
}

// logCounter keeps what the soak needs from the instances' logs: the
// listen addresses and when a session was ended because its refresh
// failed (and why).
type logCounter struct {
	mu            sync.Mutex
	refreshEnded  []logEvent
	warnings      int
	lastWarning   string
	unparsedLines int
}

type logEvent struct {
	At     time.Time
	Reason string
}

// read reads one process's log; its listen addresses go to listening and
// admin (buffered: one each).
func (l *logCounter) read(r io.Reader, listening, admin chan<- string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var line struct {
			Msg    string `json:"msg"`
			Level  string `json:"level"`
			Addr   string `json:"addr"`
			Reason string `json:"reason"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			l.mu.Lock()
			l.unparsedLines++
			l.mu.Unlock()
			continue
		}
		switch line.Msg {
		case "listening":
			listening <- line.Addr
		case "admin listening":
			admin <- line.Addr
		case auth.LogRefreshEndedSession:
			l.mu.Lock()
			l.refreshEnded = append(l.refreshEnded, logEvent{At: time.Now(), Reason: line.Reason})
			l.mu.Unlock()
		}
		if line.Level == "WARN" || line.Level == "ERROR" {
			l.mu.Lock()
			l.warnings++
			l.lastWarning = sc.Text()
			l.mu.Unlock()
		}
	}
}

// startInstance starts Gatehouse with env on a port the kernel picks
// (PORT=0; the balancer takes the address from its "listening" line) and
// waits until /readyz answers 200.
func startInstance(ctx context.Context, name, bin string, env []string, logs *logCounter) (*instance, error) {
	env = append(env[:len(env):len(env)], "PORT=0")
	cmd := exec.Command(bin, "-env-file", os.DevNull)
	cmd.Env = env
	cmd.Dir = os.TempDir()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr := &limitedBuffer{b: &bytes.Buffer{}, max: 64 << 10}
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	listening, admin := make(chan string, 1), make(chan string, 1)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	inst := &instance{name: name, cmd: cmd, exited: make(chan struct{}), stderr: stderr, logs: logs}
	readDone := make(chan struct{})
	go func() { logs.read(stdout, listening, admin); close(readDone) }()
	go func() { <-readDone; _ = cmd.Wait(); close(inst.exited) }()
	timeout := time.After(readyTimeout)
	for inst.addr == "" || inst.admin == "" {
		select {
		case inst.addr = <-listening:
		case inst.admin = <-admin:
		case <-inst.exited:
			return nil, fmt.Errorf("%s exited at start: %s", name, stderr.b.String())
		case <-timeout:
			inst.kill()
			return nil, fmt.Errorf("%s did not log its listen addresses within %v", name, readyTimeout)
		case <-ctx.Done():
			inst.kill()
			return nil, ctx.Err()
		}
	}
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for deadline := time.Now().Add(readyTimeout); ; {
		if resp, err := client.Get("http://" + inst.addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return inst, nil
			}
		}
		if time.Now().After(deadline) {
			inst.kill()
			return nil, fmt.Errorf("%s: /readyz not 200 within %v: %s", name, readyTimeout, stderr.b.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (i *instance) pid() int { return i.cmd.Process.Pid }

// terminate sends SIGTERM and waits for the drain to end (at most
// within, then SIGKILL); it reports whether the exit was clean.
func (i *instance) terminate(within time.Duration) error {
	_ = i.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-i.exited:
	case <-time.After(within):
		i.kill()
		return fmt.Errorf("%s did not exit within %v of SIGTERM", i.name, within)
	}
	if code := i.cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("%s exited %d after SIGTERM: %s", i.name, code, i.stderr.b.String())
	}
	return nil
}

func (i *instance) kill() {
	_ = i.cmd.Process.Kill()
	<-i.exited
}

// runtimeFigures reads go_goroutines and go_memstats_heap_inuse_bytes
// from the admin listener's /metrics.
func (i *instance) runtimeFigures() (goroutines int, heapInuse int64, err error) {
	resp, err := http.Get("http://" + i.admin + "/metrics")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	found := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		switch name {
		case "go_goroutines":
			n, perr := strconv.ParseFloat(value, 64)
			goroutines, err = int(n), errors.Join(err, perr)
			found++
		case "go_memstats_heap_inuse_bytes":
			n, perr := strconv.ParseFloat(value, 64)
			heapInuse, err = int64(n), errors.Join(err, perr)
			found++
		}
	}
	if err == nil && found < 2 {
		err = fmt.Errorf("%s/metrics lacks go_goroutines or go_memstats_heap_inuse_bytes", i.admin)
	}
	return goroutines, heapInuse, errors.Join(err, sc.Err())
}
