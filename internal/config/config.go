// Package config reads Gatehouse's settings from the environment (and an
// optional .env file) and validates all of them at once, so an operator sees
// every problem in one start attempt instead of fixing them one restart at a time.
package config

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/sethvargo/go-envconfig"
	"golang.org/x/net/publicsuffix"

	"github.com/gatehouse/gatehouse/internal/clientauth"
	"github.com/gatehouse/gatehouse/internal/forward"
	"github.com/gatehouse/gatehouse/internal/redirect"
)

// PlaceholderSecret is the SESSION_SECRET value shipped in .env.example.
// Starting with it would mean every copy of the example shares one key.
const PlaceholderSecret = "change-me-to-a-random-string-of-at-least-32-bytes"

// DefaultScopes are ZITADEL's scopes for a profile page with roles,
// organisation and metadata, and a refresh token.
const DefaultScopes = "openid profile email offline_access urn:zitadel:iam:user:metadata urn:zitadel:iam:user:resourceowner urn:zitadel:iam:org:projects:roles"

// raw is what the environment holds, as text. Parsing happens in validate so
// that every bad value is reported, not only the first.
type raw struct {
	Port                  string `env:"PORT, default=3000"`
	SessionSecret         string `env:"SESSION_SECRET"`
	SessionSecretPrevious string `env:"SESSION_SECRET_PREVIOUS"`
	SessionDuration       string `env:"SESSION_DURATION, default=3600"`
	SessionIdleTimeout    string `env:"SESSION_IDLE_TIMEOUT"`
	SessionStore          string `env:"SESSION_STORE, default=cookie"`
	RedisURL              string `env:"REDIS_URL"`
	RedisPassword         string `env:"REDIS_PASSWORD"`
	RedisKeyPrefix        string `env:"REDIS_KEY_PREFIX, default=gatehouse:"`
	RedisMode             string `env:"REDIS_MODE, default=standalone"`
	RedisUsername         string `env:"REDIS_USERNAME"`
	RedisSentinelMaster   string `env:"REDIS_SENTINEL_MASTER"`
	RedisSentinelAddrs    string `env:"REDIS_SENTINEL_ADDRS"`
	RedisSentinelUsername string `env:"REDIS_SENTINEL_USERNAME"`
	RedisSentinelPassword string `env:"REDIS_SENTINEL_PASSWORD"`
	RedisClusterAddrs     string `env:"REDIS_CLUSTER_ADDRS"`
	RedisTLS              string `env:"REDIS_TLS"`
	RedisTLSCAFile        string `env:"REDIS_TLS_CA_FILE"`
	RedisTLSCertFile      string `env:"REDIS_TLS_CERT_FILE"`
	RedisTLSKeyFile       string `env:"REDIS_TLS_KEY_FILE"`
	RedisTLSServerName    string `env:"REDIS_TLS_SERVER_NAME"`
	RedisMinReplicasAck   string `env:"REDIS_MIN_REPLICAS_ACK, default=0"`
	RedisReplicaAckWait   string `env:"REDIS_REPLICA_ACK_TIMEOUT, default=500ms"`
	Issuer                string `env:"ZITADEL_DOMAIN"`
	ClientID              string `env:"ZITADEL_CLIENT_ID"`
	ClientSecret          string `env:"ZITADEL_CLIENT_SECRET"`
	KeyFile               string `env:"ZITADEL_KEY_FILE"`
	Key                   string `env:"ZITADEL_KEY"`
	ProjectID             string `env:"ZITADEL_PROJECT_ID"`
	IntrospectionCacheTTL string `env:"INTROSPECTION_CACHE_TTL, default=60s"`
	ProviderTimeout       string `env:"PROVIDER_TIMEOUT, default=5s"`
	RolesMaxAge           string `env:"ROLES_MAX_AGE, default=5m"`
	CallbackURL           string `env:"ZITADEL_CALLBACK_URL"`
	PostLoginURL          string `env:"ZITADEL_POST_LOGIN_URL, default=/profile"`
	PostLogoutURL         string `env:"ZITADEL_POST_LOGOUT_URL"`
	Scopes                string `env:"ZITADEL_SCOPES"`
	AdminRole             string `env:"ADMIN_ROLE, default=admin"`
	AdminAddr             string `env:"ADMIN_ADDR, default=:9090"`
	AdminPprof            string `env:"ADMIN_PPROF, default=false"`
	LogFormat             string `env:"LOG_FORMAT, default=json"`
	LogLevel              string `env:"LOG_LEVEL, default=info"`
	ShutdownDelay         string `env:"SHUTDOWN_DELAY, default=5s"`
	ShutdownTimeout       string `env:"SHUTDOWN_TIMEOUT, default=20s"`
	TrustedProxies        string `env:"TRUSTED_PROXIES"`
	RateLimit             string `env:"RATE_LIMIT_PER_MINUTE, default=60"`
	RateLimitBurst        string `env:"RATE_LIMIT_BURST, default=20"`
	AllowedRedirectHosts  string `env:"ALLOWED_REDIRECT_HOSTS"`
	CookieDomain          string `env:"COOKIE_DOMAIN"`
	ForwardAccessToken    string `env:"FORWARD_ACCESS_TOKEN, default=false"`
	SigninPage            string `env:"SIGNIN_PAGE, default=show"`
}

