// Package forward holds the parts of forward-auth that do not depend on
// sessions: reading the original request from what each proxy sends
// (adapters), the per-route rules, and the identity headers the upstream
// gets. The decision itself (who is this, may they pass) joins them with
// the session store; see docs/FORWARD-AUTH.md for how each proxy calls.
package forward

import (
	"errors"
	"net/http"
	"net/netip"
	"strings"

	"github.com/gatehouse/gatehouse/internal/trustedproxy"
)

// Adapter is the contract of the proxy that asks: how it tells Gatehouse
// which request it is asking about.
type Adapter uint8

const (
	// Verify is GET|HEAD /auth/verify, for nginx auth_request and
	// ingress-nginx's auth-url. The original URL is X-Original-URL (and the
	// method X-Original-Method), which ingress-nginx sets and a plain nginx
	// location sets with proxy_set_header; failing that, the X-Forwarded-
	// headers as for Forward. The answer is 200, 401 or 403, never a
	// redirect: nginx passes only 2xx and turns 401 into its error_page.
	Verify Adapter = iota + 1
	// Forward is /auth/forward exactly, for Traefik ForwardAuth and Caddy
	// forward_auth: X-Forwarded-Method, -Proto, -Host and -Uri describe the
	// original request; any 2xx passes and every other answer (a 302
	// included) reaches the client as it is.
	Forward
	// Envoy is /auth/forward/... or /auth/forward;rules/..., for Envoy's
	// ext_authz HTTP service (and Envoy Gateway's extAuth) with path_prefix
	// /auth/forward: Envoy appends the original path and query to the
	// prefix and keeps the original method and Host. Only 200 passes.
	Envoy
)

func (a Adapter) String() string {
	switch a {
	case Verify:
		return "verify"
	case Forward:
		return "forward"
	case Envoy:
		return "envoy"
	}
	return "unknown"
}

// Paths of the decision endpoints.
const (
	VerifyPath  = "/auth/verify"
	ForwardPath = "/auth/forward"
)

// AdapterOf tells the forward endpoint's two contracts apart by the path:
// /auth/forward itself is Traefik's or Caddy's, anything longer Envoy's. It
// returns 0 for paths that are neither. It reads the path as sent
// (escaped), as Read does.
func AdapterOf(r *http.Request) Adapter {
	p := r.URL.EscapedPath()
	switch {
	case p == VerifyPath:
		return Verify
	case p == ForwardPath:
		return Forward
	case envoyPath(p):
		return Envoy
	}
	return 0
}

// envoyPath: /auth/forward with Envoy's appended path or ;rules.
func envoyPath(p string) bool {
	return len(p) > len(ForwardPath) && strings.HasPrefix(p, ForwardPath) && (p[len(ForwardPath)] == '/' || p[len(ForwardPath)] == ';')
}

// SpanPath is what a span may record as the path of a request to
// Gatehouse: Envoy's decision requests carry the protected app's path
// (and a path can carry a secret, such as a reset link's token), so theirs
// is the route's; other paths are Gatehouse's own and kept (false).
func SpanPath(path string) (string, bool) {
	if envoyPath(path) {
		return ForwardPath + "/*", true
	}
	return path, false
}

// Original is the request a proxy asks about.
type Original struct {
	// Method is the original request's method. Without a trusted proxy's
	// word it is the asking request's own.
	Method string
	// Scheme ("http" or "https"), Host (lower case, host[:port], the
	// scheme's default port dropped) and URI (path and query as the
	// client sent them, starting with "/") are set only when Known.
	Scheme, Host, URI string
	// Known: a trusted proxy told us the original URL. False when the peer
	// is not in TRUSTED_PROXIES (its headers are ignored) or a trusted peer
	// sent none (for example a browser calling the endpoint directly
	// through the ingress): then there is no deep link to return to, and
	// no protected host to address an assertion to.
	Known bool
	// noReturn: URI is the client's odd request-target, decided on as
	// usual but never a return URL (checkURI).
	noReturn bool
	// Ignored names a proxy header that was present but disregarded
	// because the peer is not trusted: worth a log line, as it usually
	// means TRUSTED_PROXIES lacks the proxy's address.
	Ignored string
}

