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

func TestTake_BurstThenRefusesWithWaitThenRefills(t *testing.T) {
	t.Parallel()
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	l := New(Options{PerMinute: 60, Burst: 3, Now: clk.Now})
	a := Client{Addr: netip.MustParseAddr("198.51.100.1")}
	for i := range 3 {
		if ok, _ := l.Take(a); !ok {
			t.Fatalf("request %d within the burst refused", i+1)
		}
	}
	ok, wait := l.Take(a)
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("4th request: ok=%v wait=%v, want refused with a wait of at most 1s", ok, wait)
	}
	// Refusals must not push the next token further away.
	for range 10 {
		l.Take(a)
	}
	clk.Add(time.Second)
	if ok, _ := l.Take(a); !ok {
		t.Fatal("after 1s at 60/min, one request must be allowed again")
	}
	if ok, _ := l.Take(Client{Addr: netip.MustParseAddr("198.51.100.2")}); !ok {
		t.Fatal("another client shares the first one's bucket")
	}
}

func TestTake_IPv6ClientsShareTheir64(t *testing.T) {
	t.Parallel()
	l := New(Options{PerMinute: 1, Burst: 1})
	if ok, _ := l.Take(Client{Addr: netip.MustParseAddr("2001:db8:1:2::1")}); !ok {
		t.Fatal("first request refused")
	}
	if ok, _ := l.Take(Client{Addr: netip.MustParseAddr("2001:db8:1:2:ffff::9")}); ok {
		t.Fatal("another address in the same /64 got a fresh bucket")
	}
	if ok, _ := l.Take(Client{Addr: netip.MustParseAddr("2001:db8:1:3::1")}); !ok {
		t.Fatal("another /64 was refused")
	}
}

func TestTake_MemoryIsBounded(t *testing.T) {
	t.Parallel()
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	const max = 1000
	l := New(Options{PerMinute: 60, Burst: 5, MaxClients: max, Now: clk.Now})
	for i := range 50 * max {
		l.Take(Client{Addr: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})})
		if n := l.Len(); n > max {
			t.Fatalf("after %d clients the map holds %d, more than MaxClients %d", i+1, n, max)
		}
	}
}

func TestTake_WhenFullForgetsRefilledClientsFirst(t *testing.T) {
	t.Parallel()
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	l := New(Options{PerMinute: 60, Burst: 2, MaxClients: 10, Now: clk.Now})
	for i := range 9 {
		l.Take(Client{Addr: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})})
	}
	clk.Add(2 * time.Second) // their buckets are full again: forgetting them is harmless
	busy := Client{Addr: netip.MustParseAddr("198.51.100.1")}
	l.Take(busy)
	l.Take(busy) // bucket empty now; the map is full (10)
	l.Take(Client{Addr: netip.MustParseAddr("192.0.2.200")})
	if n := l.Len(); n != 2 {
		t.Fatalf("after making room the map holds %d clients, want 2 (busy and the newcomer; the 9 refilled ones forgotten)", n)
	}
	if ok, _ := l.Take(busy); ok {
		t.Fatal("the busy client was forgotten and got a fresh bucket")
	}
}