// Config is the validated configuration.
type Config struct {
	Port                  int
	SessionSecret         string
	SessionSecretPrevious string
	SessionDuration       time.Duration
	SessionIdleTimeout    time.Duration
	SessionStore          string // cookie, redis or memory
	RedisURL              string // standalone: redis://, rediss:// or unix://
	RedisPassword         string
	RedisKeyPrefix        string
	Redis                 Redis // topology, ACL user, TLS, replica acknowledgement

	Issuer       string // ZITADEL_DOMAIN: the issuer URL, exactly as in the discovery document
	ClientID     string
	ClientSecret string // empty: public client (PKCE only), or ClientKey
	// ClientKey is ZITADEL's application key (ZITADEL_KEY_FILE or
	// ZITADEL_KEY): Gatehouse then authenticates with private_key_jwt. At
	// most one of ClientSecret and ClientKey is set.
	ClientKey     *clientauth.Key
	ProjectID     string // ZITADEL_PROJECT_ID: roles are read from this project's claim only; also accepted as a bearer token's audience
	CallbackURL   string
	PostLoginURL  string
	PostLogoutURL string
	Scopes        []string

	// IntrospectionCacheTTL bounds how long an introspection answer for
	// an opaque bearer token is reused (also by the token's exp); 0: not at all.
	IntrospectionCacheTTL time.Duration
	// ProviderTimeout is the longest a user's request waits for ZITADEL:
	// the callback's code exchange, keys and userinfo together, and
	// /auth/userinfo.
	ProviderTimeout time.Duration
	// RolesMaxAge bounds how old the roles a decision uses may be: older
	// ones are read again from userinfo first.
	RolesMaxAge time.Duration

	AdminRole       string
	AdminAddr       string
	AdminPprof      bool // /debug/pprof/ on the admin listener
	LogFormat       string
	LogLevel        string
	ShutdownDelay   time.Duration
	ShutdownTimeout time.Duration
	TrustedProxies  []netip.Prefix
	RateLimit       int // sign-in attempts per minute per client on the sign-in and callback routes (only failed and abandoned ones count); 0 disables
	RateLimitBurst  int

	// Forward-auth (docs/FORWARD-AUTH.md).

	// AllowedRedirectHosts are the hosts besides Gatehouse's own that a
	// browser may be sent back to after signing in.
	AllowedRedirectHosts []redirect.HostPattern
	// CookieDomain ("example.com", stored without a leading dot) shares the
	// session cookie with every host below it; empty keeps the cookie on
	// Gatehouse's own host. See SessionCookiePrefix.
	CookieDomain string
	// ForwardAccessToken sends the user's access token upstream in
	// X-Auth-Request-Access-Token.
	ForwardAccessToken bool
	// SigninPage is "show" (the sign-in page with its button) or "skip"
	// (straight on to ZITADEL when coming from a protected app).
	SigninPage string
}