// URL is the original URL, for the return trip after sign-in; "" when not
// Known, or when the request-target is not one to send a browser back to
// (see checkURI): such a sign-in lands on ZITADEL_POST_LOGIN_URL. (It
// allocates: call it on the way to a sign-in, not on every allowed
// request.)
func (o Original) URL() string {
	if !o.Known || o.noReturn {
		return ""
	}
	return o.Scheme + "://" + o.Host + o.URI
}

// Errors for proxy headers that are present but unusable. They come from
// a trusted peer, so they are either a proxy misconfiguration or a
// client's own header that the proxy let through: the decision answers
// 400 and logs the error; it never guesses.
var (
	ErrAmbiguous = errors.New("forward-auth: a proxy header appears more than once")
	ErrBadURL    = errors.New("forward-auth: the original URL is malformed")
	// ErrBadHost: the original host is no host name or address. The host
	// is the client's own Host header in every adapter, so a client
	// reaching a catch-all route produces this, not only a proxy's
	// configuration: the decision refuses it without blaming the proxy.
	ErrBadHost      = errors.New("forward-auth: the original host is not a host name or address (a client's Host header through a catch-all route?)")
	ErrBadMethod    = errors.New("forward-auth: the original method is malformed")
	ErrHostMismatch = errors.New("forward-auth: X-Original-URL names another host than X-Forwarded-Host (a client's own header let through by the proxy?)")
	ErrNotEnvoy     = errors.New("forward-auth: /auth/forward/... is Envoy's path_prefix contract, but the request carries X-Forwarded-Uri (Traefik, Caddy): point those at /auth/forward exactly")
)

// Canonical header keys, indexed directly (no canonicalisation per request).
const (
	hOriginalURL    = "X-Original-Url"
	hOriginalMethod = "X-Original-Method"
	hFwdMethod      = "X-Forwarded-Method"
	hFwdProto       = "X-Forwarded-Proto"
	hFwdHost        = "X-Forwarded-Host"
	hFwdURI         = "X-Forwarded-Uri"
)

// maxURI bounds a request-target a browser is sent back to (checkURI).
const maxURI = 8192

// Read returns the original request as the adapter's proxy describes it,
// believing proxy headers only from a peer in trusted (GHSA-7x63-xv5r-3p2x:
// oauth2-proxy believed anyone's X-Forwarded-Uri). It does not allocate:
// the URL is split by hand, not by url.Parse (BenchmarkRead, on every decision).
func Read(r *http.Request, a Adapter, trusted []netip.Prefix) (Original, error) {
	o := Original{Method: r.Method}
	if !trustedproxy.FromTrusted(r, trusted) {
		o.Ignored = ignored(r.Header, a)
		return o, nil
	}
	switch a {
	case Verify:
		return readVerify(r, o)
	case Forward:
		return readForwarded(r.Header, o)
	case Envoy:
		return readEnvoy(r, o)
	}
	return o, nil
}

func readVerify(r *http.Request, o Original) (Original, error) {
	raw, err := single(r.Header, hOriginalURL)
	if err != nil {
		return o, err
	}
	if raw == "" {
		return readForwarded(r.Header, o)
	}
	if o.Method, err = method(r.Header, hOriginalMethod, o.Method); err != nil {
		return o, err
	}
	scheme, rest, ok := cutScheme(raw)
	if !ok {
		return o, ErrBadURL
	}
	authority, uri := rest, "/"
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority, uri = rest[:i], rest[i:]
	}
	// uri starts with "/" unless the authority ended at a '?' or '#':
	// nginx writes the client's Host there ($http_host).
	ok, returnable := checkURI(uri)
	if !ok {
		return o, ErrBadHost
	}
	host, ok := canonicalHost(authority, scheme)
	if !ok {
		return o, ErrBadHost
	}
	// A client's own X-Original-URL, let through by an ingress that
	// proxied the client's direct request to /auth/verify, names another
	// host than the one the ingress itself reports.
	fwd, err := single(r.Header, hFwdHost)
	if err != nil {
		return o, err
	}
	if fwd != "" && !sameHostname(fwd, host) {
		return o, ErrHostMismatch
	}
	o.Scheme, o.Host, o.URI, o.Known, o.noReturn = scheme, host, uri, true, !returnable
	return o, nil
}

