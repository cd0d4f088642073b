package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// A target is one request the throughput phase repeats.
type target struct {
	name   string
	addr   string // 127.0.0.1:port
	path   string
	cookie string // sent as is ("" for none)
	pid    int    // the serving process, for its CPU time
}

// request is what a browser sends on a same-origin navigation; bare and
// Gatehouse targets get the same headers (cookie included), so parsing
// them costs both the same.
func (t target) request() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\n", t.path, t.addr)
	b.WriteString("User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0 Safari/537.36 gatehouse-load\r\n")
	b.WriteString("Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n")
	b.WriteString("Accept-Language: en-GB,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br\r\n")
	b.WriteString("Sec-Fetch-Site: same-origin\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Dest: document\r\n")
	if t.cookie != "" {
		b.WriteString("Cookie: " + t.cookie + "\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// Throughput is one target's measurement.
type Throughput struct {
	Requests  int
	Elapsed   time.Duration
	RPS       float64
	P50, P99  time.Duration
	ServerCPU time.Duration // the server process's CPU time during the window
	BodyBytes int
}

// CPUPerRequest is the server's CPU time per request.
func (t Throughput) CPUPerRequest() time.Duration {
	if t.Requests == 0 {
		return 0
	}
	return t.ServerCPU / time.Duration(t.Requests)
}

// hammer sends t's request over conns keep-alive connections: warmup
// first (not counted), then duration counted. Every answer must be 200.
// It uses its own minimal HTTP/1.1 client: net/http's client costs more
// CPU than a small server's handler, and client and servers share the
// machine, so a heavy client would hide the servers' differences.
func hammer(ctx context.Context, t target, conns int, warmup, duration time.Duration) (Throughput, error) {
	req := t.request()
	var (
		stop     atomic.Bool
		counting atomic.Bool
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
		lat      = make([][]int64, conns)
		bodies   atomic.Int64
	)
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err })
		stop.Store(true)
	}
	for i := range conns {
		c, err := net.DialTimeout("tcp", t.addr, 5*time.Second)
		if err != nil {
			stop.Store(true)
			wg.Wait()
			return Throughput{}, fmt.Errorf("%s: dial: %w", t.name, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			br := bufio.NewReaderSize(c, 64<<10)
			own := make([]int64, 0, 1<<14)
			for !stop.Load() {
				t0 := time.Now()
				if _, err := c.Write(req); err != nil {
					fail(fmt.Errorf("%s: write: %w", t.name, err))
					return
				}
				status, n, err := readResponse(br)
				if err != nil {
					fail(fmt.Errorf("%s: read: %w", t.name, err))
					return
				}
				if status != 200 {
					fail(fmt.Errorf("%s: GET %s answered %d, want 200", t.name, t.path, status))
					return
				}
				if counting.Load() {
					own = append(own, int64(time.Since(t0)))
					bodies.Store(int64(n))
				}
			}
			lat[i] = own
		}()
	}
	sleep(ctx, warmup)
	cpu0, err0 := cpuTime(t.pid)
	counting.Store(true)
	begin := time.Now()
	sleep(ctx, duration)
	counting.Store(false)
	elapsed := time.Since(begin)
	cpu1, err1 := cpuTime(t.pid)
	stop.Store(true)
	wg.Wait()
	if firstErr != nil {
		return Throughput{}, firstErr
	}
	if err := errors.Join(err0, err1, ctx.Err()); err != nil {
		return Throughput{}, fmt.Errorf("%s: %w", t.name, err)
	}
	all := slices.Concat(lat...)
	if len(all) == 0 {
		return Throughput{}, fmt.Errorf("%s: no request completed in %v", t.name, duration)
	}
	slices.Sort(all)
	return Throughput{
		Requests: len(all), Elapsed: elapsed, RPS: float64(len(all)) / elapsed.Seconds(),
		P50: time.Duration(all[len(all)/2]), P99: time.Duration(all[len(all)*99/100]),
		ServerCPU: cpu1 - cpu0, BodyBytes: int(bodies.Load()),
	}, nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// readResponse reads one HTTP/1.1 response and returns its status and
// body length (Content-Length or chunked).
func readResponse(br *bufio.Reader) (int, int, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, 0, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, 0, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, 0, fmt.Errorf("bad status line %q", line)
	}
	length, chunked := -1, false
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return 0, 0, fmt.Errorf("headers: %w", err)
		}
		if len(line) <= 2 {
			break
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(v)); err != nil {
				return 0, 0, fmt.Errorf("bad Content-Length %q", v)
			}
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(v, []byte("chunked"))
		case bytes.EqualFold(k, []byte("Connection")):
			if bytes.EqualFold(v, []byte("close")) {
				return 0, 0, errors.New("server closed the keep-alive connection")
			}
		}
	}
	switch {
	case chunked:
		return status, 0, readChunked(br)
	case length >= 0:
		_, err = br.Discard(length)
		return status, length, err
	}
	return 0, 0, errors.New("response without length")
}

func readChunked(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		size, err := strconv.ParseInt(string(bytes.TrimSpace(bytes.SplitN(line, []byte(";"), 2)[0])), 16, 64)
		if err != nil {
			return fmt.Errorf("bad chunk size %q", line)
		}
		if size == 0 {
			for { // trailers up to the empty line
				if line, err = br.ReadSlice('\n'); err != nil || len(line) <= 2 {
					return err
				}
			}
		}
		if _, err := br.Discard(int(size) + 2); err != nil {
			return err
		}
	}
}

// hammerCount sends t's request n times over one connection.
func hammerCount(ctx context.Context, t target, n int) (int, error) {
	c, err := net.DialTimeout("tcp", t.addr, 5*time.Second)
	if err != nil {
		return 0, fmt.Errorf("%s: dial: %w", t.name, err)
	}
	defer c.Close()
	br := bufio.NewReaderSize(c, 64<<10)
	req := t.request()
	for i := range n {
		if err := ctx.Err(); err != nil {
			return i, err
		}
		if _, err := c.Write(req); err != nil {
			return i, fmt.Errorf("%s: write: %w", t.name, err)
		}
		status, _, err := readResponse(br)
		if err != nil {
			return i, fmt.Errorf("%s: read: %w", t.name, err)
		}
		if status != 200 {
			return i, fmt.Errorf("%s: GET %s answered %d, want 200", t.name, t.path, status)
		}
	}
	return n, nil
}
