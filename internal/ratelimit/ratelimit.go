// Package ratelimit limits how often one client may start sign-ins and
// finish them at the callback: a token bucket per client, in a map whose
// size is bounded so that a flood of distinct addresses cannot grow it
// without end.
//
// A sign-in attempt holds its token until it succeeds: the middleware
// takes one before the handler runs and gives it back when the handler
// reports success (Succeeded), or when it fails through no fault of the
// client (a 5xx answer: the provider or the session store unavailable).
// So only failed and abandoned sign-ins use up a client's budget, and a crowd behind one address (an office NAT, a
// proxy Gatehouse cannot see through) that signs in successfully is never
// refused, while a client hammering the callback with codes and states
// that do not work runs dry after the burst.
package ratelimit

import (
	"context"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/internal/trustedproxy"
)

// ProxyCeilingFactor sizes the ceiling shared by all clients behind one
// unlisted proxy (see Client.Via): that many times the per-client rate and
// burst.
const ProxyCeilingFactor = 20

// Options configure a Limiter.
type Options struct {
	// PerMinute is the sustained rate per client; Burst how many requests
	// a client may make at once after being quiet.
	PerMinute int
	Burst     int
	// TrustedProxies are the peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// MaxClients bounds the number of clients tracked at once (default
	// 100 000). When full, clients whose bucket is full again are
	// forgotten first (forgetting them changes nothing); if that is not
	// enough, arbitrary clients are forgotten, which at worst hands them a
	// fresh bucket. The proxies' ceilings are bounded the same way.
	MaxClients int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Client is who a request is charged to.
type Client struct {
	// Addr is the client's address: the TCP peer, what a trusted proxy
	// named in X-Forwarded-For, or what an unlisted proxy named (Via).
	Addr netip.Addr
	// Via is set only while TRUSTED_PROXIES is empty, for a peer on an
	// internal network that sends X-Forwarded-For: most likely the ingress
	// or gateway in front, which nobody has listed yet. The header's last
	// entry, the one such a proxy writes itself (whether it replaces the
	// header or appends to it), names Addr; entries further left are the
	// client's to invent and are not read. That is only a hint: every
	// client behind Via also shares Via's ceiling (ProxyCeilingFactor times
	// the per-client limit), so a peer that invents addresses cannot get
	// more than that.
	Via netip.Addr
}

// String is the client for logs: "203.0.113.7", or "203.0.113.7 via 10.0.0.5".
func (c Client) String() string {
	if c.Via.IsValid() {
		return c.Addr.String() + " via " + c.Via.String()
	}
	return c.Addr.String()
}

// ClientOf is the client r is charged to (see Client). With
// TRUSTED_PROXIES set, it is exactly trustedproxy.ClientIP: the operator
// has said who the proxies are, and nobody else's header counts.
func ClientOf(r *http.Request, trusted []netip.Prefix) Client {
	if len(trusted) == 0 && len(r.Header["X-Forwarded-For"]) > 0 {
		if peer, ok := trustedproxy.Peer(r); ok && trustedproxy.Internal(peer) {
			// Trusting the peer alone reads exactly the entry it wrote.
			return Client{Addr: trustedproxy.ClientIP(r, []netip.Prefix{netip.PrefixFrom(peer, peer.BitLen())}), Via: peer}
		}
	}
	return Client{Addr: trustedproxy.ClientIP(r, trusted)}
}

// Limiter is a per-client rate limit for one route.
type Limiter struct {
	trusted []netip.Prefix
	now     func() time.Time

	mu      sync.Mutex
	clients buckets // by client (and the proxy that named it)
	proxies buckets // the ceilings of unlisted proxies, by proxy
}

// New returns a limiter. PerMinute and Burst below 1 count as 1 (turn the
// limit off by not installing the middleware).
func New(o Options) *Limiter {
	if o.MaxClients <= 0 {
		o.MaxClients = 100_000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	perSecond := float64(max(o.PerMinute, 1)) / 60
	burst := float64(max(o.Burst, 1))
	return &Limiter{
		trusted: o.TrustedProxies,
		now:     o.Now,
		clients: newBuckets(perSecond, burst, o.MaxClients),
		proxies: newBuckets(perSecond*ProxyCeilingFactor, burst*ProxyCeilingFactor, o.MaxClients),
	}
}

// Take takes one token from c's bucket (and from its proxy's ceiling).
// When there is none it returns false and how long until one will be
// there; nothing is taken then, so refusals never push the next token
// further away.
func (l *Limiter) Take(c Client) (bool, time.Duration) {
	now := l.now()
	ck := key{bucketAddr(c.Addr), c.Via}
	l.mu.Lock()
	defer l.mu.Unlock()
	if wait := l.clients.take(ck, now); wait > 0 {
		return false, wait
	}
	if c.Via.IsValid() {
		if wait := l.proxies.take(key{addr: c.Via}, now); wait > 0 {
			l.clients.give(ck, now)
			return false, wait
		}
	}
	return true, 0
}

// RetryAfter is a Retry-After header value for wait: whole seconds,
// rounded up, so a client that waits that long finds a token.
func RetryAfter(wait time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(wait.Seconds()))))
}

