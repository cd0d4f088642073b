// Package redirect decides where a browser may be sent after signing in:
// the page first asked for, on a protected app's host or on Gatehouse's
// own, and nowhere else. One function (Policy.Resolve) decides, for the
// sign-in start and for the callback alike, so the two cannot disagree.
//
// What is accepted:
//   - a local path (IsLocalPath): a page of Gatehouse itself;
//   - an absolute http(s) URL whose host is Gatehouse's own (the callback
//     URL's origin) or matches ALLOWED_REDIRECT_HOSTS: an exact name
//     ("app.example.com"), or a leading dot for every subdomain
//     (".example.com" matches "a.example.com" and "a.b.example.com" but
//     NOT "example.com" itself: list the apex separately if it is yours —
//     it is often a marketing site run by someone else). A pattern without
//     a port matches only the scheme's default port; with one
//     ("app.example.com:8443"), only that port.
//   - https only, unless the callback URL itself is http (development);
//
// and nothing else: no userinfo, no backslashes (but in an absolute URL's
// query, where browsers read one as itself), no whitespace or control
// characters anywhere, no percent-escapes or non-ASCII characters in the
// host (IDN hosts must be listed and sent in their xn-- form, so a
// look-alike cannot match), no trailing dot, no empty labels. Whatever is
// refused leads to the fallback (ZITADEL_POST_LOGIN_URL).
package redirect

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// MaxLength bounds a return URL: it travels in the sealed sign-in state
// cookie, and no page anyone means to return to is longer.
const MaxLength = 2048

// HostPattern is one entry of ALLOWED_REDIRECT_HOSTS.
type HostPattern struct {
	// Name is the host name in lower case, without the leading dot.
	Name string
	// Subdomains: the entry started with a dot and matches every name
	// below Name, not Name itself.
	Subdomains bool
	// Port is "" for the scheme's default port, else the only port matched.
	Port string
}

func (h HostPattern) String() string {
	s := h.Name
	if h.Subdomains {
		s = "." + s
	}
	if h.Port != "" {
		s += ":" + h.Port
	}
	return s
}

// ParseHosts reads ALLOWED_REDIRECT_HOSTS: names separated by commas or
// spaces. Every problem is reported, one per entry, so the operator sees
// all of them at once.
func ParseHosts(list string) ([]HostPattern, error) {
	var out []HostPattern
	var errs []error
	for _, e := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
		p, err := parseHost(e)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, p)
	}
	return out, errors.Join(errs...)
}

func parseHost(e string) (HostPattern, error) {
	var p HostPattern
	switch {
	case strings.Contains(e, "://") || strings.ContainsAny(e, "/?#@\\"):
		return p, fmt.Errorf("%q: give a host name (app.example.com or .example.com), not a URL", e)
	case strings.HasPrefix(e, "*"):
		return p, fmt.Errorf("%q: no wildcards; a leading dot (.example.com) allows every subdomain", e)
	}
	name := e
	if h, port, ok := strings.Cut(e, ":"); ok {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || port != strconv.Itoa(n) {
			return p, fmt.Errorf("%q: the port must be a number from 1 to 65535", e)
		}
		name, p.Port = h, port
	}
	if strings.HasPrefix(name, ".") {
		p.Subdomains, name = true, name[1:]
	}
	for i := 0; i < len(name); i++ {
		if name[i] >= 0x80 {
			return p, fmt.Errorf("%q: write internationalised names in their xn-- (punycode) form", e)
		}
	}
	name = strings.ToLower(name)
	if !ValidHostname(name) {
		return p, fmt.Errorf("%q: not a host name (letters, digits, hyphens and dots; no empty labels or trailing dot)", e)
	}
	if p.Subdomains && !strings.Contains(name, ".") {
		return p, fmt.Errorf("%q: would allow every host under a top-level domain", e)
	}
	p.Name = name
	return p, nil
}

// ValidHostname reports whether s is a lower-case DNS name: dot-separated
// labels of letters, digits and inner hyphens, each 1–63 long, at most
// 253 in all, no trailing dot.
func ValidHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if label == 0 || s[i-1] == '-' {
				return false
			}
			label = 0
			continue
		case c == '-':
			if label == 0 {
				return false
			}
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		default:
			return false
		}
		label++
		if label > 63 {
			return false
		}
	}
	return label > 0 && s[len(s)-1] != '-'
}

// Policy decides return URLs.
type Policy struct {
	selfScheme, selfHost string // Gatehouse's own origin, from the callback URL (host lower-cased, default port dropped)
	allowHTTP            bool
	hosts                []HostPattern
	fallback             string
}

// New builds the policy from the callback URL (Gatehouse's own origin),
// the allowed hosts and the fallback (ZITADEL_POST_LOGIN_URL, a local path).
func New(callbackURL string, hosts []HostPattern, fallback string) (*Policy, error) {
	u, err := url.Parse(callbackURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("redirect policy: callback URL %q is not an absolute http(s) URL", callbackURL)
	}
	if !IsLocalPath(fallback) {
		return nil, fmt.Errorf("redirect policy: fallback %q is not a local path", fallback)
	}
	host := strings.ToLower(u.Host)
	if p := u.Port(); p != "" && p == defaultPort(u.Scheme) {
		host = strings.ToLower(u.Hostname())
	}
	return &Policy{
		selfScheme: u.Scheme,
		selfHost:   host,
		allowHTTP:  u.Scheme == "http",
		hosts:      hosts,
		fallback:   fallback,
	}, nil
}

