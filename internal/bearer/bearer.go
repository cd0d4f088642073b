// Package bearer judges `Authorization: Bearer` access tokens issued by
// ZITADEL: JWT access tokens locally against the provider's key set,
// opaque ones by RFC 7662 introspection with a bounded, single-flight
// cache. It answers with an Identity and one Outcome of a closed set, for
// the decision endpoints to turn into 200, 401 or 503.
//
// Nothing here logs or records a token, its hash or a client assertion:
// Result carries only fixed reason codes and errors written from constants.
package bearer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/zitadel/oidc/v3/pkg/client/rs"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sync/singleflight"

	"github.com/gatehouse/gatehouse/internal/claims"
)

// MaxTokenLength is the longest token judged; longer ones are refused
// before any parsing. ZITADEL's JWT access tokens are 1–4 KB even with
// many roles; Gatehouse's server refuses whole headers over 32 KiB before
// a handler runs.
const MaxTokenLength = 16 << 10

// Upstream is the connection to the identity provider; *auth.Provider
// implements it. Each method fails while the provider is not connected.
type Upstream interface {
	// KeySet verifies signatures with the provider's published keys,
	// refetching them (rate-limited) when a token names an unknown key.
	KeySet() (oidc.KeySet, error)
	// Introspector is the introspection client, authenticated as Gatehouse.
	Introspector() (rs.ResourceServer, error)
	// Available reports whether the provider answers now (a cached probe).
	Available(ctx context.Context) error
}

// Config configures a Verifier.
type Config struct {
	// Issuer is the provider's issuer, exactly as its tokens name it.
	Issuer string
	// Audiences are the values a token's aud must contain one of: the
	// client ID, and the project ID if set.
	Audiences []string
	// ProjectID, if set, is the project whose roles count: roles are read
	// from the claim claims.ProjectRoles names for it (the project's own
	// claim, never another project's), as for sessions.
	ProjectID string
	// Introspect enables opaque tokens; introspection needs client
	// credentials (a key or a secret). Without it an opaque token is an
	// invalid token.
	Introspect bool
	// CacheTTL bounds how long an introspection answer is reused
	// (INTROSPECTION_CACHE_TTL); 0 disables the cache.
	CacheTTL time.Duration
	// MaxCacheEntries bounds the cache (default DefaultMaxCacheEntries).
	MaxCacheEntries int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Gate, if set, admits the introspection calls the requests of
	// VerifyFor may cost (nil: every one).
	Gate Gate
}

// Gate decides whether r may cost the provider an introspection call: a
// well-formed opaque token that no cache has an answer for and no call is
// already asking about. It is called in r's own goroutine on such a miss,
// and reads from r all the decision needs (who the client is); the Charge
// it returns runs inside the call, which is shared and may outlive r's
// handler, so the Charge must not touch r (net/http forbids using a
// request after its handler returned). The Charge is run once per call,
// for the request that starts it; requests that join a call in flight
// are not charged. When it refuses, that request and those that joined it
// are answered Throttled (retry after wait) and the provider is not
// asked. When it admits, release is called once with the call's verdict:
// refused is true when the provider called the token inactive or
// Gatehouse refused its claims (whether or not the request is still
// there). So a limit built on it counts only the tokens that did not
// work, as the sign-in limit counts only the sign-ins that failed
// (internal/ratelimit).
type Gate func(r *http.Request) Charge

// Charge takes one introspection call from the budget of the client its
// Gate read from a request (see Gate).
type Charge func() (release func(refused bool), wait time.Duration, ok bool)

// DefaultMaxCacheEntries bounds the cache of verified JWTs and
// introspection answers: an entry holds about half a KB, its role set
// shared with tokens of equal grants (BenchmarkCacheEntryMemory), so at
// most a few MB beside the process's ~30 MiB budget, for 5000 distinct tokens per replica and minute. Past
// that, random eviction costs a re-verification, never correctness.
// Inactive introspection answers are kept apart, a fifth as many.
const DefaultMaxCacheEntries = 5000

// maxRoleSets bounds the distinct role sets the cached identities share.
const maxRoleSets = 1024

// Outcome is the verdict on a token: a closed set.
type Outcome uint8

const (
	// Allowed: the token is valid; Result.Identity says whose it is.
	Allowed Outcome = iota + 1
	// InvalidToken: answer 401 with WWW-Authenticate: Bearer error="invalid_token".
	InvalidToken
	// Unavailable: the provider could not be asked and nothing was
	// cached; answer 503, never 401.
	Unavailable
	// Throttled: the Gate refused the introspection call the token needs;
	// answer 429 with Retry-After (Result.RetryAfter), never 401: the
	// token may be good.
	Throttled
)

func (o Outcome) String() string {
	switch o {
	case Allowed:
		return "allowed"
	case InvalidToken:
		return "invalid_token"
	case Unavailable:
		return "unavailable"
	case Throttled:
		return "throttled"
	}
	return "unknown"
}

// Credential is the kind of token judged.
type Credential string

const (
	CredentialJWT    Credential = "jwt"
	CredentialOpaque Credential = "opaque"
)

