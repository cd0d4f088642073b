package auth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	oidcrp "github.com/zitadel/oidc/v3/pkg/client/rp"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"

	"github.com/gatehouse/gatehouse/internal/claims"
	"github.com/gatehouse/gatehouse/internal/session"
)

// refreshCoordinator makes a session's token refresh happen once among
// everybody who shares the session: ZITADEL rotates refresh tokens and
// revokes the old one at once, so a second refresh with the same token
// would end the session. refresh does the actual call; the coordinator
// decides who calls it and hands its result to the others.
//
// A caller waits at most its budget (Config.RefreshBudget) for the
// result, lock waits included; the refresh itself goes on detached from
// it, up to flightLimit, so that tokens the provider has already rotated
// are never dropped because the request that asked for them gave up.
type refreshCoordinator interface {
	Refresh(ctx context.Context, s *session.Session, refresh func(context.Context) (*Tokens, error)) (*Tokens, error)
}

// Tokens are what a refresh yields: the new tokens, and userinfo read with
// them (nil if it could not be read; the session keeps its old one).
type Tokens struct {
	AccessToken  string
	RefreshToken string
	IDToken      string
	TokenType    string
	Expiry       time.Time
	Userinfo     json.RawMessage
	RolesAt      int64 // when Userinfo was read (unix seconds)
}

const (
	// flightLimit bounds one refresh, from the lock wait to the write of
	// its result: the provider call (its HTTP client gives up after 15 s,
	// or PROVIDER_TIMEOUT + 5 s)
	// and retried writes. The Redis lock outlives it (sharedLockTTL).
	flightLimit = 20 * time.Second
	// sharedLockTTL frees a lock whose holder died; longer than
	// flightLimit, so a live holder never loses it.
	sharedLockTTL = 30 * time.Second
	// recentTTL is how long a result stays available to late requests that
	// still carry the old refresh token (a slow tab, a request in flight,
	// a write the store refused).
	recentTTL = 2 * time.Minute
	// notRotatedTTL is how long the answer of a provider that did not
	// rotate the refresh token is remembered: only for the requests
	// already on their way. The same refresh token works again, and the
	// next refresh falls due under the same key: remembered for recentTTL,
	// the answer would come back after its own access token had expired.
	notRotatedTTL = 5 * time.Second
	// retryAfter is how long a transient failure (provider unreachable) is
	// the answer for the same session before the provider is asked again:
	// during an outage, requests answer at once instead of each waiting.
	retryAfter = 2 * time.Second
	// minDeniedTTL is the shortest time this process remembers that the
	// provider refused a refresh token; it remembers it as long as a
	// session can last (newRefresher). The cookie store's rotation-race
	// window is timed from the first refusal (rotationRaceWindow): were
	// the refusal forgotten while a copy of the cookie still works, the
	// next refusal would open a new window, and a cookie whose refresh
	// token was revoked would be served for seconds again and again.
	minDeniedTTL = 10 * time.Minute
	// maxRemembered bounds the remembered results and refusals.
	maxRemembered = 10_000
)

// errRefreshPending: the caller's budget ran out while the refresh (or the
// wait for another replica's) was still going on.
var errRefreshPending = safeErr("token refresh still in progress when the request's budget ran out")

// deniedError is the provider's authoritative no to a refresh: the refresh
// token is dead (invalid_grant: revoked, expired, user gone), or the tokens
// it answered with cannot be accepted (another subject, a bad ID token).
// The session ends. at is when this process first met the refusal.
type deniedError struct {
	err error
	at  time.Time
	// race: the provider refused the refresh token itself (invalid_grant),
	// which is also what the loser of a rotation race hears.
	race bool
}

func (e *deniedError) Error() string { return "refresh refused: " + safeError(e.err) }
func (e *deniedError) Unwrap() error { return e.err }

// refresher coordinates the requests of this process (enough for cookie
// and memory sessions): concurrent callers share one call; callers that
// arrive a moment later with the old refresh token get the remembered
// result (tokens, a refusal, or a transient failure for a couple of seconds).
type refresher struct {
	group  singleflight.Group
	now    func() time.Time
	budget time.Duration
	// deniedTTL: how long a refusal is remembered (newRefresher).
	deniedTTL time.Duration

	mu     sync.Mutex
	recent map[[32]byte]recentRefresh
}

type recentRefresh struct {
	tokens *Tokens
	err    error // a *deniedError or a transient failure
	until  time.Time
}

// newRefresher remembers refusals for sessionLife (a session's longest
// life), at least minDeniedTTL.
func newRefresher(now func() time.Time, budget, sessionLife time.Duration) *refresher {
	return &refresher{now: now, budget: budget, deniedTTL: max(sessionLife, minDeniedTTL), recent: map[[32]byte]recentRefresh{}}
}

