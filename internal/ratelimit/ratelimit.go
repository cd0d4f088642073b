// Package ratelimit limits how often one client may hit a route: a token
// bucket (golang.org/x/time/rate) per client IP, in a map whose size is
// bounded so that a flood of distinct addresses cannot grow it without end.
package ratelimit

import (
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/gatehouse/gatehouse/internal/trustedproxy"
)

// Options configure a Limiter.
type Options struct {
	// PerMinute is the sustained rate per client; Burst how many requests
	// a client may make at once after being quiet.
	PerMinute int
	Burst     int
	// TrustedProxies are the peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// MaxClients bounds the number of clients tracked at once (default 100 000,
	// about 16 MB). When full, clients whose bucket has refilled are
	// forgotten first (forgetting them changes nothing); if that is not
	// enough, arbitrary clients are forgotten, which at worst hands them a
	// fresh bucket.
	MaxClients int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Limiter is a per-client-IP rate limit.
type Limiter struct {
	limit   rate.Limit
	burst   int
	idle    time.Duration // after this long unseen, a bucket is full again
	max     int
	trusted []netip.Prefix
	now     func() time.Time

	mu      sync.Mutex
	clients map[netip.Addr]*client
}

type client struct {
	lim  *rate.Limiter
	seen time.Time
}

// New returns a limiter. PerMinute and Burst below 1 count as 1 (turn the
// limit off by not installing the middleware).
func New(o Options) *Limiter {
	if o.PerMinute < 1 {
		o.PerMinute = 1
	}
	if o.MaxClients <= 0 {
		o.MaxClients = 100_000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Burst < 1 {
		o.Burst = 1
	}
	perSecond := float64(o.PerMinute) / 60
	return &Limiter{
		limit:   rate.Limit(perSecond),
		burst:   o.Burst,
		idle:    time.Duration(math.Ceil(float64(o.Burst)/perSecond)) * time.Second,
		max:     o.MaxClients,
		trusted: o.TrustedProxies,
		now:     o.Now,
		clients: make(map[netip.Addr]*client),
	}
}

// Allow takes one token from addr's bucket. When the bucket is empty it
// returns false and how long until a token will be there.
func (l *Limiter) Allow(addr netip.Addr) (bool, time.Duration) {
	now := l.now()
	key := bucketKey(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.clients[key]
	if !ok {
		if len(l.clients) >= l.max {
			l.shrink(now)
		}
		c = &client{lim: rate.NewLimiter(l.limit, l.burst)}
		l.clients[key] = c
	}
	c.seen = now
	r := c.lim.ReserveN(now, 1)
	if !r.OK() {
		return false, l.idle
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now) // a refused request must not use up a future token
		return false, d
	}
	return true, 0
}

// shrink makes room: first it forgets every client whose bucket has refilled
// (indistinguishable from a new one), then, if less than a tenth was freed,
// arbitrary clients down to nine tenths, so that the O(n) sweep happens at
// most once per max/10 new clients even under a flood of addresses.
func (l *Limiter) shrink(now time.Time) {
	for k, c := range l.clients {
		if now.Sub(c.seen) >= l.idle {
			delete(l.clients, k)
		}
	}
	target := l.max - l.max/10 - 1
	for k := range l.clients {
		if len(l.clients) <= target {
			break
		}
		delete(l.clients, k)
	}
}

// Len is the number of clients tracked (for tests and metrics).
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients)
}

// Middleware limits next per client IP; refused requests get a
// Retry-After header and then deny (which writes the 429 page).
func (l *Limiter) Middleware(deny http.Handler) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ok, wait := l.Allow(trustedproxy.ClientIP(r, l.trusted))
			if !ok {
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
				deny.ServeHTTP(w, r)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// bucketKey groups IPv6 clients by their /64: one host usually owns a whole
// /64, and per-address buckets would give it 2^64 of them.
func bucketKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}