// SecureCookies reports whether cookies must carry the Secure flag: the app
// is reached over https whenever its callback URL is.
func (c Config) SecureCookies() bool {
	return strings.HasPrefix(c.CallbackURL, "https://")
}

// SessionCookiePrefix is the session cookie name's prefix: "__Host-" on
// https without COOKIE_DOMAIN (the browser pins the cookie to this host),
// "__Secure-" on https with it (a __Host- cookie cannot carry a Domain),
// and none on plain-http development, where neither prefix is allowed.
func (c Config) SessionCookiePrefix() string {
	switch {
	case !c.SecureCookies():
		return ""
	case c.CookieDomain != "":
		return "__Secure-"
	default:
		return "__Host-"
	}
}

// PublicOrigin is Gatehouse's public origin (scheme://host[:port]), taken
// from the callback URL: the issuer of its signed assertions.
func (c Config) PublicOrigin() string {
	u, err := url.Parse(c.CallbackURL)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// ClientAuthMethod names how Gatehouse authenticates to ZITADEL, for logs.
func (c Config) ClientAuthMethod() string {
	switch {
	case c.ClientKey != nil:
		return "private_key_jwt"
	case c.ClientSecret != "":
		return "client_secret_basic"
	}
	return "none (public client, PKCE)"
}

// Problems lists every configuration error; Error joins them one per line.
type Problems []string

func (p Problems) Error() string { return strings.Join(p, "\n") }

// Overrides are values the caller fixes regardless of the environment (the
// development provider sets the ZITADEL_* variables this way).
type Overrides map[string]string

// Load reads the configuration through lookup (the process environment,
// typically), falling back to dotenv values. overrides win over both.
func Load(ctx context.Context, lookup func(string) (string, bool), dotenv map[string]string, overrides Overrides) (Config, error) {
	var r raw
	// An empty line in .env (VAR=) means "not set", so defaults still apply.
	nonEmpty := make(map[string]string, len(dotenv))
	for k, v := range dotenv {
		if v != "" {
			nonEmpty[k] = v
		}
	}
	l := envconfig.MultiLookuper(
		envconfig.MapLookuper(overrides),
		envconfig.LookuperFunc(lookup),
		envconfig.MapLookuper(nonEmpty),
	)
	if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: &r, Lookuper: l}); err != nil {
		return Config{}, fmt.Errorf("read environment: %w", err)
	}
	return r.validate()
}