// Reason says why a token was not allowed: a closed set of codes, safe for
// logs, spans and metrics.
type Reason string

const (
	ReasonMalformed          Reason = "malformed"            // not `Bearer <token68>`
	ReasonTooLong            Reason = "too_long"             // longer than MaxTokenLength
	ReasonUnsupportedAlg     Reason = "unsupported_alg"      // none, HMAC, or anything but the provider's asymmetric algorithms
	ReasonBadSignature       Reason = "bad_signature"        // the named key does not verify it
	ReasonUnknownKey         Reason = "unknown_key"          // no published key has its kid (after a refetch, rate limit allowing)
	ReasonWrongIssuer        Reason = "wrong_issuer"         //
	ReasonWrongAudience      Reason = "wrong_audience"       // aud names neither the client nor the project
	ReasonExpired            Reason = "expired"              //
	ReasonNotYetValid        Reason = "not_yet_valid"        // a JWT's nbf (or iat) in the future
	ReasonMissingClaim       Reason = "missing_claim"        // no sub or no exp
	ReasonNotAccessToken     Reason = "not_access_token"     // an ID token (nonce, at_hash) presented as an access token
	ReasonInactive           Reason = "inactive"             // introspection: active=false (revoked, expired, unknown)
	ReasonOpaqueUnsupported  Reason = "opaque_not_supported" // opaque token, but no client credentials to introspect with
	ReasonProviderDown       Reason = "provider_unavailable" // provider not connected or not answering
	ReasonIntrospectionError Reason = "introspection_failed" // the endpoint answered with an error
	ReasonRateLimited        Reason = "rate_limited"         // the Gate refused an introspection call (Throttled)
)

// Identity is who a valid token speaks for. Shared between requests (the
// cache hands out the same one): read-only.
type Identity struct {
	// Identity is read from the token's claims as a session's is
	// (claims.IdentityOf): subject, e-mail (often absent from JWT access
	// tokens: ZITADEL puts it in userinfo), preferred username,
	// organisation (urn:zitadel:iam:user:resourceowner:id), and the
	// project roles of Config.ProjectID (claims.ProjectRoles), each with
	// the organisations that granted it.
	claims.Identity
	Name     string
	Scopes   []string
	ClientID string    // the application the token was issued to
	Expiry   time.Time // zero if the provider did not say
}

// Result is a verdict with what the caller needs for the response, the
// auth.verify span and the log line.
type Result struct {
	Outcome    Outcome
	Credential Credential // "" when the header held no well-formed bearer token
	// Cached: the introspection cache answered (opaque tokens), or a
	// verification of the same JWT was reused; no round trip, no signature check.
	Cached   bool
	Identity *Identity // set when Outcome is Allowed
	Reason   Reason    // set unless Outcome is Allowed
	Err      error     // the cause, for logs: its text is written from constants, never a token
	// RetryAfter is when the Gate will admit a call again (Throttled).
	RetryAfter time.Duration
}

// WWWAuthenticate is the header value for a 401 (RFC 6750 §3): with
// error="invalid_token" when a token was presented and refused.
func (r Result) WWWAuthenticate() string {
	if r.Outcome == InvalidToken {
		return `Bearer error="invalid_token"`
	}
	return "Bearer"
}

// Attributes are the span attributes for auth.verify: the credential,
// whether the introspection cache answered, and the failure reason.
func (r Result) Attributes() []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 3)
	if r.Credential != "" {
		attrs = append(attrs, attribute.String("auth.credential", string(r.Credential)))
	}
	if r.Credential == CredentialOpaque {
		attrs = append(attrs, attribute.Bool("auth.introspection.cached", r.Cached))
	}
	if r.Reason != "" {
		attrs = append(attrs, attribute.String("auth.failure.reason", string(r.Reason)))
	}
	return attrs
}

// LogValue is the Result for a log line: verdict, kind, reason and cause,
// and the subject when allowed.
func (r Result) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("outcome", r.Outcome.String())}
	if r.Credential != "" {
		attrs = append(attrs, slog.String("credential", string(r.Credential)), slog.Bool("cached", r.Cached))
	}
	if r.Reason != "" {
		attrs = append(attrs, slog.String("reason", string(r.Reason)))
	}
	if r.Err != nil {
		attrs = append(attrs, slog.String("error", r.Err.Error()))
	}
	if r.Identity != nil {
		attrs = append(attrs, slog.String("sub", r.Identity.Subject))
	}
	return slog.GroupValue(attrs...)
}

// Verifier judges bearer tokens. Safe for concurrent use.
type Verifier struct {
	cfg      Config
	upstream Upstream
	now      func() time.Time
	cache    *cache
	// refused holds the negative verdicts of introspection apart, so that
	// a flood of made-up tokens cannot push out the answers for real
	// clients' tokens (TestIntrospection_JunkTokensCannotEvictValidAnswers).
	refused    *cache
	roles      *claims.RoleSets // identities with equal grants share their roles (BenchmarkCacheEntryMemory)
	flight     singleflight.Group
	waiting    atomic.Int32 // requests waiting on an introspection call (tests watch it)
	noJWTCache bool         // benchmarks only: every JWT verified in full
}