// Fallback is where users land when no acceptable return URL was given.
func (p *Policy) Fallback() string { return p.fallback }

// Resolve returns where to send the browser for the return URL raw: raw
// itself (a local path as given; an absolute URL re-serialised in a
// canonical form, without fragment) when the policy accepts it, else the
// fallback, with ok false so the caller can log the refusal.
func (p *Policy) Resolve(raw string) (target string, ok bool) {
	if raw == "" || len(raw) > MaxLength {
		return p.fallback, false
	}
	if IsLocalPath(raw) {
		return raw, true
	}
	if t, ok := p.absolute(raw); ok {
		return t, true
	}
	return p.fallback, false
}

func (p *Policy) absolute(raw string) (string, bool) {
	// Browsers strip tabs and newlines anywhere and treat backslashes as
	// slashes in the authority and path of http(s) URLs; Go's parser does
	// neither, so any of them there would make the two read different
	// hosts. They are refused outright, as are spaces and everything else
	// outside printable ASCII. Past the first '?' both read a backslash as
	// itself, and browsers send it unescaped in a query (C:\dir, a regex):
	// it stays, as the page sent it.
	query := strings.IndexByte(raw, '?')
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= ' ' || c >= 0x7f || (c == '\\' && (query < 0 || i < query)) {
			return "", false
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.User != nil {
		return "", false
	}
	scheme := u.Scheme // url.Parse lower-cases it
	switch {
	case scheme == "https":
	case scheme == "http" && p.allowHTTP:
	default:
		return "", false
	}
	// The authority exactly as written must be a plain host[:port]: no
	// percent-escapes (url.Parse would decode them), nothing that a
	// browser might read differently.
	authority := rawAuthority(raw)
	if authority == "" || authority != u.Host {
		return "", false
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if strings.HasPrefix(authority, "[") || !ValidHostname(host) {
		return "", false
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || port != strconv.Itoa(n) {
			return "", false
		}
		if port == defaultPort(scheme) {
			port = ""
		}
	}
	hostport := host
	if port != "" {
		hostport += ":" + port
	}
	if !p.hostAllowed(scheme, host, port, hostport) {
		return "", false
	}
	out := url.URL{Scheme: scheme, Host: hostport, Path: u.Path, RawPath: u.RawPath, RawQuery: u.RawQuery}
	if out.Path == "" {
		out.Path = "/"
	}
	return out.String(), true
}

// HostAllowed reports whether a return URL may lead to hostport ("host"
// or "host:port", lower case, the scheme's default port left out, as
// forward.Original.Host has it) over scheme: Gatehouse's own origin or
// an ALLOWED_REDIRECT_HOSTS entry.
func (p *Policy) HostAllowed(scheme, hostport string) bool {
	return p.MatchHost(scheme, hostport) != NoMatch
}

// Match is how a host is allowed by the policy.
type Match uint8

const (
	// NoMatch: not allowed.
	NoMatch Match = iota
	// Named: Gatehouse's own host, or an entry names it exactly. There
	// are as many such hosts as the configuration lists.
	Named
	// Subdomain: only a leading-dot entry (.example.com) matches it, as it
	// matches any name a client cares to make up below.
	Subdomain
)

// MatchHost is HostAllowed telling a host the configuration names from
// one only a leading-dot entry matches: whoever counts hosts needs a
// bound for the latter alone.
func (p *Policy) MatchHost(scheme, hostport string) Match {
	switch {
	case scheme == "https":
	case scheme == "http" && p.allowHTTP:
	default:
		return NoMatch
	}
	host, port := hostport, ""
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.Contains(hostport, "]") {
		host, port = hostport[:i], hostport[i+1:]
	}
	if !ValidHostname(host) {
		return NoMatch
	}
	return p.match(scheme, host, port, hostport)
}

func (p *Policy) hostAllowed(scheme, host, port, hostport string) bool {
	return p.match(scheme, host, port, hostport) != NoMatch
}

// match prefers Named: a host may be listed and lie below a leading-dot
// entry too.
func (p *Policy) match(scheme, host, port, hostport string) Match {
	if scheme == p.selfScheme && hostport == p.selfHost {
		return Named
	}
	m := NoMatch
	for _, h := range p.hosts {
		// port is "" for the scheme's default; an entry may name it.
		if h.Port != port && (port != "" || h.Port != defaultPort(scheme)) {
			continue
		}
		if h.Subdomains {
			if len(host) > len(h.Name)+1 && strings.HasSuffix(host, h.Name) && host[len(host)-len(h.Name)-1] == '.' {
				m = Subdomain
			}
		} else if host == h.Name {
			return Named
		}
	}
	return m
}

// rawAuthority is what stands between "scheme://" and the next "/", "?"
// or "#" in raw, or "" when raw has no "//" authority.
func rawAuthority(raw string) string {
	_, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return ""
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

func defaultPort(scheme string) string {
	if scheme == "https" {
		return "443"
	}
	return "80"
}

// IsLocalPath reports whether s is a path on this site that is safe to
// redirect to: one leading slash, no scheme, no authority, no backslash
// tricks, no control characters or spaces (a real deep link has them
// percent-encoded; raw ones are only ever a trick).
func IsLocalPath(s string) bool {
	if s == "" || s[0] != '/' || len(s) > MaxLength {
		return false
	}
	if len(s) > 1 && (s[1] == '/' || s[1] == '\\') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f || c == '\\' {
			return false
		}
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return false
	}
	return true
}