// Give returns one token to c's bucket (and its proxy's ceiling), up to
// the burst: the attempt it was taken for has succeeded.
func (l *Limiter) Give(c Client) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.clients.give(key{bucketAddr(c.Addr), c.Via}, now)
	if c.Via.IsValid() {
		l.proxies.give(key{addr: c.Via}, now)
	}
}

// Len is the number of clients tracked (for tests and metrics).
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients.m)
}

// Middleware limits next per client. Each request takes a token before
// next runs and gets it back if next reports success (Succeeded), after
// which onSuccess (if not nil) runs with the client: the callback gives
// back the token its sign-in start took that way. A request answered with
// a 5xx gets its token back too: a user retrying while the provider is
// down must not find the limit spent when it is back. Refused requests get
// a Retry-After header and then deny (which writes the 429 page).
func (l *Limiter) Middleware(deny func(http.ResponseWriter, *http.Request, Client), onSuccess func(Client)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c := ClientOf(r, l.trusted)
			ok, wait := l.Take(c)
			if !ok {
				w.Header().Set("Retry-After", RetryAfter(wait))
				deny(w, r, c)
				return
			}
			t := &ticket{}
			sw := &statusWriter{ResponseWriter: w}
			next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), ticketKey{}, t)))
			switch {
			case t.Load():
				l.Give(c)
				if onSuccess != nil {
					onSuccess(c)
				}
			case sw.status >= 500:
				l.Give(c)
			}
		})
	}
}

// Succeeded tells the limiter around ctx's request that the attempt
// succeeded, so its token is given back. Outside a limited request it
// does nothing.
func Succeeded(ctx context.Context) {
	if t, ok := ctx.Value(ticketKey{}).(*ticket); ok {
		t.Store(true)
	}
}

type ticketKey struct{}

// ticket is one limited request's note of whether it succeeded.
type ticket = atomic.Bool

// statusWriter remembers the status of the answer.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// bucketAddr groups IPv6 clients by their /64: one host usually owns a
// whole /64, and per-address buckets would give it 2^64 of them.
func bucketAddr(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

type key struct{ addr, via netip.Addr }

// buckets are token buckets by key: rate tokens a second, at most burst.
// A bucket absent from the map is full.
type buckets struct {
	rate, burst float64
	max         int
	m           map[key]*bucket
}

type bucket struct {
	tokens float64 // as of at
	at     time.Time
}

func newBuckets(rate, burst float64, max int) buckets {
	return buckets{rate: rate, burst: burst, max: max, m: make(map[key]*bucket)}
}

func (s *buckets) level(b *bucket, now time.Time) float64 {
	return min(s.burst, b.tokens+now.Sub(b.at).Seconds()*s.rate)
}

// take takes a token from k's bucket and returns 0, or returns how long
// until there is one and takes nothing.
func (s *buckets) take(k key, now time.Time) time.Duration {
	b, ok := s.m[k]
	if !ok {
		if len(s.m) >= s.max {
			s.shrink(now)
		}
		b = &bucket{tokens: s.burst, at: now}
		s.m[k] = b
	}
	level := s.level(b, now)
	if level < 1 {
		return time.Duration(math.Ceil((1 - level) / s.rate * float64(time.Second)))
	}
	b.tokens, b.at = level-1, now
	return 0
}

// give puts a token back into k's bucket, up to the burst. A bucket that
// is no longer tracked is full already.
func (s *buckets) give(k key, now time.Time) {
	if b, ok := s.m[k]; ok {
		b.tokens, b.at = min(s.burst, s.level(b, now)+1), now
	}
}

// shrink makes room: first it forgets every bucket that is full again
// (indistinguishable from a new one), then, if less than a tenth was
// freed, arbitrary ones down to nine tenths, so that the O(n) sweep
// happens at most once per max/10 new clients even under a flood of
// addresses.
func (s *buckets) shrink(now time.Time) {
	for k, b := range s.m {
		if s.level(b, now) >= s.burst {
			delete(s.m, k)
		}
	}
	target := s.max - s.max/10 - 1
	for k := range s.m {
		if len(s.m) <= target {
			break
		}
		delete(s.m, k)
	}
}
