package server

import (
	"log/slog"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/internal/trustedproxy"
)

// forwardedWarning tells the operator, once and then at most once per
// interval (not per request), that X-Forwarded-For arrives from a peer not
// in TRUSTED_PROXIES: behind an ingress nobody has listed, client
// addresses are only guessed at (internal/ratelimit), and the forward-auth
// adapters ignore the proxy's headers.
type forwardedWarning struct {
	log      *slog.Logger
	trusted  []netip.Prefix
	now      func() time.Time
	interval time.Duration
	last     atomic.Int64 // UnixNano of the last warning; 0: none yet
	since    atomic.Int64 // such requests since then
}

func newForwardedWarning(log *slog.Logger, trusted []netip.Prefix, now func() time.Time, interval time.Duration) *forwardedWarning {
	return &forwardedWarning{log: log, trusted: trusted, now: now, interval: interval}
}

func (f *forwardedWarning) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.Header["X-Forwarded-For"]) > 0 {
			f.check(r)
		}
		next.ServeHTTP(w, r)
	})
}

func (f *forwardedWarning) check(r *http.Request) {
	peer, ok := trustedproxy.Peer(r)
	if !ok || trustedproxy.Contains(f.trusted, peer) {
		return
	}
	now := f.now().UnixNano()
	last := f.last.Load()
	if (last != 0 && now-last < int64(f.interval)) || !f.last.CompareAndSwap(last, now) {
		f.since.Add(1)
		return
	}
	requests := f.since.Swap(0) + 1
	if len(f.trusted) == 0 && trustedproxy.Internal(peer) {
		f.log.WarnContext(r.Context(), "X-Forwarded-For from a proxy not listed in TRUSTED_PROXIES: the sign-in rate limits take its "+
			"client address as a hint, with one ceiling for all its clients, and forward-auth ignores its headers; "+
			"set TRUSTED_PROXIES to this proxy's addresses (e.g. the ingress controller's pod CIDR), see docs/SECURITY.md",
			"peer", peer.String(), "requests", requests, "repeats_after", f.interval.String())
		return
	}
	f.log.WarnContext(r.Context(), "X-Forwarded-For from a peer not in TRUSTED_PROXIES was ignored: the peer counts as the client; "+
		"if it is a proxy of yours, add its addresses to TRUSTED_PROXIES, see docs/SECURITY.md",
		"peer", peer.String(), "requests", requests, "repeats_after", f.interval.String())
}
