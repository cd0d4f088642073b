package loadtest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// balancer is the soak's small load balancer in front of two Gatehouse
// instances, behaving as a Kubernetes Service with a readiness-aware
// ingress would: it sends requests only to instances whose /readyz
// answers 200 (polled every pollEvery), round robin, and it retries a
// request on the other instance when doing so cannot repeat an action.
// An instance leaves the rotation at once when /readyz answers anything
// else or its port refuses connections, but only after failedChecks
// checks in a row got no answer within checkTimeout (the chart's
// readiness probe: timeoutSeconds 2, failureThreshold 2): on a machine
// busy with other work a slow answer is not an outage. Retried:
//
//   - a connection that could not be made (refused, reset while dialing):
//     the instance never saw the request, whatever its method;
//   - any other failure of a GET or HEAD except /auth/callback, whose
//     code can be used once only (a repeat would fail at the provider).
//
// Request bodies (small forms) are buffered so that a retried POST can be
// sent again. Nothing else is retried: a POST whose connection broke after
// it was sent may have taken effect, and a 5xx is the instance's answer.
type balancer struct {
	proxy     *httputil.ReverseProxy
	transport *http.Transport
	pollEvery time.Duration

	mu       sync.Mutex
	backends []*backend
	next     int

	retries  atomic.Int64 // requests sent again to the other instance
	failures atomic.Int64 // requests answered 502 by the balancer
}

type backend struct {
	addr    string // host:port; "" while the instance is down
	ready   bool
	unheard int // readiness checks in a row that got no answer in time
}

const (
	checkTimeout = 2 * time.Second
	failedChecks = 2
)

// errNoBackend: no instance is ready.
var errNoBackend = errors.New("no ready instance")

func newBalancer(n int, pollEvery time.Duration) *balancer {
	b := &balancer{pollEvery: pollEvery, transport: &http.Transport{
		DialContext:           (&net.Dialer{Timeout: time.Second}).DialContext,
		ResponseHeaderTimeout: 30 * time.Second,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       30 * time.Second,
	}}
	for range n {
		b.backends = append(b.backends, &backend{})
	}
	b.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetXForwarded() // the client's address, for the rate limits (TRUSTED_PROXIES lists this balancer)
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", "backend"
			pr.Out.Host = pr.In.Host
		},
		Transport: b,
		ErrorLog:  log.New(io.Discard, "", 0),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			b.failures.Add(1)
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	return b
}

// ServeHTTP buffers the body (forms: at most 64 KiB) and proxies.
func (b *balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Body != nil && r.Body != http.NoBody {
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		if err != nil {
			http.Error(w, "body", http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		r.ContentLength = int64(len(body))
	}
	b.proxy.ServeHTTP(w, r)
}

// set points backend i at addr ("" takes it out); it counts as ready
// once its /readyz says so.
func (b *balancer) set(i int, addr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.backends[i].addr, b.backends[i].ready, b.backends[i].unheard = addr, false, 0
}

// pick returns a ready backend other than those in skip, round robin.
func (b *balancer) pick(skip map[string]bool) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for range b.backends {
		be := b.backends[b.next%len(b.backends)]
		b.next++
		if be.ready && be.addr != "" && !skip[be.addr] {
			return be.addr, true
		}
	}
	return "", false
}

func (b *balancer) markDown(addr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, be := range b.backends {
		if be.addr == addr {
			be.ready = false
		}
	}
}

// RoundTrip sends the request to a ready instance, and to the other one
// when the first attempt failed in a way that is safe to repeat.
func (b *balancer) RoundTrip(req *http.Request) (*http.Response, error) {
	tried := map[string]bool{}
	var lastErr error = errNoBackend
	for attempt := 0; attempt < 2; attempt++ {
		addr, ok := b.pick(tried)
		if !ok {
			return nil, lastErr
		}
		out := req.Clone(req.Context())
		out.URL.Host = addr
		if req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			out.Body = body
		}
		resp, err := b.transport.RoundTrip(out)
		if err == nil {
			return resp, nil
		}
		lastErr = err
		tried[addr] = true
		notSent := isDialError(err)
		if notSent {
			b.markDown(addr)
		}
		if !retryable(req, notSent) {
			return nil, err
		}
		b.retries.Add(1)
	}
	return nil, lastErr
}

// retryable: see balancer.
func retryable(req *http.Request, notSent bool) bool {
	switch {
	case req.Context().Err() != nil:
		return false
	case notSent:
		return true
	case req.URL.Path == "/auth/callback":
		return false
	}
	return req.Method == http.MethodGet || req.Method == http.MethodHead
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// watch polls every backend's /readyz until ctx ends.
func (b *balancer) watch(ctx context.Context) {
	client := &http.Client{Timeout: checkTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	t := time.NewTicker(b.pollEvery)
	defer t.Stop()
	for {
		b.check(client)
		select {
		case <-ctx.Done():
			b.transport.CloseIdleConnections()
			return
		case <-t.C:
		}
	}
}

// check asks every backend's /readyz once (see balancer for what takes an
// instance out of the rotation).
func (b *balancer) check(client *http.Client) {
	b.mu.Lock()
	addrs := make([]string, len(b.backends))
	for i, be := range b.backends {
		addrs[i] = be.addr
	}
	b.mu.Unlock()
	for i, addr := range addrs {
		ready, unheard := false, false
		if addr != "" {
			resp, err := client.Get("http://" + addr + "/readyz")
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				ready = resp.StatusCode == http.StatusOK
			} else {
				unheard = !errors.Is(err, syscall.ECONNREFUSED) // a slow or lost answer, not a closed port
			}
		}
		b.mu.Lock()
		if be := b.backends[i]; be.addr == addr {
			if unheard {
				be.unheard++
				if be.unheard >= failedChecks {
					be.ready = false
				}
			} else {
				be.ready, be.unheard = ready, 0
			}
		}
		b.mu.Unlock()
	}
}
