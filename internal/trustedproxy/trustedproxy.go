// Package trustedproxy decides which request headers written by proxies
// are believed: only those that arrive from a peer listed in
// TRUSTED_PROXIES. The rate limiter reads the client IP through it, and the
// forward-auth adapters read the original request's URL through it, so
// the two can never disagree about who is a proxy.
package trustedproxy

import (
	"net/http"
	"net/netip"
	"strings"
)

// Peer is the TCP peer that sent r (IPv4-mapped addresses unmapped); ok is
// false when RemoteAddr is not an IP address (unix sockets, some tests).
func Peer(r *http.Request) (addr netip.Addr, ok bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		a, aerr := netip.ParseAddr(r.RemoteAddr)
		if aerr != nil {
			return netip.Addr{}, false
		}
		return a.Unmap(), true
	}
	return ap.Addr().Unmap(), true
}

// FromTrusted reports whether r's TCP peer is one of the trusted proxies:
// only then may headers a proxy writes (X-Forwarded-*, X-Original-URL)
// be believed; from anyone else they are whatever the client chose.
func FromTrusted(r *http.Request, trusted []netip.Prefix) bool {
	if len(trusted) == 0 {
		return false
	}
	a, ok := Peer(r)
	return ok && Contains(trusted, a)
}

// Contains reports whether a is inside one of the prefixes.
func Contains(trusted []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientIP is the address of the client that sent r. It is the connection's
// peer unless that peer is a trusted proxy: then X-Forwarded-For is read
// from the right, skipping trusted proxies, and the first address that is
// not one is the client (everything left of it could have been written by
// the client itself). An unparsable entry stops the walk at the last
// address known to be real.
func ClientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	ip, ok := Peer(r)
	if !ok {
		return netip.IPv4Unspecified() // not a TCP peer (tests, unix sockets): one shared bucket
	}
	if len(trusted) == 0 || !Contains(trusted, ip) {
		return ip
	}
	hops := forwardedFor(r.Header.Values("X-Forwarded-For"))
	for i := len(hops) - 1; i >= 0; i-- {
		next, err := parseHop(hops[i])
		if err != nil {
			return ip
		}
		ip = next
		if !Contains(trusted, ip) {
			return ip
		}
	}
	return ip
}

// forwardedFor splits X-Forwarded-For headers (several headers count as
// one comma-separated list, in order) into trimmed entries.
func forwardedFor(headers []string) []string {
	var out []string
	for _, h := range headers {
		for _, e := range strings.Split(h, ",") {
			if e = strings.TrimSpace(e); e != "" {
				out = append(out, e)
			}
		}
	}
	return out
}

// parseHop reads one X-Forwarded-For entry: an address, or an address
// with a port as some proxies write it.
func parseHop(s string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.Addr{}, err
	}
	return ap.Addr().Unmap(), nil
}

// InternalNetworks are the address ranges that never route on the
// internet: private (RFC 1918, RFC 4193), shared (RFC 6598, used by some
// clusters for pods), loopback and link-local. An ingress controller or
// gateway in front of Gatehouse connects from one of them.
var InternalNetworks = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fe80::/10"),
}

// Internal reports whether a is in InternalNetworks.
func Internal(a netip.Addr) bool { return Contains(InternalNetworks, a) }