func readForwarded(h http.Header, o Original) (Original, error) {
	var err error
	if o.Method, err = method(h, hFwdMethod, o.Method); err != nil {
		return o, err
	}
	hostRaw, err := single(h, hFwdHost)
	if err != nil {
		return o, err
	}
	uri, err := single(h, hFwdURI)
	if err != nil {
		return o, err
	}
	if hostRaw == "" || uri == "" {
		return o, nil // not a forward-auth request: no original URL
	}
	scheme, err := proto(h)
	if err != nil {
		return o, err
	}
	ok, returnable := checkURI(uri)
	if !ok {
		return o, ErrBadURL
	}
	host, ok := canonicalHost(hostRaw, scheme)
	if !ok {
		return o, ErrBadHost
	}
	o.Scheme, o.Host, o.URI, o.Known, o.noReturn = scheme, host, uri, true, !returnable
	return o, nil
}

// readEnvoy takes the original path and query from what follows
// /auth/forward (and its optional ;rules) in the raw request-target, and
// the host from Host: Envoy sends both as the client sent them.
func readEnvoy(r *http.Request, o Original) (Original, error) {
	if v, err := single(r.Header, hFwdURI); err != nil {
		return o, err // repeated: not Envoy's either
	} else if v != "" {
		return o, ErrNotEnvoy
	}
	_, uri, ok := splitEnvoy(r.RequestURI)
	returnable := false
	if ok {
		ok, returnable = checkURI(uri)
	}
	if !ok {
		return o, ErrBadURL
	}
	scheme, err := proto(r.Header)
	if err != nil {
		return o, err
	}
	host, ok := canonicalHost(r.Host, scheme)
	if !ok {
		return o, ErrBadHost
	}
	o.Scheme, o.Host, o.URI, o.Known, o.noReturn = scheme, host, uri, true, !returnable
	return o, nil
}

// splitEnvoy splits Envoy's request-target "/auth/forward;m=x/orig?q" into
// the matrix parameters of the endpoint's own segment ("m=x", written by
// the operator in path_prefix) and the original request-target
// ("/orig?q", the client's). The client's part always starts with "/", so
// it can never reach into the endpoint's segment.
func splitEnvoy(requestURI string) (params, uri string, ok bool) {
	rest, found := strings.CutPrefix(requestURI, ForwardPath)
	if !found {
		return "", "", false
	}
	if strings.HasPrefix(rest, ";") {
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			return "", "", false
		}
		params, rest = rest[1:i], rest[i:]
	}
	if !strings.HasPrefix(rest, "/") {
		return "", "", false
	}
	return params, rest, true
}

// ignored names the first proxy header an untrusted peer sent.
func ignored(h http.Header, a Adapter) string {
	names := [...]string{hFwdURI, hFwdHost, hOriginalURL}
	if a == Forward || a == Envoy {
		names[2] = hFwdMethod
	}
	for _, n := range names {
		if len(h[n]) > 0 {
			return n
		}
	}
	return ""
}

// single is the header's one value; a repeated header is an error (a
// client's copy next to the proxy's, or two proxies disagreeing).
func single(h http.Header, key string) (string, error) {
	v := h[key]
	switch len(v) {
	case 0:
		return "", nil
	case 1:
		return v[0], nil
	}
	return "", ErrAmbiguous
}

func method(h http.Header, key, fallback string) (string, error) {
	m, err := single(h, key)
	if err != nil || m == "" {
		return fallback, err
	}
	if len(m) > 20 {
		return fallback, ErrBadMethod
	}
	for i := 0; i < len(m); i++ {
		if !isTokenChar(m[i]) {
			return fallback, ErrBadMethod
		}
	}
	return m, nil
}

// proto is X-Forwarded-Proto, "https" when absent (Envoy forwards it only
// when allowed; the safe assumption for cookies and redirects).
func proto(h http.Header) (string, error) {
	p, err := single(h, hFwdProto)
	switch {
	case err != nil:
		return "", err
	case p == "" || strings.EqualFold(p, "https"):
		return "https", nil
	case strings.EqualFold(p, "http"):
		return "http", nil
	}
	return "", ErrBadURL
}

// cutScheme splits "https://rest" (scheme in any case) into "https", "rest".
func cutScheme(raw string) (scheme, rest string, ok bool) {
	switch {
	case len(raw) > 8 && strings.EqualFold(raw[:8], "https://"):
		return "https", raw[8:], true
	case len(raw) > 7 && strings.EqualFold(raw[:7], "http://"):
		return "http", raw[7:], true
	}
	return "", "", false
}