func (r raw) validate() (Config, error) {
	var p Problems
	bad := func(name, format string, args ...any) {
		p = append(p, name+": "+fmt.Sprintf(format, args...))
	}
	c := Config{
		SessionSecret:         r.SessionSecret,
		SessionSecretPrevious: r.SessionSecretPrevious,
		SessionStore:          strings.ToLower(strings.TrimSpace(r.SessionStore)),
		RedisURL:              r.RedisURL,
		RedisPassword:         r.RedisPassword,
		RedisKeyPrefix:        r.RedisKeyPrefix,
		Issuer:                strings.TrimSpace(r.Issuer),
		ClientID:              strings.TrimSpace(r.ClientID),
		ClientSecret:          r.ClientSecret,
		CallbackURL:           strings.TrimSpace(r.CallbackURL),
		PostLoginURL:          strings.TrimSpace(r.PostLoginURL),
		PostLogoutURL:         strings.TrimSpace(r.PostLogoutURL),
		AdminRole:             strings.TrimSpace(r.AdminRole),
		AdminAddr:             strings.TrimSpace(r.AdminAddr),
		LogFormat:             strings.ToLower(strings.TrimSpace(r.LogFormat)),
		LogLevel:              strings.ToLower(strings.TrimSpace(r.LogLevel)),
	}

	// 0: the kernel picks a free port; the "listening" log line names it.
	port, err := strconv.Atoi(strings.TrimSpace(r.Port))
	if err != nil || port < 0 || port > 65535 {
		bad("PORT", "must be a port number from 1 to 65535 (0: any free port), got %q", r.Port)
	}
	c.Port = port

	switch {
	case r.SessionSecret == "":
		bad("SESSION_SECRET", "is required: set it to a random string of at least 32 bytes (e.g. `openssl rand -base64 48`)")
	case r.SessionSecret == PlaceholderSecret:
		bad("SESSION_SECRET", "is still the placeholder from .env.example: generate a random one (e.g. `openssl rand -base64 48`)")
	case len(r.SessionSecret) < 32:
		bad("SESSION_SECRET", "is %d bytes long; it must be at least 32", len(r.SessionSecret))
	}
	switch {
	case r.SessionSecretPrevious == PlaceholderSecret:
		bad("SESSION_SECRET_PREVIOUS", "is the placeholder from .env.example: anyone could seal sessions with it; leave it empty or set the secret you rotated away from")
	case r.SessionSecretPrevious != "" && len(r.SessionSecretPrevious) < 32:
		bad("SESSION_SECRET_PREVIOUS", "is %d bytes long; it must be at least 32 (or empty)", len(r.SessionSecretPrevious))
	}
	if r.ClientSecret != "" && strings.TrimSpace(r.ClientSecret) == "" {
		bad("ZITADEL_CLIENT_SECRET", "is only whitespace: set the secret ZITADEL shows, or leave it empty")
	}

	c.SessionDuration = seconds(r.SessionDuration, "SESSION_DURATION", bad)
	c.SessionIdleTimeout = c.SessionDuration
	if strings.TrimSpace(r.SessionIdleTimeout) != "" {
		c.SessionIdleTimeout = seconds(r.SessionIdleTimeout, "SESSION_IDLE_TIMEOUT", bad)
	}

	switch c.SessionStore {
	case "cookie", "memory":
	case "redis":
		c.Redis = r.redis(bad)
	default:
		bad("SESSION_STORE", "must be cookie, redis or memory, got %q", r.SessionStore)
	}

	if c.Issuer == "" {
		bad("ZITADEL_DOMAIN", "is required: your ZITADEL issuer URL, e.g. https://my-instance.zitadel.cloud (or run with -dev for a local development provider)")
	} else if msg := absoluteURL(c.Issuer); msg != "" {
		bad("ZITADEL_DOMAIN", "%s", msg)
	}
	if c.ClientID == "" {
		bad("ZITADEL_CLIENT_ID", "is required: the client ID of your ZITADEL application")
	}
	c.ClientKey = clientKey(r, c.ClientID, bad)
	c.ProjectID = strings.TrimSpace(r.ProjectID)
	if strings.ContainsFunc(c.ProjectID, unicode.IsSpace) || len(c.ProjectID) > 64 {
		bad("ZITADEL_PROJECT_ID", "must be one project ID (the project's resource ID in the ZITADEL console), got %q", c.ProjectID)
	}
	if d := duration(r.IntrospectionCacheTTL, "INTROSPECTION_CACHE_TTL", bad); d > time.Hour {
		bad("INTROSPECTION_CACHE_TTL", "must be at most 1h: a revoked opaque token is still accepted this long, got %q", r.IntrospectionCacheTTL)
	} else {
		c.IntrospectionCacheTTL = d
	}
	if d, err := time.ParseDuration(strings.TrimSpace(r.ProviderTimeout)); err != nil || d < time.Second || d > 25*time.Second {
		bad("PROVIDER_TIMEOUT", "must be a duration from 1s to 25s (the answer must reach the browser within the server's 30 s write timeout), got %q", r.ProviderTimeout)
	} else {
		c.ProviderTimeout = d
	}
	switch d, err := time.ParseDuration(strings.TrimSpace(r.RolesMaxAge)); {
	case err != nil:
		bad("ROLES_MAX_AGE", "must be a duration such as 5m or 30s, got %q", r.RolesMaxAge)
	case d < time.Second:
		bad("ROLES_MAX_AGE", "must be at least 1s: roles are read again from ZITADEL at most this often per session, got %q", r.RolesMaxAge)
	case d > 24*time.Hour:
		bad("ROLES_MAX_AGE", "must be at most 24h: a removed role keeps working up to this long, got %q", r.RolesMaxAge)
	default:
		c.RolesMaxAge = d
	}
	if c.CallbackURL == "" {
		bad("ZITADEL_CALLBACK_URL", "is required: e.g. http://localhost:3000/auth/callback, registered as a redirect URI in ZITADEL")
	} else if msg := absoluteURL(c.CallbackURL); msg != "" {
		bad("ZITADEL_CALLBACK_URL", "%s", msg)
	} else if u, _ := url.Parse(c.CallbackURL); u.Path != "/auth/callback" {
		bad("ZITADEL_CALLBACK_URL", "must end in /auth/callback (the route Gatehouse serves), got path %q", u.Path)
	}
	if c.PostLoginURL == "" || !IsLocalPath(c.PostLoginURL) {
		bad("ZITADEL_POST_LOGIN_URL", "must be a path on this site starting with a single /, got %q", c.PostLoginURL)
	}
	if c.PostLogoutURL == "" && c.CallbackURL != "" && absoluteURL(c.CallbackURL) == "" {
		u, _ := url.Parse(c.CallbackURL)
		c.PostLogoutURL = u.Scheme + "://" + u.Host + "/auth/logout/callback"
	} else if c.PostLogoutURL != "" {
		if msg := absoluteURL(c.PostLogoutURL); msg != "" {
			bad("ZITADEL_POST_LOGOUT_URL", "%s", msg)
		}
	}

	scopes := r.Scopes
	if strings.TrimSpace(scopes) == "" {
		scopes = DefaultScopes
	}
	c.Scopes = strings.Fields(scopes)
	if !contains(c.Scopes, "openid") {
		bad("ZITADEL_SCOPES", "must include openid")
	}

	if c.AdminRole == "" {
		bad("ADMIN_ROLE", "must not be empty")
	} else if !forward.ValidRoleName(c.AdminRole) {
		bad("ADMIN_ROLE", "must be a ZITADEL role key (letters, digits and _.:-, at most 64 characters), got %q", c.AdminRole)
	}
	if c.AdminAddr != "" && c.AdminAddr != "off" {
		if _, p, err := net.SplitHostPort(c.AdminAddr); err != nil || p == "" {
			bad("ADMIN_ADDR", "must be host:port or :port (or off), got %q", c.AdminAddr)
		} else if port != 0 && p == strconv.Itoa(port) {
			bad("ADMIN_ADDR", "must not use the public PORT %d: metrics stay off the public listener", port)
		}
	}
	if v, err := strconv.ParseBool(strings.TrimSpace(r.AdminPprof)); err != nil {
		bad("ADMIN_PPROF", "must be true or false, got %q", r.AdminPprof)
	} else if v && (c.AdminAddr == "" || c.AdminAddr == "off") {
		bad("ADMIN_PPROF", "needs the admin listener, but ADMIN_ADDR is off: profiles are never served on the public port")
	} else {
		c.AdminPprof = v
	}
	switch c.LogFormat {
	case "json", "text":
	default:
		bad("LOG_FORMAT", "must be json or text, got %q", r.LogFormat)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("LOG_LEVEL", "must be debug, info, warn or error, got %q", r.LogLevel)
	}
	c.ShutdownDelay = duration(r.ShutdownDelay, "SHUTDOWN_DELAY", bad)
	c.ShutdownTimeout = duration(r.ShutdownTimeout, "SHUTDOWN_TIMEOUT", bad)

	for _, s := range strings.FieldsFunc(r.TrustedProxies, func(r rune) bool { return r == ',' || r == ' ' }) {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			if a, aerr := netip.ParseAddr(s); aerr == nil {
				pfx = netip.PrefixFrom(a, a.BitLen())
			} else {
				bad("TRUSTED_PROXIES", "%q is not a CIDR (e.g. 10.0.0.0/8) or an IP address", s)
				continue
			}
		}
		if pfx.Addr().Is4In6() {
			bad("TRUSTED_PROXIES", "%q is an IPv4-mapped IPv6 address, which never matches (peers are compared in IPv4 form); write it as IPv4", s)
			continue
		}
		if pfx.Bits() == 0 {
			bad("TRUSTED_PROXIES", "%q would trust every client to write its own X-Forwarded-* headers (and so its own address and original URL); list your proxies' addresses", s)
			continue
		}
		c.TrustedProxies = append(c.TrustedProxies, pfx.Masked())
	}
	c.RateLimit = nonNegative(r.RateLimit, "RATE_LIMIT_PER_MINUTE", bad)
	c.RateLimitBurst = nonNegative(r.RateLimitBurst, "RATE_LIMIT_BURST", bad)
	if c.RateLimit > 0 && c.RateLimitBurst == 0 {
		bad("RATE_LIMIT_BURST", "must be at least 1 while RATE_LIMIT_PER_MINUTE is on (a burst of 0 refuses every request)")
	}

	c.validateForwardAuth(r, bad)

	if len(p) > 0 {
		return Config{}, p
	}
	return c, nil
}

