// Package session keeps a signed-in user's session: what the auth flow needs
// for refresh, logout and the profile page, behind a small Store interface
// with a sealed-cookie implementation and server-side ones (memory, Redis).
//
// A request's session takes one path whatever the store: Store (store.go)
// writes and deletes through gorilla/sessions' sessions.Store interface
// (Save), and loads the typed *Session straight from the backend
// (loadSession, which the backend's gorilla New wraps). The backends are
// cookieBackend (the sealed session is the cookie), memoryBackend and
// redisBackend (the cookie carries the sealed ID; the record stays on the
// server).
package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"time"
)

// ErrNoSession means the request carries no usable session: none at all, or
// one that is forged, tampered with, deleted, or expired.
var ErrNoSession = errors.New("no session")

// ErrTooLarge means the session would not fit in a browser cookie.
var ErrTooLarge = errors.New("session too large for a cookie (use SESSION_STORE=redis or fewer scopes)")

// ErrUnavailable means the store's backend could not be reached.
var ErrUnavailable = errors.New("session store unavailable")

// ErrLoggedOut means a new session was refused because the provider ended
// it (back-channel logout) while its sign-in was in flight.
var ErrLoggedOut = errors.New("provider session ended by a back-channel logout during sign-in")

// Session is one signed-in browser. Field names are short because the cookie
// store carries them in every request.
type Session struct {
	ID           string          `json:"id"`            // random, opaque; never shown to the user
	Subject      string          `json:"sub"`           // the user's ID at the provider
	ProviderSID  string          `json:"sid,omitempty"` // the provider's session ID, for back-channel logout
	IDToken      string          `json:"idt,omitempty"` // kept for id_token_hint at logout and for the claims
	AccessToken  string          `json:"at,omitempty"`
	RefreshToken string          `json:"rt,omitempty"`
	TokenType    string          `json:"tt,omitempty"`
	AccessExpiry int64           `json:"ate,omitempty"` // unix seconds
	Userinfo     json.RawMessage `json:"ui,omitempty"`
	// RolesAt is when Userinfo (and with it the roles) was last read from
	// the provider, unix seconds; 0 for sessions from before it was kept.
	RolesAt   int64 `json:"ra,omitempty"`
	CreatedAt int64 `json:"iat"`  // unix seconds
	LastSeen  int64 `json:"seen"` // unix seconds, for the idle timeout
	ExpiresAt int64 `json:"exp"`  // unix seconds, absolute end

	// Reseal reports that the session was read with the previous secret and
	// should be saved again under the current one.
	Reseal bool `json:"-"`
	// SignInStarted, on a new session, is when the code exchange that
	// produced its tokens began. A server-side store refuses to create it
	// (ErrLoggedOut) when a back-channel logout for its provider session,
	// or for its user after that moment, has arrived meanwhile.
	SignInStarted time.Time `json:"-"`

	// stored: the session came from (or has been written to) the store, so
	// a server-side store updates the record only while it still exists.
	// A request that was in flight during logout must not bring it back.
	stored bool
	// loaded is the TokenStamp the session was read with. A server-side
	// store skips an update whose tokens are older than the record's: a
	// slow request must not put back a refresh token that a refresh on
	// another request (or replica) has used up, and the provider revoked.
	loaded string
}

// TokenStamp identifies s's current tokens without revealing them.
func (s *Session) TokenStamp() string {
	if s.RefreshToken == "" && s.AccessToken == "" {
		return ""
	}
	h := sha256.Sum256([]byte(s.RefreshToken + "\x00" + s.AccessToken))
	return base64.RawURLEncoding.EncodeToString(h[:12])
}

// Expired reports whether the session is past its absolute end or has been
// idle longer than idle.
func (s *Session) Expired(now time.Time, idle time.Duration) bool {
	n := now.Unix()
	if n >= s.ExpiresAt {
		return true
	}
	return idle > 0 && n-s.LastSeen >= int64(idle/time.Second)
}

// Remaining is the time left until the absolute end.
func (s *Session) Remaining(now time.Time) time.Duration {
	return time.Unix(s.ExpiresAt, 0).Sub(now)
}

// Store loads, saves and deletes the session of a request.
type Store interface {
	// Load returns ErrNoSession when the request has no valid session, or
	// ErrUnavailable when the backend cannot answer. The caller owns the
	// returned value.
	Load(r *http.Request) (*Session, error)
	// Save writes s and sets the cookie on w. A session with a new ID
	// replaces the old one (the caller deletes the old one first).
	Save(w http.ResponseWriter, r *http.Request, s *Session) error
	// Delete removes s (server-side, where there is a server side) and
	// expires the cookie. With s nil it ends whatever session the
	// request's cookie names, without loading it, and does nothing when the
	// request carries no session cookie.
	Delete(w http.ResponseWriter, r *http.Request, s *Session) error
}

// Revoker is implemented by stores that can end sessions without the
// user's browser: back-channel logout needs it.
type Revoker interface {
	DeleteByProviderSID(ctx context.Context, sid string) (int, error)
	DeleteBySubject(ctx context.Context, sub string) (int, error)
}

// Pinger is implemented by stores with a backend the readiness probe checks.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Shared is implemented by stores whose records every replica reads and
// writes (Redis). Token refresh goes through it: one replica takes the
// session's lock and refreshes, the others wait and read its result from
// the record, because the provider revokes a refresh token once it is used.
type Shared interface {
	// TryLock takes the session's lock for at most ttl if nobody holds it.
	// unlock releases it only if it is still ours.
	TryLock(ctx context.Context, id string, ttl time.Duration) (unlock func(), ok bool, err error)
	// Get reads the session record (ErrNoSession if it is gone).
	Get(ctx context.Context, id string) (*Session, error)
	// Put rewrites an existing record (ErrNoSession if it is gone).
	Put(ctx context.Context, s *Session) error
}

// OnceMarker remembers keys until a deadline, as seen by every replica
// sharing the store: back-channel logout refuses a logout_token whose jti
// it has seen before.
type OnceMarker interface {
	// MarkOnce records key until until and reports whether it was new.
	MarkOnce(ctx context.Context, key string, until time.Time) (first bool, err error)
	// Unmark forgets key (the action it guarded failed and may be retried).
	Unmark(ctx context.Context, key string) error
}

// NewID returns a new random session ID.
func NewID() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("session: crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// CookieOptions are the attributes of the session cookie.
type CookieOptions struct {
	Secure bool // also switches the name to a prefixed form (Name)
	// Domain ("example.com") shares the cookie with every host below it
	// (COOKIE_DOMAIN); empty keeps it on the host that set it.
	Domain string
}

// Name is the session cookie's name for these options: "__Host-gatehouse"
// when Secure without a Domain (no subdomain can plant or overwrite it),
// "__Secure-gatehouse" when Secure with one (a __Host- cookie cannot
// carry a Domain), and "gatehouse" on plain-http development, where
// neither prefix is allowed.
func (o CookieOptions) Name() string {
	switch {
	case !o.Secure:
		return "gatehouse"
	case o.Domain != "":
		return "__Secure-gatehouse"
	}
	return "__Host-gatehouse"
}

// CookieName is the session cookie's name without a cookie domain.
func CookieName(secure bool) string { return CookieOptions{Secure: secure}.Name() }
