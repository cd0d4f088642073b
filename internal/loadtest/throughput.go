package loadtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// A target is one request the throughput phase repeats.
type target struct {
	name   string
	addr   string // 127.0.0.1:port
	path   string
	cookie string   // sent as is ("" for none)
	extra  []string // more headers ("Name: value"), e.g. a proxy's
	status int      // the answer expected; 0: 200
	pid    int      // the serving process, for its CPU time
	api    bool     // an API client's request: apiHeaders instead of a browser's
}

// browserHeaders are what a browser sends on a same-origin navigation; bare
// and Gatehouse targets get the same headers (cookie included), so parsing
// them costs both the same.
var browserHeaders = []string{
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0 Safari/537.36 gatehouse-load",
	"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
	"Accept-Language: en-GB,en;q=0.9",
	"Accept-Encoding: gzip, deflate, br",
	"Sec-Fetch-Site: same-origin",
	"Sec-Fetch-Mode: navigate",
	"Sec-Fetch-Dest: document",
}

// apiHeaders are what an API client sends besides its token.
var apiHeaders = []string{"User-Agent: gatehouse-load-api/1.0", "Accept: application/json"}

func (t target) url() string { return "http://" + t.addr + t.path }

func (t target) headers() []string {
	base := browserHeaders
	if t.api {
		base = apiHeaders
	}
	h := append(append([]string(nil), base...), t.extra...)
	if t.cookie == "" {
		return h
	}
	return append(h, "Cookie: "+t.cookie)
}

func (t target) wantStatus() int {
	if t.status == 0 {
		return http.StatusOK
	}
	return t.status
}

// Throughput is one target's measurement.
type Throughput struct {
	Requests  int
	Elapsed   time.Duration
	RPS       float64
	P50, P99  time.Duration
	ServerCPU time.Duration // the server process's CPU time during the window
}

// CPUPerRequest is the server's CPU time per request.
func (t Throughput) CPUPerRequest() time.Duration {
	if t.Requests == 0 {
		return 0
	}
	return t.ServerCPU / time.Duration(t.Requests)
}

// wrkReport makes wrk print its summary as one line the load test parses:
// requests, duration (µs), p50 and p99 latency (µs), and the error counts.
const wrkReport = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("gatehouse-load %d %d %d %d %d %d %d %d %d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
`

// hammer runs wrk (Debian's package; scripts/test.sh installs it) against
// t over conns keep-alive connections: warmup first (not counted; whole
// seconds, 0 for none), then duration counted, the server's CPU time read
// around it. wrk is a C program with one thread here, so the client takes
// little of the CPU the servers share with it; with pin on, it runs on
// the client's CPU, apart from the servers'. wrk counts answers of 400
// and above as errors, any of which fails the measurement; a refused
// session would redirect instead, so the target is checked for a 200
// before and after.
func hammer(ctx context.Context, t target, conns int, warmup, duration time.Duration, pin Pinning) (Throughput, error) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		return Throughput{}, errors.New("wrk not found: apt-get install wrk (scripts/test.sh installs it)")
	}
	dir, err := os.MkdirTemp("", "gatehouse-load-wrk-")
	if err != nil {
		return Throughput{}, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "report.lua")
	if err := os.WriteFile(script, []byte(wrkReport), 0o644); err != nil {
		return Throughput{}, err
	}
	if err := expect200(ctx, t); err != nil {
		return Throughput{}, err
	}
	run := func(d time.Duration) (string, error) {
		args := []string{"-t1", "-c" + strconv.Itoa(conns), "-d" + strconv.Itoa(int(d/time.Second)) + "s", "-s", script}
		for _, h := range t.headers() {
			args = append(args, "-H", h)
		}
		name, args := pin.client(wrk, append(args, t.url()))
		out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("%s: wrk: %w: %s", t.name, err, out)
		}
		return string(out), nil
	}
	if warmup >= time.Second {
		if _, err := run(warmup); err != nil {
			return Throughput{}, err
		}
	}
	cpu0, err0 := cpuTime(t.pid)
	out, err := run(max(duration, time.Second))
	cpu1, err1 := cpuTime(t.pid)
	if err := errors.Join(err, err0, err1); err != nil {
		return Throughput{}, err
	}
	th, err := parseWrk(out)
	if err != nil {
		return Throughput{}, fmt.Errorf("%s: %w", t.name, err)
	}
	th.ServerCPU = cpu1 - cpu0
	return th, expect200(ctx, t)
}

// parseWrk reads the line wrkReport prints.
func parseWrk(out string) (Throughput, error) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 10 || f[0] != "gatehouse-load" {
			continue
		}
		var n [9]int64
		for i := range n {
			v, err := strconv.ParseInt(f[i+1], 10, 64)
			if err != nil {
				return Throughput{}, fmt.Errorf("wrk report %q: %w", sc.Text(), err)
			}
			n[i] = v
		}
		if errs := n[4] + n[5] + n[6] + n[7] + n[8]; errs > 0 {
			return Throughput{}, fmt.Errorf("wrk saw %d errors (connect %d, read %d, write %d, status >= 400 %d, timeout %d)",
				errs, n[4], n[5], n[6], n[7], n[8])
		}
		if n[0] == 0 {
			return Throughput{}, errors.New("no request completed")
		}
		elapsed := time.Duration(n[1]) * time.Microsecond
		return Throughput{
			Requests: int(n[0]), Elapsed: elapsed, RPS: float64(n[0]) / elapsed.Seconds(),
			P50: time.Duration(n[2]) * time.Microsecond, P99: time.Duration(n[3]) * time.Microsecond,
		}, nil
	}
	return Throughput{}, fmt.Errorf("no report line in wrk's output: %q", out)
}

// expect200 sends t's request once and wants a 200 (or t's status).
func expect200(ctx context.Context, t target) error {
	_, err := get(ctx, http.DefaultClient, t)
	return err
}

// get sends t's request with client and returns the body's size; anything
// but a 200 (or t's status) is an error.
func get(ctx context.Context, client *http.Client, t target) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url(), nil)
	if err != nil {
		return 0, err
	}
	for _, h := range t.headers() {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", t.name, err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || resp.StatusCode != t.wantStatus() {
		return 0, fmt.Errorf("%s: GET %s answered %d, want %d (%v)", t.name, t.path, resp.StatusCode, t.wantStatus(), err)
	}
	return int(n), nil
}

// hammerCount sends t's request n times over one keep-alive connection.
func hammerCount(ctx context.Context, t target, n int) error {
	tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	for range n {
		if _, err := get(ctx, client, t); err != nil {
			return err
		}
	}
	return nil
}