// clientKey reads the application key from ZITADEL_KEY_FILE or ZITADEL_KEY,
// after checking that at most one way of client authentication is set.
func clientKey(r raw, clientID string, bad func(string, string, ...any)) *clientauth.Key {
	var set []string
	for _, v := range []struct{ name, value string }{
		{"ZITADEL_CLIENT_SECRET", r.ClientSecret}, {"ZITADEL_KEY_FILE", r.KeyFile}, {"ZITADEL_KEY", r.Key},
	} {
		if strings.TrimSpace(v.value) != "" {
			set = append(set, v.name)
		}
	}
	if len(set) > 1 {
		bad(strings.Join(set, ", "), "set at most one: a client secret (ZITADEL_CLIENT_SECRET), an application key (ZITADEL_KEY_FILE or ZITADEL_KEY), or neither for a PKCE-only public client")
		return nil
	}
	var key *clientauth.Key
	var err error
	name := "ZITADEL_KEY_FILE"
	switch {
	case strings.TrimSpace(r.KeyFile) != "":
		key, err = clientauth.ReadKeyFile(strings.TrimSpace(r.KeyFile))
	case strings.TrimSpace(r.Key) != "":
		name = "ZITADEL_KEY"
		key, err = clientauth.ParseKey([]byte(r.Key))
	default:
		return nil
	}
	if err != nil {
		bad(name, "%s", err)
		return nil
	}
	if clientID != "" && key.ClientID != clientID {
		bad(name, "is the key of client %q, but ZITADEL_CLIENT_ID is %q: use the key of this application (or fix ZITADEL_CLIENT_ID)", key.ClientID, clientID)
		return nil
	}
	return key
}