func TestMiddleware_429WithRetryAfter(t *testing.T) {
	t.Parallel()
	l := New(Options{PerMinute: 6, Burst: 1})
	h := l.Middleware(func(w http.ResponseWriter, r *http.Request, _ Client) {
		w.WriteHeader(http.StatusTooManyRequests)
	}, nil)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
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

func TestGive_SucceededAttemptsCostNothingAndNeverExceedTheBurst(t *testing.T) {
	t.Parallel()
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	l := New(Options{PerMinute: 1, Burst: 3, Now: clk.Now}) // no refill to speak of
	c := Client{Addr: netip.MustParseAddr("198.51.100.1")}
	for i := range 1000 { // an office signing in, all successfully
		if ok, _ := l.Take(c); !ok {
			t.Fatalf("attempt %d refused although every earlier one gave its token back", i+1)
		}
		l.Give(c)
	}
	for range 10 {
		l.Give(c) // gifts beyond the burst are not kept
	}
	for i := range 3 {
		if ok, _ := l.Take(c); !ok {
			t.Fatalf("failed attempt %d within the burst refused", i+1)
		}
	}
	if ok, _ := l.Take(c); ok {
		t.Fatal("the burst grew beyond 3 through gifts")
	}
}

func TestClientOf_ReadsForwardedForFromListedProxiesOrAsAHintFromUnlistedInternalOnes(t *testing.T) {
	t.Parallel()
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	cases := []struct {
		name    string
		remote  string
		xff     string
		trusted []netip.Prefix
		want    string
	}{
		{"ListedProxyIsBelieved", "10.1.2.3:4000", "198.51.100.1", trusted, "198.51.100.1"},
		{"ListedProxiesConfiguredUnlistedPeerIgnored", "192.168.1.1:4000", "198.51.100.1", trusted, "192.168.1.1"},
		{"NothingListedInternalPeerIsAHint", "10.1.2.3:4000", "198.51.100.1", nil, "198.51.100.1 via 10.1.2.3"},
		{"NothingListedLoopbackPeerIsAHint", "127.0.0.1:4000", "198.51.100.1", nil, "198.51.100.1 via 127.0.0.1"},
		{"HintIsTheEntryTheProxyWrote", "10.1.2.3:4000", "1.1.1.1, 198.51.100.1", nil, "198.51.100.1 via 10.1.2.3"},
		{"HintOfAClientInventingAnInternalHop", "10.1.2.3:4000", "198.51.100.9, 10.9.9.9", nil, "10.9.9.9 via 10.1.2.3"},
		{"HintOfAnInternalClient", "10.1.2.3:4000", "10.200.0.7", nil, "10.200.0.7 via 10.1.2.3"},
		{"HintWithGarbageIsThePeer", "10.1.2.3:4000", "not-an-ip", nil, "10.1.2.3 via 10.1.2.3"},
		{"NothingListedPublicPeerIsTheClient", "203.0.113.7:4000", "198.51.100.1", nil, "203.0.113.7"},
		{"NoHeaderIsThePeer", "10.1.2.3:4000", "", nil, "10.1.2.3"},
		{"IPv6InternalPeer", "[fd00::1]:4000", "2001:db8::5", nil, "2001:db8::5 via fd00::1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tc.remote
			if tc.xff != "" {
				r.Header.Set("X-Forwarded-For", tc.xff)
			}
			if got := ClientOf(r, tc.trusted).String(); got != tc.want {
				t.Fatalf("ClientOf = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestTake_UnlistedProxyCeilingBoundsInventedClients(t *testing.T) {
	t.Parallel()
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	l := New(Options{PerMinute: 1, Burst: 2, Now: clk.Now})
	proxy := netip.MustParseAddr("10.0.0.5")
	ceiling := 2 * ProxyCeilingFactor
	for i := range ceiling {
		if ok, _ := l.Take(Client{Addr: netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}), Via: proxy}); !ok {
			t.Fatalf("client %d behind the proxy refused before its ceiling of %d", i+1, ceiling)
		}
	}
	fresh := Client{Addr: netip.MustParseAddr("203.0.113.250"), Via: proxy}
	for range 5 {
		if ok, wait := l.Take(fresh); ok || wait <= 0 {
			t.Fatalf("a client the proxy names for the first time passed its exhausted ceiling (ok=%v wait=%v)", ok, wait)
		}
	}
	// Two attempts behind the proxy succeed: the ceiling gets two tokens back.
	l.Give(Client{Addr: netip.MustParseAddr("198.51.0.0"), Via: proxy})
	l.Give(Client{Addr: netip.MustParseAddr("198.51.0.1"), Via: proxy})
	// Refused by the ceiling five times, the client's own bucket was not charged: both pass.
	for i := range 2 {
		if ok, _ := l.Take(fresh); !ok {
			t.Fatalf("attempt %d after the ceiling got tokens back refused", i+1)
		}
	}
	if ok, _ := l.Take(Client{Addr: netip.MustParseAddr("203.0.113.251"), Via: proxy}); ok {
		t.Fatal("the ceiling held more than was given back")
	}
	if ok, _ := l.Take(Client{Addr: netip.MustParseAddr("10.0.0.5")}); !ok {
		t.Fatal("the proxy's own address, as a direct client, shares its ceiling")
	}
	if ok, _ := l.Take(Client{Addr: netip.MustParseAddr("198.51.0.1"), Via: netip.MustParseAddr("10.0.0.6")}); !ok {
		t.Fatal("a client behind another proxy shares the first proxy's ceiling")
	}
}

func TestMiddleware_OnlyFailedAttemptsUseTheBudget(t *testing.T) {
	t.Parallel()
	l := New(Options{PerMinute: 1, Burst: 3})
	var given []Client
	h := l.Middleware(func(w http.ResponseWriter, r *http.Request, _ Client) {
		w.WriteHeader(http.StatusTooManyRequests)
	}, func(c Client) { given = append(given, c) })(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			Succeeded(r.Context())
		case "/unavailable":
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	do := func(path string) int {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.RemoteAddr = "198.51.100.1:1234"
		h.ServeHTTP(rec, r)
		return rec.Code
	}
	for i := range 100 {
		if code := do("/ok"); code != http.StatusOK {
			t.Fatalf("successful attempt %d = %d", i+1, code)
		}
	}
	if len(given) != 100 || given[0].Addr.String() != "198.51.100.1" {
		t.Fatalf("onSuccess ran %d times (first %v), want 100 for 198.51.100.1", len(given), given[0])
	}
	for i := range 50 { // the provider is down: not the client's fault
		if code := do("/unavailable"); code != http.StatusServiceUnavailable {
			t.Fatalf("attempt %d while unavailable = %d, want 503", i+1, code)
		}
	}
	for i := range 3 {
		if code := do("/fail"); code != http.StatusBadRequest {
			t.Fatalf("failed attempt %d within the burst = %d", i+1, code)
		}
	}
	if code := do("/fail"); code != http.StatusTooManyRequests {
		t.Fatalf("failed attempt after the burst = %d, want 429", code)
	}
	if code := do("/ok"); code != http.StatusTooManyRequests {
		t.Fatalf("an attempt after the failures used the budget up = %d, want 429 until a token is back", code)
	}
	Succeeded(httptest.NewRequest(http.MethodGet, "/", nil).Context()) // outside a limited request: nothing happens
}

func BenchmarkTake_ManyClients(b *testing.B) {
	l := New(Options{PerMinute: 60, Burst: 20, MaxClients: 10_000})
	addrs := make([]Client, 50_000)
	for i := range addrs {
		addrs[i] = Client{Addr: netip.MustParseAddr(fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255))}
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		l.Take(addrs[i%len(addrs)])
	}
}
