package loadtest

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gatehouse/gatehouse/internal/loopback"
)

// buildGatehouse compiles the stripped static binary the way a release
// does, into dir, and returns its path.
func buildGatehouse(ctx context.Context, moduleDir, dir string) (string, error) {
	bin := filepath.Join(dir, "gatehouse")
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", "production,grpcnotrace", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/gatehouse")
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build gatehouse: %w\n%s", err, out)
	}
	return bin, nil
}

// progress prints a timestamped line per call on w (nothing when w is nil).
func progress(w io.Writer) func(format string, args ...any) {
	return func(format string, args ...any) {
		if w != nil {
			fmt.Fprintf(w, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
		}
	}
}

// buildHere builds this tree's binary (buildGatehouse) into a new
// temporary directory; done removes it.
func buildHere(ctx context.Context) (bin string, done func(), err error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "gatehouse-load-")
	if err != nil {
		return "", nil, err
	}
	if bin, err = buildGatehouse(ctx, root, dir); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

// reservePorts holds n loopback ports for children that must know their
// port before they start (a callback URL, a provider's registration names
// it); release gives them up once the children are gone.
func reservePorts(n int) (ports []int, release func(), err error) {
	held := make([]*loopback.Port, 0, n)
	release = func() {
		for _, r := range held {
			r.Close()
		}
	}
	for range n {
		r, err := loopback.Reserve()
		if err != nil {
			release()
			return nil, nil, err
		}
		held = append(held, r)
		ports = append(ports, r.Port)
	}
	return ports, release, nil
}

// moduleRoot is the directory of the go.mod that builds this program.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the gatehouse module: run from the repository")
	}
	return filepath.Dir(gomod), nil
}

// isStatic reports whether the ELF binary asks for no dynamic loader.
func isStatic(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
}

// process is a child the load test started; it dies with the load test.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{}
	stderr *bytes.Buffer
}

func start(name string, args, env []string) (*process, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = env
	cmd.Dir = os.TempDir()
	cmd.Stdout = nil // /dev/null: logs are written (their cost counts), not kept
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{b: &stderr, max: 64 << 10}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", filepath.Base(name), err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{}), stderr: &stderr}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// stop ends the process (SIGTERM, then SIGKILL after a while).
func (p *process) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// waitStatus polls url until it answers want, the process exits, or
// timeout passes; it returns when the answer came.
func waitStatus(p *process, url string, want int, timeout time.Duration) (time.Time, error) {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return time.Time{}, fmt.Errorf("exited before %s answered %d: %s", url, want, p.stderr.String())
		default:
		}
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return time.Now(), nil
			}
		}
		time.Sleep(time.Millisecond)
	}
	return time.Time{}, fmt.Errorf("%s did not answer %d within %v: %s", url, want, timeout, p.stderr.String())
}

// rssBytes is the resident set size of a process.
func rssBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat's CPU times; it is
// 100 on every Linux the Go runtime supports.
const clockTick = 100

// cpuTime is the user+system CPU time a process has used.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields count from the ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * time.Second / clockTick, nil
}