// validateForwardAuth reads the forward-auth settings. Cookie domain and
// redirect hosts are checked against each other: a protected app outside
// the cookie's domain never receives the session cookie, so its users
// would be sent to sign in again and again.
func (c *Config) validateForwardAuth(r raw, bad func(string, string, ...any)) {
	callbackHost := ""
	if c.CallbackURL != "" && absoluteURL(c.CallbackURL) == "" {
		u, _ := url.Parse(c.CallbackURL)
		callbackHost = strings.ToLower(u.Hostname())
	}

	if d := strings.ToLower(strings.TrimSpace(r.CookieDomain)); d != "" {
		d = strings.TrimPrefix(d, ".")
		switch {
		case !redirect.ValidHostname(d) || !strings.Contains(d, "."):
			bad("COOKIE_DOMAIN", "must be a domain such as .example.com (ASCII, xn-- form for internationalised names), got %q", r.CookieDomain)
		case isPublicSuffix(d):
			bad("COOKIE_DOMAIN", "%q is a public suffix: browsers refuse cookies for it; use your own domain below it", r.CookieDomain)
		case callbackHost != "" && !within(callbackHost, d):
			bad("COOKIE_DOMAIN", "%q does not contain the host of ZITADEL_CALLBACK_URL (%s): the browser would not send the session cookie back to Gatehouse", r.CookieDomain, callbackHost)
		default:
			c.CookieDomain = d
		}
	}

	hosts, err := redirect.ParseHosts(r.AllowedRedirectHosts)
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			bad("ALLOWED_REDIRECT_HOSTS", "%s", line)
		}
	}
	for _, h := range hosts {
		// Cookies ignore ports: without COOKIE_DOMAIN, a protected app on
		// Gatehouse's own host name (another port) still gets the cookie.
		switch {
		case c.CookieDomain == "" && strings.TrimSpace(r.CookieDomain) == "" && (h.Subdomains || h.Name != callbackHost):
			bad("ALLOWED_REDIRECT_HOSTS", "%q needs COOKIE_DOMAIN: without it the session cookie stays on Gatehouse's own host, never reaches the protected app, and its users would be asked to sign in again and again", h.String())
		case c.CookieDomain != "" && !within(h.Name, c.CookieDomain):
			bad("ALLOWED_REDIRECT_HOSTS", "%q is outside COOKIE_DOMAIN %s: the session cookie would never reach it, and its users would be asked to sign in again and again", h.String(), c.CookieDomain)
		}
	}
	c.AllowedRedirectHosts = hosts

	if v, err := strconv.ParseBool(strings.TrimSpace(r.ForwardAccessToken)); err != nil {
		bad("FORWARD_ACCESS_TOKEN", "must be true or false, got %q", r.ForwardAccessToken)
	} else {
		c.ForwardAccessToken = v
	}
	switch v := strings.ToLower(strings.TrimSpace(r.SigninPage)); v {
	case "show", "skip":
		c.SigninPage = v
	default:
		bad("SIGNIN_PAGE", "must be show or skip, got %q", r.SigninPage)
	}
}

