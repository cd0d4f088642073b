package bearer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/zitadel/oidc/v3/pkg/client/rs"
	"github.com/zitadel/oidc/v3/pkg/oidc"
)

// inactiveTTL is how long an "inactive" answer (or an active one that
// fails Gatehouse's own checks) is reused, at most CacheTTL. A client
// retrying with a dead token in a loop then costs the provider one call
// per inactiveTTL, while a token the provider called inactive only
// because it had not seen it yet (ZITADEL's projections are eventually
// consistent) works again within seconds.
const inactiveTTL = 10 * time.Second

// introspectionTimeout bounds one introspection round trip. The call is
// shared by every request waiting for the same token, so it does not end
// when the first of them gives up.
const introspectionTimeout = 10 * time.Second

// noIntrospection refuses an opaque token when Gatehouse has no client
// credentials to introspect it with.
func noIntrospection(token string) Result {
	if res, ok := wellFormed(CredentialOpaque, token); !ok {
		return res
	}
	return invalid(CredentialOpaque, ReasonOpaqueUnsupported, errNoIntrospection)
}

// verifyOpaque judges an opaque token by introspection: from the cache
// when it has an answer, else by one call to the provider however many
// requests ask about the token at once, if the Gate admits r. key is the
// token's hashToken.
func (v *Verifier) verifyOpaque(ctx context.Context, r *http.Request, token string, key cacheKey) Result {
	now := v.now()
	if e, ok := v.cache.get(key, now); ok {
		return fromEntry(e, true)
	}
	if e, ok := v.refused.get(key, now); ok {
		return fromEntry(e, true)
	}
	if res, ok := wellFormed(CredentialOpaque, token); !ok {
		return res
	}
	return v.introspectShared(ctx, r, key, token)
}

// introspectShared asks the provider about token, or waits for the call
// already asking. Only the request that starts the call is charged to
// the Gate (r's client; nil r: nobody): requests that join it cost the
// provider nothing, and a client fanning out with one new good token must
// not run out of budget on it. The charge is settled by the call's
// verdict, which comes however early the request leaves, so leaving
// early does not make a made-up token free. (Apart from verifyOpaque so
// the closure's copy of the key, which escapes, is not the cached path's,
// and the Gate is asked on a miss only.)
func (v *Verifier) introspectShared(ctx context.Context, r *http.Request, key cacheKey, token string) Result {
	// The call may outlive r's handler (its client hung up): who r's
	// client is gets read here, in r's goroutine, and the call only
	// uses the answer.
	var charge Charge
	if v.cfg.Gate != nil && r != nil {
		charge = v.cfg.Gate(r)
	}
	ch := v.flight.DoChan(string(key[:]), func() (any, error) {
		// A request that missed the cache just before a call stored its
		// answer can get here just after that call ended: the answer is
		// there now, and asking again would cost the provider a call and
		// the client a charge.
		now := v.now()
		if e, ok := v.cache.get(key, now); ok {
			return fromEntry(e, true), nil
		}
		if e, ok := v.refused.get(key, now); ok {
			return fromEntry(e, true), nil
		}
		var release func(refused bool)
		if charge != nil {
			var wait time.Duration
			var ok bool
			if release, wait, ok = charge(); !ok {
				return Result{Outcome: Throttled, Credential: CredentialOpaque, Reason: ReasonRateLimited, Err: errThrottled, RetryAfter: wait}, errIntrospection
			}
		}
		ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), introspectionTimeout)
		defer cancel()
		val, err := v.introspect(ictx, key, token)
		if release != nil {
			// A failed call (Unavailable) is the provider's fault, not the client's.
			e, answered := val.(entry)
			release(err == nil && answered && e.identity == nil)
		}
		return val, err
	})
	v.waiting.Add(1)
	defer v.waiting.Add(-1)
	select {
	case <-ctx.Done():
		return unavailable(CredentialOpaque, fmt.Errorf("waiting for introspection: %w", ctx.Err()))
	case res := <-ch:
		if e, ok := res.Val.(entry); ok {
			return fromEntry(e, false)
		}
		return res.Val.(Result)
	}
}

var (
	errNoIntrospection = errors.New("opaque token, but introspection needs client credentials (ZITADEL_KEY_FILE, ZITADEL_KEY or ZITADEL_CLIENT_SECRET)")
	errInactive        = errors.New("introspection: token not active, or not for this client")
	errThrottled       = errors.New("introspection not asked: this client sent too many tokens the provider refused (RATE_LIMIT_PER_MINUTE)")
)

func fromEntry(e entry, cached bool) Result {
	if e.identity == nil {
		return Result{Outcome: InvalidToken, Credential: CredentialOpaque, Cached: cached, Reason: e.reason, Err: errInactive}
	}
	return Result{Outcome: Allowed, Credential: CredentialOpaque, Cached: cached, Identity: e.identity}
}

// errIntrospection marks a call that gave no verdict (a failed round
// trip, or the Gate refused it) for singleflight; the Result in Val says
// what to answer. A call's Val is the entry of the provider's answer, or
// the Result to answer (also the cached one a late call found).
var errIntrospection = errors.New("introspection failed")

// introspect asks the provider once and caches the answer: an active
// token until min(its exp, CacheTTL), an inactive one for inactiveTTL.
// Failures are not cached: the next request asks again.
func (v *Verifier) introspect(ctx context.Context, key cacheKey, token string) (any, error) {
	client, err := v.upstream.Introspector()
	if err != nil {
		return unavailable(CredentialOpaque, errProviderDown), errIntrospection
	}
	raw, err := rs.Introspect[json.RawMessage](ctx, client, token)
	if err != nil {
		return introspectionFailure(err), errIntrospection
	}
	now := v.now()
	c, all, err := decodeClaims(raw)
	var e entry
	switch {
	case err != nil:
		return Result{Outcome: Unavailable, Credential: CredentialOpaque, Reason: ReasonIntrospectionError,
			Err: errors.New("introspection answer is not a JSON object of the expected types")}, errIntrospection
	case !c.Active:
		e = entry{until: now.Add(min(inactiveTTL, v.cfg.CacheTTL)), reason: ReasonInactive}
	default:
		if reason, _ := v.check(c, now, false); reason != "" {
			e = entry{until: now.Add(min(inactiveTTL, v.cfg.CacheTTL)), reason: reason}
			break
		}
		id := v.identity(c, all)
		e = entry{until: earliest(now.Add(v.cfg.CacheTTL), id.Expiry), identity: id}
	}
	if e.identity == nil {
		v.refused.put(key, e, now)
	} else {
		v.cache.put(key, e, now)
	}
	return e, nil
}

// introspectionFailure turns a failed round trip into a 503 with a cause
// safe to log: the library's errors quote the response body, which may
// hold personal data.
func introspectionFailure(err error) Result {
	var oerr *oidc.Error
	var uerr *url.Error
	switch {
	case errors.As(err, &oerr):
		return Result{Outcome: Unavailable, Credential: CredentialOpaque, Reason: ReasonIntrospectionError,
			Err: fmt.Errorf("introspection endpoint refused Gatehouse: %s", oerr.ErrorType)}
	case errors.As(err, &uerr):
		return unavailable(CredentialOpaque, fmt.Errorf("introspection endpoint unreachable: %w", errProviderDown))
	case errors.Is(err, context.DeadlineExceeded):
		return unavailable(CredentialOpaque, fmt.Errorf("introspection timed out: %w", errProviderDown))
	}
	return Result{Outcome: Unavailable, Credential: CredentialOpaque, Reason: ReasonIntrospectionError,
		Err: errors.New("introspection endpoint answered with an error or an unreadable body")}
}
