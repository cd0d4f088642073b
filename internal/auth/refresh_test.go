package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/internal/forward"
	"github.com/gatehouse/gatehouse/internal/seal"
	"github.com/gatehouse/gatehouse/internal/session"
)

func TestRefresher_WaitsItsBudgetAndKeepsALateResult(t *testing.T) {
	t.Parallel()
	f := newRefresher(time.Now, 50*time.Millisecond, 0)
	release := make(chan struct{})
	var calls atomic.Int32
	slow := func(context.Context) (*Tokens, error) {
		calls.Add(1)
		<-release
		return &Tokens{AccessToken: "new"}, nil
	}
	if _, err := f.do(context.Background(), "rt", slow); !errors.Is(err, errRefreshPending) {
		t.Fatalf("past the budget: %v, want errRefreshPending", err)
	}
	close(release) // the provider answers after the request gave up
	deadline := time.Now().Add(2 * time.Second)
	for {
		t2, err := f.do(context.Background(), "rt", slow)
		if err == nil {
			if t2.AccessToken != "new" {
				t.Fatalf("late result = %+v", t2)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the late result was not kept: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if calls.Load() != 1 {
		t.Errorf("provider asked %d times, want once", calls.Load())
	}
}

func TestRefresher_RemembersFailuresByKind(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	f := newRefresher(func() time.Time { return now }, time.Second, 0)
	var calls atomic.Int32
	failWith := func(err error) func(context.Context) (*Tokens, error) {
		return func(context.Context) (*Tokens, error) { calls.Add(1); return nil, err }
	}
	ask := func(rt string, err error) error {
		_, got := f.do(context.Background(), rt, failWith(err))
		return got
	}

	// A transient failure answers the same session for retryAfter only.
	down := errors.New("connection refused")
	_ = ask("a", down)
	_ = ask("a", down)
	if calls.Load() != 1 {
		t.Errorf("transient failure: provider asked %d times within retryAfter, want 1", calls.Load())
	}
	now = now.Add(retryAfter + time.Second)
	_ = ask("a", down)
	if calls.Load() != 2 {
		t.Errorf("after retryAfter the provider is asked again: %d calls, want 2", calls.Load())
	}

	// A refusal is remembered with the time of the first one.
	first := now
	_ = ask("b", &deniedError{err: errors.New("invalid_grant"), at: first, race: true})
	now = now.Add(time.Minute)
	var denied *deniedError
	if err := ask("b", &deniedError{err: errors.New("invalid_grant"), at: now, race: true}); !errors.As(err, &denied) || !denied.at.Equal(first) {
		t.Errorf("remembered refusal = %v at %v, want the first one at %v", err, denied, first)
	}

	// Store failures are the store's: not remembered.
	calls.Store(0)
	_ = ask("c", session.ErrUnavailable)
	_ = ask("c", session.ErrUnavailable)
	if calls.Load() != 2 {
		t.Errorf("store failure remembered: %d calls, want 2", calls.Load())
	}
}

func TestOAuthError_ShowsCodeAndDescriptionNeverATokenOrAWrapper(t *testing.T) {
	t.Parallel()
	rt := "8a7c5b0e-2f5d-4c1e-9a3b-5d6e7f8a9b0c"
	re := &oauth2.RetrieveError{Response: &http.Response{StatusCode: 400}, ErrorCode: "invalid_grant",
		ErrorDescription: "Errors.User.RefreshToken.Invalid: refresh token " + rt + " is revoked; see eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXZhbHVl \"quoted\" \x01"}
	got := safeError(fail(ReasonRefreshFailed, http.StatusSeeOther, errors.Join(errors.New("refresh tokens"), oauthErrorOf(re, rt))))
	for _, want := range []string{"invalid_grant", "HTTP 400", "is revoked", "Errors.User.RefreshToken.Invalid"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	for _, never := range []string{rt, "eyJ", "\"", "\x01", "error of type"} {
		if strings.Contains(got, never) {
			t.Errorf("%q contains %q", got, never)
		}
	}
	// Wrapped as the refresh wraps it, still the provider's words.
	wrapped := safeError(fail(ReasonProviderUnavailable, http.StatusServiceUnavailable,
		errors.Join(errors.New("x"), &oauthError{code: "invalid_scope", status: 400})))
	if !strings.Contains(wrapped, "invalid_scope") {
		t.Errorf("wrapped: %q", wrapped)
	}
}

// refusingProvider stands for a provider that answers every refresh with
// invalid_grant, as it does for a revoked refresh token: the coordinator
// under test is the real one, the provider call is replaced (the rotation
// race itself is caused for real in internal/server's refresh tests).
type refusingProvider struct {
	f   *refresher
	now *time.Time
}

func (c refusingProvider) Refresh(ctx context.Context, s *session.Session, _ func(context.Context) (*Tokens, error)) (*Tokens, error) {
	return c.f.do(ctx, s.RefreshToken, func(context.Context) (*Tokens, error) {
		return nil, &deniedError{err: errors.New("invalid_grant"), at: *c.now, race: true}
	})
}

// TestDecide_RevokedRefreshTokenOpensTheRaceWindowOnce: with the cookie
// store, a refused refresh is served for rotationRaceWindow from this
// process's first refusal (the loser of another replica's rotation), and
// never again while a copy of that cookie can still be valid: a cookie
// whose refresh token was revoked must not get a new window each time
// the refusal would have been forgotten.
func TestDecide_RevokedRefreshTokenOpensTheRaceWindowOnce(t *testing.T) {
	t.Parallel()
	st := cookieStore(t)
	const life = 12 * time.Hour
	s := &session.Session{ID: session.NewID(), Subject: "u1", AccessToken: "at", RefreshToken: "rt",
		AccessExpiry: testNow.Add(-24 * time.Hour).Unix(), CreatedAt: testNow.Add(-time.Hour).Unix(),
		LastSeen: testNow.Unix(), ExpiresAt: testNow.Add(life - time.Hour).Unix(), RolesAt: testNow.Unix()}
	r := withSession(t, st, s)
	now := testNow
	clock := func() time.Time { return now }
	rp := New(Deps{Sessions: st, Pages: &pages{}, Now: clock,
		Config: Config{SessionDuration: life, IdleTimeout: 48 * time.Hour, RolesMaxAge: 48 * time.Hour}})
	rp.refresh = refusingProvider{f: newRefresher(clock, time.Second, life), now: &now}
	for _, tc := range []struct {
		after time.Duration
		want  Outcome
	}{
		{0, Allowed},
		{5 * time.Second, Allowed},
		{rotationRaceWindow + time.Second, Unauthenticated},
		{minDeniedTTL + 2*time.Second, Unauthenticated},
		{minDeniedTTL + 8*time.Second, Unauthenticated},
		{3 * time.Hour, Unauthenticated},
		{life - time.Hour - time.Minute, Unauthenticated},
	} {
		now = testNow.Add(tc.after)
		if d := rp.Decide(httptest.NewRecorder(), r, forward.Rules{}); d.Outcome != tc.want {
			t.Errorf("%v after the first refusal: %v (%s), want %v", tc.after, d.Outcome, d.Reason, tc.want)
		}
	}
}

// scriptedProvider answers every refresh with a new access token for
// 60 s, and with a new refresh token when it rotates them as ZITADEL does.
// The one that does not rotate is a stand-in (ZITADEL, the op package and
// Hydra all rotate).
type scriptedProvider struct {
	f      *refresher
	now    *time.Time
	calls  *atomic.Int32
	rotate bool
}

func (c scriptedProvider) Refresh(ctx context.Context, s *session.Session, _ func(context.Context) (*Tokens, error)) (*Tokens, error) {
	return c.f.do(ctx, s.RefreshToken, func(context.Context) (*Tokens, error) {
		n := c.calls.Add(1)
		rt := s.RefreshToken
		if c.rotate {
			rt = fmt.Sprint("rt-", n)
		}
		return &Tokens{AccessToken: fmt.Sprint("at-", n), RefreshToken: rt, TokenType: "Bearer",
			Expiry: c.now.Add(60 * time.Second)}, nil
	})
}

// refreshStep is a moment after the start, and how many refreshes the
// provider must have answered by then.
type refreshStep struct {
	after time.Duration
	calls int32
}

// replayRefreshes decides the same request (one cookie, replayed as is)
// at each step against a provider that rotates or not, and wants it let
// through on a live access token every time, with the provider asked as
// often as the step says.
func replayRefreshes(t *testing.T, st session.Store, rotate bool, steps []refreshStep) {
	t.Helper()
	s := &session.Session{ID: session.NewID(), Subject: "u1", AccessToken: "at-0", RefreshToken: "rt-0",
		AccessExpiry: testNow.Add(10 * time.Second).Unix(), CreatedAt: testNow.Unix(), LastSeen: testNow.Unix(),
		ExpiresAt: testNow.Add(12 * time.Hour).Unix(), RolesAt: testNow.Unix()}
	r := withSession(t, st, s)
	now := testNow
	clock := func() time.Time { return now }
	rp := New(Deps{Sessions: st, Pages: &pages{}, Now: clock,
		Config: Config{SessionDuration: 12 * time.Hour, IdleTimeout: 48 * time.Hour, RolesMaxAge: 48 * time.Hour}})
	var calls atomic.Int32
	rp.refresh = scriptedProvider{f: newRefresher(clock, time.Second, 12*time.Hour), now: &now, calls: &calls, rotate: rotate}
	for _, step := range steps {
		now = testNow.Add(step.after)
		d := rp.Decide(httptest.NewRecorder(), r, forward.Rules{})
		if d.Outcome != Allowed || d.Session == nil {
			t.Fatalf("t+%v: %v (%s)", step.after, d.Outcome, d.Reason)
		}
		if !now.Before(time.Unix(d.Session.AccessExpiry, 0)) || calls.Load() != step.calls {
			t.Errorf("t+%v: allowed with an access token until t+%v, %d refreshes at the provider; want a live token and %d",
				step.after, time.Unix(d.Session.AccessExpiry, 0).Sub(testNow), calls.Load(), step.calls)
		}
	}
}

// TestDecide_NonRotatingProviderIsAskedAgainWhenTheTokenIsDue: remembered
// refresh answers are keyed by the refresh token; when the provider keeps
// it, the next due refresh must reach the provider, not get the previous
// answer back with an access token that has expired meanwhile.
func TestDecide_NonRotatingProviderIsAskedAgainWhenTheTokenIsDue(t *testing.T) {
	t.Parallel()
	sealer, err := seal.New("decide-test-secret-0123456789-abcdefghij", "", "session")
	if err != nil {
		t.Fatal(err)
	}
	st := session.NewMemoryStore(sealer, session.CookieOptions{}, func() time.Time { return testNow }, 0)
	replayRefreshes(t, st, false, []refreshStep{{0, 1}, {2 * time.Second, 1}, {45 * time.Second, 2}, {90 * time.Second, 3}, {110 * time.Second, 3}})
}

// TestDecide_RememberedRefreshNeverServesAnExpiredAccessToken: a copy of
// the cookie with the refresh token already rotated away gets the
// remembered answer only while that answer's access token is alive;
// after that the provider is asked (here: a rotating provider that
// answers again), never a request let through on an expired token.
func TestDecide_RememberedRefreshNeverServesAnExpiredAccessToken(t *testing.T) {
	t.Parallel()
	replayRefreshes(t, cookieStore(t), true, []refreshStep{{0, 1}, {30 * time.Second, 1}, {90 * time.Second, 2}})
}
