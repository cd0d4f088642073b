package auth

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"sync"
	"time"

	oidcrp "github.com/zitadel/oidc/v3/pkg/client/rp"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"golang.org/x/sync/singleflight"

	"github.com/gatehouse/gatehouse/internal/session"
)

// refreshCoordinator makes a session's token refresh happen once among
// everybody who shares the session: ZITADEL rotates refresh tokens and
// revokes the old one at once, so a second refresh with the same token
// would end the session. refresh does the actual call; the coordinator
// decides who calls it and hands its result to the others.
type refreshCoordinator interface {
	Refresh(ctx context.Context, s *session.Session, refresh func(context.Context) (*Tokens, error)) (*Tokens, error)
}

// Tokens are what a refresh yields.
type Tokens struct {
	AccessToken  string
	RefreshToken string
	IDToken      string
	TokenType    string
	Expiry       time.Time
}

// refresher coordinates the requests of this process (enough for cookie
// and memory sessions): concurrent callers share one call; callers that
// arrive a moment later with the old cookie get the remembered result.
type refresher struct {
	group singleflight.Group
	now   func() time.Time

	mu     sync.Mutex
	recent map[[32]byte]recentRefresh
}

type recentRefresh struct {
	tokens *Tokens
	until  time.Time
}

// recentTTL is how long a result stays available to late requests that
// still carry the old refresh token (a slow tab, a request in flight).
const recentTTL = 2 * time.Minute

func newRefresher(now func() time.Time) *refresher {
	return &refresher{now: now, recent: map[[32]byte]recentRefresh{}}
}

func (f *refresher) Refresh(ctx context.Context, s *session.Session, fn func(context.Context) (*Tokens, error)) (*Tokens, error) {
	return f.do(ctx, s.RefreshToken, fn)
}

// do refreshes with refreshToken through fn, once.
func (f *refresher) do(ctx context.Context, refreshToken string, fn func(context.Context) (*Tokens, error)) (*Tokens, error) {
	key := sha256.Sum256([]byte(refreshToken))
	if t := f.lookup(key); t != nil {
		return t, nil
	}
	v, err, _ := f.group.Do(string(key[:]), func() (any, error) {
		if t := f.lookup(key); t != nil {
			return t, nil
		}
		// Detached from the first caller's cancellation: the others wait on it.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		defer cancel()
		t, err := fn(ctx)
		if err != nil {
			return nil, err
		}
		f.remember(key, t)
		return t, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*Tokens), nil
}

func (f *refresher) lookup(key [32]byte) *Tokens {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.recent[key]
	if !ok || f.now().After(r.until) {
		return nil
	}
	return r.tokens
}

func (f *refresher) remember(key [32]byte, t *Tokens) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	for k, r := range f.recent {
		if now.After(r.until) {
			delete(f.recent, k)
		}
	}
	f.recent[key] = recentRefresh{tokens: t, until: now.Add(recentTTL)}
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

func newSharedRefresh(store session.Shared, now func() time.Time) refreshCoordinator {
	return &sharedRefresh{local: newRefresher(now), store: store, ttl: 20 * time.Second, poll: 25 * time.Millisecond}
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
				defer unlock()
				return c.refreshLocked(ctx, s, fn)
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(wait):
			}
			wait = min(wait*2, 250*time.Millisecond)
		}
	})
}

func (c *sharedRefresh) refreshLocked(ctx context.Context, s *session.Session, fn func(context.Context) (*Tokens, error)) (*Tokens, error) {
	cur, err := c.store.Get(ctx, s.ID)
	if err != nil {
		return nil, err // ErrNoSession: ended meanwhile (logout elsewhere)
	}
	if cur.RefreshToken != s.RefreshToken || cur.AccessToken != s.AccessToken {
		// Another replica refreshed while we waited: its tokens are ours.
		return tokensOf(cur), nil
	}
	t, err := fn(ctx)
	if err != nil {
		return nil, err
	}
	applyTokens(cur, t)
	// Written before the lock goes, so whoever takes it next sees them.
	if err := c.store.Put(ctx, cur); err != nil {
		return nil, err
	}
	return t, nil
}

func tokensOf(s *session.Session) *Tokens {
	t := &Tokens{AccessToken: s.AccessToken, RefreshToken: s.RefreshToken, IDToken: s.IDToken, TokenType: s.TokenType}
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
}

// refreshSession renews s's tokens once, however many requests ask at
// once: the auth.token.refresh step.
func (rp *RelyingParty) refreshSession(ctx context.Context, s *session.Session) error {
	return rp.step(ctx, "auth.token.refresh", func(ctx context.Context) error {
		if s.RefreshToken == "" {
			return fail(ReasonRefreshFailed, http.StatusSeeOther, safeErr("access token expired and no refresh token (request offline_access)"))
		}
		t, err := rp.refresh.Refresh(ctx, s, func(ctx context.Context) (*Tokens, error) {
			return rp.refreshTokens(ctx, s)
		})
		if err != nil {
			reason := ReasonRefreshFailed
			if isUnavailable(err) {
				reason = ReasonProviderUnavailable
			}
			return fail(reason, http.StatusSeeOther, fmt.Errorf("refresh tokens: %w", err))
		}
		applyTokens(s, t)
		return nil
	})
}

// refreshTokens is the call to the provider's token endpoint.
func (rp *RelyingParty) refreshTokens(ctx context.Context, s *session.Session) (*Tokens, error) {
	relyingParty, err := rp.provider.RP()
	if err != nil {
		return nil, err
	}
	tokens, err := oidcrp.RefreshTokens[*oidc.IDTokenClaims](ctx, relyingParty, s.RefreshToken, "", "")
	if err != nil {
		return nil, err
	}
	if tokens.IDTokenClaims != nil && tokens.IDTokenClaims.Subject != s.Subject {
		return nil, safeErr("refreshed ID token is for another subject")
	}
	out := &Tokens{
		AccessToken:  tokens.AccessToken,
		RefreshToken: tokens.RefreshToken,
		IDToken:      tokens.IDToken,
		TokenType:    tokens.Type(),
		Expiry:       tokens.Expiry,
	}
	if out.RefreshToken == "" {
		out.RefreshToken = s.RefreshToken // provider does not rotate
	}
	return out, nil
}
