package ratelimit

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestAllow_BurstThenRefusesWithWaitThenRefills(t *testing.T) {
	t.Parallel()
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	l := New(Options{PerMinute: 60, Burst: 3, Now: clk.Now})
	a := netip.MustParseAddr("198.51.100.1")
	for i := range 3 {
		if ok, _ := l.Allow(a); !ok {
			t.Fatalf("request %d within the burst refused", i+1)
		}
	}
	ok, wait := l.Allow(a)
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("4th request: ok=%v wait=%v, want refused with a wait of at most 1s", ok, wait)
	}
	// Refusals must not push the next token further away.
	for range 10 {
		l.Allow(a)
	}
	clk.Add(time.Second)
	if ok, _ := l.Allow(a); !ok {
		t.Fatal("after 1s at 60/min, one request must be allowed again")
	}
	if ok, _ := l.Allow(netip.MustParseAddr("198.51.100.2")); !ok {
		t.Fatal("another client shares the first one's bucket")
	}
}

func TestAllow_IPv6ClientsShareTheir64(t *testing.T) {
	t.Parallel()
	l := New(Options{PerMinute: 1, Burst: 1})
	if ok, _ := l.Allow(netip.MustParseAddr("2001:db8:1:2::1")); !ok {
		t.Fatal("first request refused")
	}
	if ok, _ := l.Allow(netip.MustParseAddr("2001:db8:1:2:ffff::9")); ok {
		t.Fatal("another address in the same /64 got a fresh bucket")
	}
	if ok, _ := l.Allow(netip.MustParseAddr("2001:db8:1:3::1")); !ok {
		t.Fatal("another /64 was refused")
	}
}

func TestAllow_MemoryIsBounded(t *testing.T) {
	t.Parallel()
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	const max = 1000
	l := New(Options{PerMinute: 60, Burst: 5, MaxClients: max, Now: clk.Now})
	for i := range 50 * max {
		l.Allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
		if n := l.Len(); n > max {
			t.Fatalf("after %d clients the map holds %d, more than MaxClients %d", i+1, n, max)
		}
	}
}

func TestAllow_WhenFullForgetsRefilledClientsFirst(t *testing.T) {
	t.Parallel()
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	l := New(Options{PerMinute: 60, Burst: 2, MaxClients: 10, Now: clk.Now})
	for i := range 9 {
		l.Allow(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}))
	}
	clk.Add(2 * time.Second) // their buckets are full again: forgetting them is harmless
	busy := netip.MustParseAddr("198.51.100.1")
	l.Allow(busy)
	l.Allow(busy) // bucket empty now; the map is full (10)
	l.Allow(netip.MustParseAddr("192.0.2.200"))
	if n := l.Len(); n != 2 {
		t.Fatalf("after making room the map holds %d clients, want 2 (busy and the newcomer; the 9 refilled ones forgotten)", n)
	}
	if ok, _ := l.Allow(busy); ok {
		t.Fatal("the busy client was forgotten and got a fresh bucket")
	}
}

func TestMiddleware_429WithRetryAfter(t *testing.T) {
	t.Parallel()
	l := New(Options{PerMinute: 6, Burst: 1})
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTooManyRequests)
	}))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	do := func() *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/auth/signin/zitadel", nil)
		r.RemoteAddr = "198.51.100.1:1234"
		h.ServeHTTP(rec, r)
		return rec
	}
	if rec := do(); rec.Code != http.StatusOK {
		t.Fatalf("first request = %d", rec.Code)
	}
	rec := do()
	secs, err := strconv.Atoi(rec.Header().Get("Retry-After"))
	if rec.Code != http.StatusTooManyRequests || err != nil || secs < 1 || secs > 10 {
		t.Fatalf("second request = %d Retry-After %q, want 429 with 1..10 s", rec.Code, rec.Header().Get("Retry-After"))
	}
}

func BenchmarkAllow_ManyClients(b *testing.B) {
	l := New(Options{PerMinute: 60, Burst: 20, MaxClients: 10_000})
	addrs := make([]netip.Addr, 50_000)
	for i := range addrs {
		addrs[i] = netip.MustParseAddr(fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255))
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		l.Allow(addrs[i%len(addrs)])
	}
}
