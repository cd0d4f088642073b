package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

// binDir holds the binary built once per test process (TestMain removes it).
var binDir string

var build struct {
	once sync.Once
	path string
	err  error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gatehouse-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	binDir = dir
	// The forward-auth tests' in-process provider logs every request
	// through the default logger.
	slog.SetDefault(slog.New(slog.DiscardHandler))
	code := m.Run()
	stopBrowser()
	os.RemoveAll(dir)
	os.Exit(code)
}

// gatehouseBinary builds cmd/gatehouse once per test process: the tests
// run the real binary, as an operator would.
func gatehouseBinary(t *testing.T) string {
	t.Helper()
	build.once.Do(func() {
		path := filepath.Join(binDir, "gatehouse")
		cmd := exec.Command("go", "build", "-o", path, "github.com/gatehouse/gatehouse/cmd/gatehouse")
		out, err := cmd.CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("go build: %w\n%s", err, out)
			return
		}
		build.path = path
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.path
}

// app is a running gatehouse -dev process.
type app struct {
	URL string // http://localhost:PORT, the origin the dev provider registers
	IdP string // the development provider's issuer, http://127.0.0.1:PORT

	cmd  *exec.Cmd
	out  *testenv.SyncBuffer
	done chan struct{}
}

// startApp runs the real binary with -dev on free ports. Each test gets its
// own process: sessions, sign-in limits and provider state never leak
// between tests.
func startApp(t *testing.T) *app {
	t.Helper()
	a, err := launch(t, gatehouseBinary(t))
	if err != nil {
		t.Fatalf("start gatehouse: %v", err)
	}
	return a
}

// launch starts the binary with PORT=0 and the provider on 127.0.0.1:0:
// the kernel picks both ports, and the development banner names them.
func launch(t *testing.T, bin string) (*app, error) {
	dir := t.TempDir()
	cmd := exec.Command(bin, "-dev", "-dev-idp-addr", "127.0.0.1:0", "-env-file", filepath.Join(dir, "none.env"))
	cmd.Dir = dir
	// A small, explicit environment: a developer's ZITADEL_* or REDIS_*
	// settings must not change what the tests see.
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dir,
		"PORT=0",
		"ADMIN_ADDR=off",
		"SESSION_STORE=cookie",
		"LOG_FORMAT=text",
		"LOG_LEVEL=info",
		"SHUTDOWN_DELAY=0s",
		"SHUTDOWN_TIMEOUT=5s",
	}
	out := &testenv.SyncBuffer{}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	a := &app{cmd: cmd, out: out, done: make(chan struct{})}
	type urls struct{ app, idp string }
	banner := make(chan urls, 1)
	read := make(chan struct{}) // the output is read to its end
	go func() {
		defer close(read)
		defer close(banner)
		openRE := regexp.MustCompile(`Open:\s+(http://localhost:\d+)`)
		idpRE := regexp.MustCompile(`Identity provider:\s+(http://\S+)`)
		var u urls
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			out.WriteLine(line)
			if m := openRE.FindStringSubmatch(line); m != nil && u.app == "" {
				u.app = m[1]
			}
			if m := idpRE.FindStringSubmatch(line); m != nil && u.idp == "" {
				u.idp = m[1]
			}
			if u.app != "" && u.idp != "" && !sent {
				banner <- u
				sent = true
			}
		}
		_, _ = io.Copy(io.Discard, stdout) // past a line too long to scan: the app must never block on a full pipe
	}()
	// Wait closes the pipe: only after the reader got everything (os/exec),
	// or the last lines, the ones a failure is about, could be lost.
	go func() { <-read; _ = cmd.Wait(); close(a.done) }()

	t.Cleanup(func() {
		a.stop()
		if t.Failed() {
			t.Logf("gatehouse output:\n%s", out.String())
		}
	})

	select {
	case u := <-banner:
		a.URL, a.IdP = u.app, u.idp
	case <-a.done:
		return nil, fmt.Errorf("gatehouse exited at start:\n%s", out.String())
	case <-time.After(20 * time.Second):
		a.stop()
		return nil, fmt.Errorf("no development banner within 20s:\n%s", out.String())
	}
	if a.URL == "" {
		return nil, fmt.Errorf("gatehouse closed its output at start:\n%s", out.String())
	}
	if err := a.waitReady(20 * time.Second); err != nil {
		a.stop()
		return nil, err
	}
	return a, nil
}

// waitReady polls /readyz: it is 200 once the provider's discovery and keys
// are loaded, so the first sign-in cannot meet a 503.
func (a *app) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-a.done:
			return fmt.Errorf("gatehouse exited:\n%s", a.out.String())
		default:
		}
		resp, err := client.Get(a.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("gatehouse not ready within %s:\n%s", limit, a.out.String())
}

// stop sends SIGTERM (the graceful path) and kills after 10 s.
func (a *app) stop() {
	select {
	case <-a.done:
		return
	default:
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
	}
}

// repoRoot is the module root, for paths given relative to it.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			t.Fatalf("no go.mod above %s", dir)
		}
	}
}

var errTimeout = errors.New("timed out")

// eventually retries f until it returns nil or limit passes.
func eventually(limit time.Duration, f func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w after %s: %v", errTimeout, limit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// shorten keeps log lines readable.
func shorten(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