// New returns a Verifier for tokens of cfg.Issuer, using upstream for keys
// and introspection.
func New(cfg Config, upstream Upstream) (*Verifier, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("bearer: issuer required")
	}
	if len(cfg.Audiences) == 0 {
		return nil, errors.New("bearer: at least one audience (the client ID) required")
	}
	if cfg.CacheTTL < 0 {
		return nil, fmt.Errorf("bearer: negative cache TTL %v", cfg.CacheTTL)
	}
	if cfg.MaxCacheEntries <= 0 {
		cfg.MaxCacheEntries = DefaultMaxCacheEntries
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Verifier{cfg: cfg, upstream: upstream, now: now, cache: newCache(cfg.MaxCacheEntries),
		refused: newCache(max(cfg.MaxCacheEntries/5, 1)), roles: claims.NewRoleSets(maxRoleSets)}, nil
}

// Verify judges the value of an Authorization header. Only the header
// counts: a token in the query string or the body is never looked at.
// No Gate is asked.
func (v *Verifier) Verify(ctx context.Context, authorization string) Result {
	return v.VerifyFor(ctx, nil, authorization)
}

// VerifyFor is Verify on behalf of r's client: the Gate, if configured,
// is asked before an introspection call (nil r: not asked).
func (v *Verifier) VerifyFor(ctx context.Context, r *http.Request, authorization string) Result {
	token, reason := tokenFrom(authorization)
	switch reason {
	case ReasonTooLong:
		return invalid("", reason, errTooLong)
	case ReasonMalformed:
		return invalid("", reason, errMalformed)
	}
	// Hashed here, not in the callees: the hash is the deepest point of a
	// cached decision, which must fit the stack a connection's goroutine
	// is shrunk back to between requests (docs/PERFORMANCE.md, "The
	// decision's stack"), and verifyJWT's and verifyOpaque's frames are
	// large.
	if strings.Count(token, ".") == 2 {
		return v.verifyJWT(ctx, token, hashToken(token))
	}
	if !v.cfg.Introspect {
		return noIntrospection(token)
	}
	return v.verifyOpaque(ctx, r, token, hashToken(token))
}

// wellFormed checks the token's characters, on a cache miss only: a token
// found in the cache is byte for byte one that passed before
// (BenchmarkVerify_JWT: the check is a third of a cached verification).
func wellFormed(cred Credential, token string) (Result, bool) {
	if !isB64Token(token) {
		return invalid(cred, ReasonMalformed, errMalformed), false
	}
	return Result{}, true
}

// VerifyRequest judges r's bearer token. ok is false when r carries no
// `Authorization: Bearer` header: it is then not an API request, and
// cookies decide. A token in the query string or a form body
// (access_token, RFC 6750 §2.2–2.3) is never read: URLs end up in logs,
// histories and Referer headers.
func (v *Verifier) VerifyRequest(r *http.Request) (res Result, ok bool) {
	h := r.Header.Get("Authorization")
	if !IsBearer(h) {
		return Result{}, false
	}
	return v.Verify(r.Context(), h), true
}

// IsBearer reports whether an Authorization header value uses the Bearer
// scheme: such a request is judged by its token, not by cookies. The
// scheme alone counts too ("Bearer" with the token missing: HTTP drops
// the trailing space of "Bearer "), and is a malformed token.
func IsBearer(authorization string) bool {
	return len(authorization) >= 6 && strings.EqualFold(authorization[:6], "bearer") &&
		(len(authorization) == 6 || authorization[6] == ' ')
}

var (
	errMalformed = errors.New("authorization header is not Bearer with a token68 value")
	errTooLong   = fmt.Errorf("token longer than %d bytes", MaxTokenLength)
)

// tokenFrom extracts the token from `Bearer <token>` (RFC 6750 §2.1: the
// scheme is case-insensitive, the token is a b64token).
func tokenFrom(h string) (string, Reason) {
	if len(h) > MaxTokenLength+64 { // before looking at a single byte of it
		return "", ReasonTooLong
	}
	if !IsBearer(h) || len(h) == len("bearer") {
		return "", ReasonMalformed
	}
	t := strings.TrimLeft(h[len("bearer "):], " ")
	if len(t) > MaxTokenLength {
		return "", ReasonTooLong
	}
	if t == "" {
		return "", ReasonMalformed
	}
	return t, ""
}

// isB64Token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(t string) bool {
	end := len(t)
	for end > 0 && t[end-1] == '=' {
		end--
	}
	if end == 0 {
		return false
	}
	for i := 0; i < end; i++ {
		c := t[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '.', c == '_', c == '~', c == '+', c == '/':
		default:
			return false
		}
	}
	return true
}

func invalid(cred Credential, reason Reason, err error) Result {
	return Result{Outcome: InvalidToken, Credential: cred, Reason: reason, Err: err}
}

func unavailable(cred Credential, err error) Result {
	return Result{Outcome: Unavailable, Credential: cred, Reason: ReasonProviderDown, Err: err}
}

// errProviderDown is what an Unavailable result says when the provider
// is not connected yet or its probe fails.
var errProviderDown = errors.New("identity provider unavailable")