// within reports whether host is domain or a name below it.
func within(host, domain string) bool {
	return host == domain || strings.HasSuffix(host, "."+domain)
}

// isPublicSuffix reports whether d is a suffix under which anyone can
// register names (com, co.uk, github.io ...): a cookie for it would be
// shared with strangers, and browsers refuse it.
func isPublicSuffix(d string) bool {
	_, err := publicsuffix.EffectiveTLDPlusOne(d)
	return err != nil
}

// IsLocalPath reports whether s is a path on this site that is safe to
// redirect to (see redirect.IsLocalPath, which decides).
func IsLocalPath(s string) bool { return redirect.IsLocalPath(s) }

func absoluteURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Sprintf("is not a valid URL: %q", s)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Sprintf("must start with https:// (or http:// for local development), got %q", s)
	}
	if u.Host == "" {
		return fmt.Sprintf("must include a host, got %q", s)
	}
	if !strings.HasPrefix(s, u.Scheme+"://") || u.Host != strings.ToLower(u.Host) {
		// Others compare these strings as written: the https:// prefix
		// decides Secure cookies and the security headers, the origin is
		// the assertion's issuer, and ZITADEL matches redirect URIs exactly.
		return fmt.Sprintf("must have its scheme and host in lower case, got %q", u.Redacted())
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Sprintf("must not carry credentials, a query or a fragment, got %q", u.Redacted())
	}
	return ""
}

// maxSeconds bounds the lifetimes given in seconds, far below where a
// time.Duration overflows.
const maxSeconds = 366 * 24 * 60 * 60

func seconds(s, name string, bad func(string, string, ...any)) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n <= 0 {
		bad(name, "must be a whole number of seconds greater than 0, got %q", s)
		return 0
	}
	if n > maxSeconds {
		bad(name, "must be at most %d seconds (366 days), got %q", maxSeconds, s)
		return 0
	}
	return time.Duration(n) * time.Second
}

func duration(s, name string, bad func(string, string, ...any)) time.Duration {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil || d < 0 {
		bad(name, "must be a duration such as 5s or 1m, got %q", s)
		return 0
	}
	return d
}

func nonNegative(s, name string, bad func(string, string, ...any)) int {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 {
		bad(name, "must be a whole number, 0 or more, got %q", s)
		return 0
	}
	return n
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Variables lists every environment variable Gatehouse reads (besides the
// standard OTEL_* ones), from the struct tags, for docs and tests.
func Variables() []string {
	t := reflect.TypeOf(raw{})
	out := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("env"), ",")
		out = append(out, name)
	}
	return out
}
