package auth

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Tokens are what a refresh yields.
type Tokens struct {
	AccessToken  string
	RefreshToken string
	IDToken      string
	TokenType    string
	Expiry       time.Time
}

// refresher makes a session's refresh happen once. ZITADEL rotates refresh
// tokens and revokes the old one at once, so two requests of one user that
// both find the access token expired must not both refresh: the second
// would present a revoked token and log the user out. Concurrent callers
// share one call; callers that arrive a moment later with the old cookie
// get the remembered result.
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