// canonicalHost validates host[:port] and returns it in lower case with
// the scheme's default port dropped and a name's trailing dot (the same
// DNS name) taken off. Names are DNS labels of letters, digits and
// hyphens; IP literals are accepted (IPv6 in brackets). Userinfo,
// percent-escapes, spaces and anything else are refused.
func canonicalHost(hp, scheme string) (string, bool) {
	if hp == "" || len(hp) > 260 {
		return "", false
	}
	if hp[0] != '[' {
		if i := strings.Index(hp, ".:"); i > 0 {
			hp = hp[:i] + hp[i+1:] // rare: allocates
		} else if len(hp) > 1 && hp[len(hp)-1] == '.' {
			hp = hp[:len(hp)-1]
		}
	}
	host, port := hp, ""
	if strings.HasPrefix(hp, "[") {
		end := strings.IndexByte(hp, ']')
		if end < 0 {
			return "", false
		}
		if a, err := netip.ParseAddr(hp[1:end]); err != nil || !a.Is6() || a.Zone() != "" {
			return "", false
		}
		host, port = hp[:end+1], hp[end+1:]
		if port != "" {
			if port[0] != ':' {
				return "", false
			}
			port = port[1:]
		}
	} else if i := strings.LastIndexByte(hp, ':'); i >= 0 {
		host, port = hp[:i], hp[i+1:]
		if !hostnameChars(host) {
			return "", false
		}
	} else if !hostnameChars(host) {
		return "", false
	}
	if port != "" {
		if len(port) > 5 || port[0] == '0' || (len(port) == 5 && port > "65535") {
			return "", false
		}
		for i := 0; i < len(port); i++ {
			if port[i] < '0' || port[i] > '9' {
				return "", false
			}
		}
		if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
			hp = host
		}
	} else if strings.HasSuffix(hp, ":") {
		hp = host
	}
	return strings.ToLower(hp), true // no allocation when already lower case
}

// hostnameChars: a non-empty DNS name or IPv4 literal, any case: labels
// of 1 to 63 letters, digits and hyphens, none at a label's ends.
func hostnameChars(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	start := 0 // of the current label
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			if n := i - start; n == 0 || n > 63 || s[start] == '-' || s[i-1] == '-' {
				return false
			}
			start = i + 1
			continue
		}
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// sameHostname compares two host[:port] values by name only, ignoring
// case and ports (X-Forwarded-Host usually has no port).
func sameHostname(a, b string) bool {
	return strings.EqualFold(stripPort(a), stripPort(b))
}

func stripPort(hp string) string {
	if strings.HasPrefix(hp, "[") {
		if i := strings.IndexByte(hp, ']'); i >= 0 {
			return hp[:i+1]
		}
		return hp
	}
	if i := strings.LastIndexByte(hp, ':'); i >= 0 {
		return hp[:i]
	}
	return hp
}

// checkURI judges an original request-target. ok: it is one at all, an
// origin-form target starting with "/" — else the proxy sent something
// else, which is its configuration's doing (ErrBadURL). returnable: a
// browser may be sent back to it after sign-in — at most maxURI long,
// printable ASCII without spaces or a fragment (oauth2-proxy's
// GHSA-pxq7-h93f-9jrg came from evaluating one), every '%' starting an
// escape (net/url refuses a stray one), and no backslash before the query
// (a browser sent back would read "/\evil.example" as "//evil.example").
// Those come from the client: raw bytes from a script, and from browsers
// a '%' or '\' typed into a query, which they send unescaped. Rules never
// depend on the path, so the decision stands; only the return trip is
// withheld.
func checkURI(u string) (ok, returnable bool) {
	if u == "" || u[0] != '/' {
		return false, false
	}
	inPath := true
	for i := 0; i < len(u); i++ {
		switch c := u[i]; {
		case c == '?':
			inPath = false
		case c <= ' ' || c >= 0x7f || c == '#' || c == '\\' && inPath:
			return true, false
		case c == '%' && (i+2 >= len(u) || !isHex(u[i+1]) || !isHex(u[i+2])):
			return true, false
		}
	}
	return true, len(u) <= maxURI
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isTokenChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