func (f *refresher) Refresh(ctx context.Context, s *session.Session, fn func(context.Context) (*Tokens, error)) (*Tokens, error) {
	return f.do(ctx, s.RefreshToken, fn)
}

// do refreshes with refreshToken through fn, once, and waits for the
// result at most the budget.
func (f *refresher) do(ctx context.Context, refreshToken string, fn func(context.Context) (*Tokens, error)) (*Tokens, error) {
	key := sha256.Sum256([]byte(refreshToken))
	if r, ok := f.lookup(key); ok {
		return r.tokens, r.err
	}
	ch := f.group.DoChan(string(key[:]), func() (any, error) {
		if r, ok := f.lookup(key); ok {
			return r.tokens, r.err
		}
		// Detached from the caller: the others wait on it, and a refresh
		// the provider carried out must be kept even if nobody waits.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flightLimit)
		defer cancel()
		t, err := fn(ctx)
		f.remember(key, t, err)
		return t, err
	})
	wait := time.NewTimer(f.budget)
	defer wait.Stop()
	select {
	case res := <-ch:
		t, _ := res.Val.(*Tokens)
		return t, res.Err
	case <-wait.C:
		return nil, errRefreshPending
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (f *refresher) lookup(key [32]byte) (recentRefresh, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.recent[key]
	if !ok || f.now().After(r.until) {
		return recentRefresh{}, false
	}
	return r, true
}

// remember keeps a result: tokens for recentTTL (notRotatedTTL when the
// refresh token came back unchanged), at most until their access token
// expires, a refusal for f.deniedTTL
// (keeping the time of the first), a transient failure for retryAfter.
// Store failures are not remembered: they are the store's, not the
// provider's, and a refresh that met one kept its tokens in what it returned.
func (f *refresher) remember(key [32]byte, t *Tokens, err error) {
	now := f.now()
	r := recentRefresh{tokens: t, err: err, until: now.Add(recentTTL)}
	var denied *deniedError
	switch {
	case err == nil:
		if t != nil && sha256.Sum256([]byte(t.RefreshToken)) == key {
			r.until = now.Add(notRotatedTTL)
		}
		if t != nil && !t.Expiry.IsZero() && t.Expiry.Before(r.until) {
			// Never handed out once its access token has expired: the
			// request would be let through on it, and a copy of the old
			// cookie would skip asking the provider for minutes.
			r.until = t.Expiry
		}
	case errors.As(err, &denied):
		r.until = now.Add(f.deniedTTL)
	case errors.Is(err, session.ErrUnavailable), errors.Is(err, session.ErrNoSession):
		return
	default:
		r.until = now.Add(retryAfter)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if prev, ok := f.recent[key]; ok && denied != nil {
		var first *deniedError
		if errors.As(prev.err, &first) && !now.After(prev.until) {
			r.err = first // the race window counts from the first refusal
		}
	}
	if len(f.recent) >= maxRemembered {
		for k, old := range f.recent {
			if now.After(old.until) {
				delete(f.recent, k)
			}
		}
		for k := range f.recent {
			if len(f.recent) < maxRemembered {
				break
			}
			delete(f.recent, k)
		}
	}
	f.recent[key] = r
}

// sharedRefresh coordinates replicas through a shared store (Redis): the
// replica that gets the session's lock refreshes and writes the new tokens
// into the session record before it lets go; the others wait for the lock
// and then find the record's tokens changed, and use them. Requests within
// one replica are collapsed first, so only one of them waits on Redis.
type sharedRefresh struct {
	local *refresher
	store session.Shared
	ttl   time.Duration // lock lifetime: freed even if the holder dies
	poll  time.Duration
}

func newSharedRefresh(store session.Shared, now func() time.Time, budget time.Duration) refreshCoordinator {
	// No rotation race with a shared store: a refusal is remembered only
	// to spare the provider.
	return &sharedRefresh{local: newRefresher(now, budget, 0), store: store, ttl: sharedLockTTL, poll: 25 * time.Millisecond}
}

func (c *sharedRefresh) Refresh(ctx context.Context, s *session.Session, fn func(context.Context) (*Tokens, error)) (*Tokens, error) {
	return c.local.do(ctx, s.RefreshToken, func(ctx context.Context) (*Tokens, error) {
		wait := c.poll
		for {
			unlock, ok, err := c.store.TryLock(ctx, s.ID, c.ttl)
			if err != nil {
				return nil, err
			}
			if ok {
				return c.refreshLocked(ctx, s, fn, unlock)
			}
			select {
			case <-ctx.Done():
				return c.holdersResult(s)
			case <-time.After(wait):
			}
			wait = min(wait*2, 250*time.Millisecond)
		}
	})
}

// holdersResult ends a wait for another replica's lock that lasted the
// whole flight: that replica's tokens if it wrote them, else "try again"
// (the record is left alone: its holder may be about to write it).
func (c *sharedRefresh) holdersResult(s *session.Session) (*Tokens, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	cur, err := c.store.Get(ctx, s.ID)
	switch {
	case err != nil:
		return nil, err
	case cur.RefreshToken != s.RefreshToken || cur.AccessToken != s.AccessToken:
		return tokensOf(cur), nil
	}
	return nil, safeErr("another replica holds the session's refresh lock")
}

func (c *sharedRefresh) refreshLocked(ctx context.Context, s *session.Session, fn func(context.Context) (*Tokens, error), unlock func()) (*Tokens, error) {
	cur, err := c.store.Get(ctx, s.ID)
	if err != nil {
		unlock()
		return nil, err // ErrNoSession: ended meanwhile (logout elsewhere)
	}
	if cur.RefreshToken != s.RefreshToken || cur.AccessToken != s.AccessToken {
		// Another replica refreshed while we waited: its tokens are ours.
		unlock()
		return tokensOf(cur), nil
	}
	t, err := fn(ctx)
	if err != nil {
		unlock()
		return nil, err
	}
	applyTokens(cur, t)
	// Written before the lock goes, so whoever takes it next sees them.
	// The provider has rotated the refresh token: the old one is dead, so
	// the write is retried for the rest of the flight. If it never lands,
	// the lock is kept until it expires (other replicas would only spend
	// the dead token) and the tokens stay with this process (recentTTL),
	// which writes them with the session's next request here.
	backoff := 50 * time.Millisecond
	for {
		err := c.store.Put(ctx, cur)
		switch {
		case err == nil:
			unlock()
			return t, nil
		case errors.Is(err, session.ErrNoSession):
			unlock()
			return nil, err // ended meanwhile: the new tokens are not needed
		}
		select {
		case <-ctx.Done():
			return t, nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Second)
	}
}

func tokensOf(s *session.Session) *Tokens {
	t := &Tokens{AccessToken: s.AccessToken, RefreshToken: s.RefreshToken, IDToken: s.IDToken, TokenType: s.TokenType,
		Userinfo: s.Userinfo, RolesAt: s.RolesAt}
	if s.AccessExpiry > 0 {
		t.Expiry = time.Unix(s.AccessExpiry, 0)
	}
	return t
}

// applyTokens puts a refresh's result into s.
func applyTokens(s *session.Session, t *Tokens) {
	s.AccessToken, s.RefreshToken, s.TokenType = t.AccessToken, t.RefreshToken, t.TokenType
	if t.IDToken != "" {
		s.IDToken = t.IDToken
	}
	s.AccessExpiry = 0
	if !t.Expiry.IsZero() {
		s.AccessExpiry = t.Expiry.Unix()
	}
	if t.Userinfo != nil {
		s.Userinfo, s.RolesAt = t.Userinfo, t.RolesAt
	}
}

// refreshSession renews s's tokens once, however many requests ask at
// once: the auth.token.refresh step. Its failure says whether the session
// ended (ReasonRefreshFailed: the provider refused), the store failed
// (storeFailure), or the provider could not be asked now
// (ReasonProviderUnavailable: the session is kept).
func (rp *RelyingParty) refreshSession(ctx context.Context, s *session.Session) error {
	return rp.step(ctx, "auth.token.refresh", func(ctx context.Context) error {
		if s.RefreshToken == "" {
			return fail(ReasonRefreshFailed, http.StatusSeeOther, &deniedError{err: safeErr("access token expired and no refresh token (request offline_access)"), at: rp.now()})
		}
		t, err := rp.refresh.Refresh(ctx, s, func(ctx context.Context) (*Tokens, error) {
			t, err := rp.refreshTokens(ctx, s)
			// Logged here, where the provider was asked, not for each
			// request that gets the remembered answer.
			var denied *deniedError
			switch {
			case errors.As(err, &denied):
				rp.log.WarnContext(ctx, "token refresh refused by the provider", "error", safeError(err))
			case err != nil:
				rp.log.WarnContext(ctx, "token refresh failed; the session is kept and the refresh tried again", "error", safeError(err))
			}
			return t, err
		})
		var denied *deniedError
		switch {
		case err == nil:
			applyTokens(s, t)
			return nil
		case storeFailure(err) != nil:
			return storeFailure(err)
		case errors.As(err, &denied):
			return fail(ReasonRefreshFailed, http.StatusSeeOther, err)
		}
		return fail(ReasonProviderUnavailable, http.StatusServiceUnavailable, fmt.Errorf("refresh tokens: %w", err))
	})
}

// refreshTokens is the call to the provider's token endpoint, and the
// userinfo read with the new access token (the roles, re-read).
//
// It sends the refresh grant without a scope parameter: RFC 6749 §6 makes
// an omitted scope mean the scopes originally granted, while
// zitadel/oidc's rp.RefreshTokens sends every configured scope, which a
// provider that granted fewer refuses (invalid_scope). So the grant goes
// through golang.org/x/oauth2 on the relying party's own configuration,
// less its scopes, over its HTTP client (timeouts, tracing, and the client
// assertion with a key), as the code exchange does.
func (rp *RelyingParty) refreshTokens(ctx context.Context, s *session.Session) (*Tokens, error) {
	relyingParty, err := rp.provider.RP()
	if err != nil {
		return nil, err
	}
	cfg := *relyingParty.OAuthConfig()
	cfg.Scopes = nil
	token, err := cfg.TokenSource(context.WithValue(ctx, oauth2.HTTPClient, relyingParty.HttpClient()),
		&oauth2.Token{RefreshToken: s.RefreshToken}).Token()
	if err != nil {
		return nil, rp.providerAnswer(err, s)
	}
	out := &Tokens{AccessToken: token.AccessToken, RefreshToken: token.RefreshToken, TokenType: token.Type(), Expiry: token.Expiry}
	if out.RefreshToken == "" {
		out.RefreshToken = s.RefreshToken // provider does not rotate
	}
	idClaims := claims.IDTokenClaims(s.IDToken)
	if idToken, _ := token.Extra("id_token").(string); idToken != "" {
		verified, err := rp.verifyRefreshedIDToken(ctx, relyingParty, token.AccessToken, idToken, s)
		if err != nil {
			return nil, &deniedError{err: err, at: rp.now()}
		}
		out.IDToken, idClaims = idToken, verified.Claims
	}
	// The roles (and profile) as the provider sees them now. The tokens
	// stand without it: a failure keeps the session's userinfo, whose age
	// (RolesAt) then says it is due again.
	info, err := oidcrp.Userinfo[*oidc.UserInfo](ctx, out.AccessToken, out.TokenType, s.Subject, relyingParty)
	switch {
	case errors.Is(err, oidcrp.ErrUserInfoSubNotMatching):
		return nil, &deniedError{err: err, at: rp.now()}
	case err != nil:
		rp.log.WarnContext(ctx, "userinfo after refresh failed; roles kept as they were", "error", safeError(err))
	default:
		if out.Userinfo, err = storedUserinfo(info.Claims, idClaims); err == nil {
			out.RolesAt = rp.now().Unix()
		}
	}
	return out, nil
}

// verifyRefreshedIDToken checks a refreshed ID token like the sign-in's
// (signature, issuer, audience, expiry, at_hash), for the same subject.
// Its nonce may be absent (ZITADEL, zitadel/oidc's op) or the original
// one (OpenID Connect Core 12.2 with the errata's clarification; panva's
// oidc-provider): the original is the nonce of the session's current ID
// token, so a provider that omitted it once must omit it from then on.
func (rp *RelyingParty) verifyRefreshedIDToken(ctx context.Context, relyingParty oidcrp.RelyingParty, accessToken, idToken string, s *session.Session) (*oidc.IDTokenClaims, error) {
	v := *relyingParty.IDTokenVerifier()
	v.Nonce = nil // checked below: the library's check wants exactly one value
	c, err := oidcrp.VerifyTokens[*oidc.IDTokenClaims](ctx, accessToken, idToken, &v)
	if err != nil {
		return nil, err
	}
	if c.Subject != s.Subject {
		return nil, safeErr("refreshed ID token is for another subject")
	}
	if c.Nonce != "" {
		if original, _ := claims.IDTokenClaims(s.IDToken)["nonce"].(string); c.Nonce != original {
			return nil, safeErr("refreshed ID token carries a nonce other than the original one")
		}
	}
	return c, nil
}

// providerAnswer classifies a failed refresh grant: the provider's
// invalid_grant is a refusal (the session ends); every other answer, and
// no answer, is transient for the session (kept, tried again).
func (rp *RelyingParty) providerAnswer(err error, s *session.Session) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return err
	}
	oe := oauthErrorOf(re, s.RefreshToken, s.AccessToken)
	if oe.code == "invalid_grant" {
		return &deniedError{err: oe, at: rp.now(), race: true}
	}
	return oe
}
